/** End to end: the real server process on a free port, the real onnxruntime session, the fixture model. */
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL, reference } from '../helpers/engine.js';
import { startServer } from '../helpers/server-process.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'e2e-cache-'));
const server = await startServer(['--model', FIXTURE_MODEL, '--adapters', FIXTURE_ADAPTERS, '--cache-dir', cacheDir]);
t.teardown(() => server.stop());

t.test('one greedy case per adapter over HTTP equals the HF reference', async (t) => {
  for (const adapter of [null, 'support', 'sales', 'code']) {
    const c = reference.cases.filter((x) => x.adapter === adapter).at(-1)!;
    const res = await fetch(`${server.url}/v1/generate${adapter ? `?adapter=${adapter}` : ''}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt_token_ids: c.prompt_token_ids, max_tokens: 24, temperature: 0, ignore_eos: true, logprobs: true }),
    });
    t.equal(res.status, 200);
    const body = await res.json();
    t.same(body.token_ids, c.greedy_token_ids, `${adapter ?? 'base'}: tokens equal HF`);
    const tolerance = adapter === 'code' && c.prompt_token_ids.length > 64 ? 2e-4 : 1e-4; // see test/engine/reference.test.ts
    const worst = Math.max(...body.logprobs.map((lp: number, i: number) => Math.abs(lp - c.greedy_logprobs[i])));
    t.ok(worst < tolerance, `${adapter ?? 'base'}: logprobs within ${tolerance} (max diff ${worst.toExponential(2)})`);
  }
});

t.test('one JSON log line per request with adapter, token counts and timings', async (t) => {
  await fetch(`${server.url}/v1/generate?adapter=sales`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Hi', max_tokens: 3 }),
  });
  // The line is written as the response ends: poll the child's output for it rather than sleeping.
  const salesLine = () =>
    server.logs
      .join('')
      .split('\n')
      .filter((l) => l.includes('"msg":"request"'))
      .map((l) => JSON.parse(l))
      .find((l) => l.adapter === 'sales' && l.completionTokens === 3);
  for (let i = 0; i < 500 && !salesLine(); i++) await new Promise((r) => setTimeout(r, 20));
  const line = salesLine();
  t.ok(line, 'a request line for the sales call');
  t.equal(line.promptTokens > 0, true);
  t.type(line.timings.totalMs, 'number');
  t.equal(line.status, 200);
});

t.test('a restart reuses the cached ONNX graph', async (t) => {
  const again = await startServer(['--model', FIXTURE_MODEL, '--adapters', FIXTURE_ADAPTERS, '--cache-dir', cacheDir]);
  const built = again.logs
    .join('')
    .split('\n')
    .filter((l) => l.includes('ONNX graph'));
  await again.stop();
  t.match(built.join('\n'), /reused cached ONNX graph/);
});

t.test('the device-resident float16 path behind the real server: flags reach the engine, streaming works', async (t) => {
  const device = await startServer([
    '--model',
    FIXTURE_MODEL,
    '--adapters',
    FIXTURE_ADAPTERS,
    '--cache-dir',
    cacheDir,
    '--state-residency',
    'device',
    '--dtype',
    'float16',
  ]);
  t.teardown(() => device.stop());
  const ready = await (await fetch(`${device.url}/readyz`)).json();
  t.same([ready.provider, ready.state_residency, ready.dtype], ['cpu', 'device', 'float16']);
  const c = reference.cases.find((x) => x.adapter === 'support' && x.greedy_min_margin >= 0.05)!;
  const res = await fetch(`${device.url}/v1/generate?adapter=support`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt_token_ids: c.prompt_token_ids, max_tokens: 24, temperature: 0, ignore_eos: true, stream: true }),
  });
  const events = (await res.text())
    .split('\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)));
  const ids = events.filter((e) => e.token_id !== undefined && e.token_id >= 0).map((e) => e.token_id);
  t.same(ids, c.greedy_token_ids, 'a wide-margin case streams the HF greedy tokens in float16 (test/engine/float16.test.ts)');
});
