/**
 * End to end: the real server with QUANTIZE=int4 (environment) and with --quantize int8 (flag): the start log and
 * /readyz name the weight format and the base's bytes, and requests for different adapters, sent at once, each
 * get the tokens they get alone.
 */
import t from 'tap';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL, reference } from '../helpers/engine.js';
import { startServer } from '../helpers/server-process.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'e2e-quantize-'));
const floatBytes = statSync(join(FIXTURE_MODEL, 'model.safetensors')).size;

async function generate(url: string, c: (typeof reference.cases)[number]): Promise<number[]> {
  const res = await fetch(`${url}/v1/generate${c.adapter ? `?adapter=${c.adapter}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt_token_ids: c.prompt_token_ids, max_tokens: 16, temperature: 0, ignore_eos: true }),
  });
  return (await res.json()).token_ids;
}

for (const [label, args, env, format, maxRatio] of [
  ['QUANTIZE=int4', [], { QUANTIZE: 'int4' }, 'int4 (blocks of 128)', 0.2],
  ['--quantize int8', ['--quantize', 'int8'], {}, 'int8 (blocks of 128; embeddings 32)', 0.32],
] as const) {
  t.test(label, async (t) => {
    const server = await startServer(['--model', FIXTURE_MODEL, '--adapters', FIXTURE_ADAPTERS, '--cache-dir', cacheDir, ...args], { ...env });
    t.teardown(() => server.stop());
    const ready = await (await fetch(`${server.url}/readyz`)).json();
    t.equal(ready.weight_format, format);
    t.ok(
      ready.base_weight_bytes > 0 && ready.base_weight_bytes < maxRatio * floatBytes,
      `base ${ready.base_weight_bytes} bytes, float32 checkpoint ${floatBytes}`,
    );
    t.match(server.logs.join(''), new RegExp(`base weights ${format.replace(/[()]/g, '\\$&')}, [0-9.]+ MiB`), 'the start log says the format and size');
    const cases = reference.cases.slice(0, 4);
    const solo: number[][] = [];
    for (const c of cases) solo.push(await generate(server.url, c));
    const together = await Promise.all(cases.map((c) => generate(server.url, c)));
    t.same(together, solo, 'base, support, sales and code at once: each its solo tokens');
  });
}
