#!/usr/bin/env bash
# After ../shared/gpu/pack.sh: repacks .gpu/modules.tar.xz without what bench:gpu never loads (the AWS SDK,
# type declarations, source maps, docs), so that the tracked tree (~23 MB with models/ and tools/train/)
# plus .gpu/ stays under the device tool's 64 MiB. Measured 2026-11-26: 19.7 MB -> 17.8 MB.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
tar xJf "$root/.gpu/modules.tar.xz" -C "$tmp"
rm -rf "$tmp"/node_modules/@aws-sdk "$tmp"/node_modules/@smithy "$tmp"/node_modules/bintrees/test
find "$tmp/node_modules" \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' \) -delete
tar cJf "$root/.gpu/modules.tar.xz" -C "$tmp" node_modules
rm -rf "$tmp"
du -sh "$root/.gpu"
