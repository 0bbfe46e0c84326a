#!/usr/bin/env bash
# Everything issue 8 still needs from a GPU, as one device run that fits its budget (docs/gpu.md).
# Here, first:   npm ci && bash ../shared/gpu/pack.sh && bash bench/gpu-slim-pack.sh && cp ../shared/reference/hf_peft_bench.py .gpu/
# Then a device run with carry [".gpu"], timeout_s 560, and the command:
#   bash .gpu/on-device.sh bash bench/gpu-session.sh
# Logs land in $OUT (the device tool brings them back); copy the figures into docs/benchmarks.md and docs/gpu.md.
set -uo pipefail
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
export BENCH_DIR=/tmp/bench-gpu BENCH_PROVIDER=${BENCH_PROVIDER:-webgpu}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1 || true
# float16 first: it is the configuration the targets are about; float32 after it if time is left.
timeout 300 node --import tsx bench/gpu.ts --dtype float16 > "$out/bench-gpu-float16.txt" 2>&1; echo "bench float16 exit $?" >> "$out/status.txt"
timeout 120 python3 .gpu/hf_peft_bench.py > "$out/hf-peft.txt" 2>&1; echo "hf_peft exit $?" >> "$out/status.txt"
timeout 120 node --import tsx bench/gpu.ts --dtype float32 > "$out/bench-gpu-float32.txt" 2>&1; echo "bench float32 exit $?" >> "$out/status.txt"
cat "$out/status.txt"
grep -hv "VerifyEachNodeIsAssignedToAnEp" "$out"/bench-gpu-*.txt "$out/hf-peft.txt" | tail -120
