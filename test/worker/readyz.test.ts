/**
 * /readyz and the engine's start-up phases: 503 with the phase until the engine is ready, 200 with phase
 * `ready` after; a model that cannot load shows `failed` with its reason (on the real server process, whose
 * engine runs in its worker thread). The phases of a real start are checked by protocol.test.ts (in order)
 * and responsiveness.test.ts (as /readyz shows them).
 */
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp, attachEngine } from '../../src/app.js';
import { testConfig, clientFor } from '../helpers/app.js';
import { FIXTURE_ADAPTERS, loadFixtureEngine } from '../helpers/engine.js';
import { startServer } from '../helpers/server-process.js';

t.test('503 with the phase while loading, 200 once the engine is attached', async (t) => {
  const app = await buildApp({ config: testConfig() });
  t.teardown(() => app.close());
  let res = await app.inject({ url: '/readyz' });
  t.equal(res.statusCode, 503);
  t.match(res.json(), { status: 'loading', phase: 'starting' });

  app.engineState.phase = 'building_graph';
  app.engineState.phaseDetail = 'building the ONNX graph, or reusing the cached one';
  res = await app.inject({ url: '/readyz' });
  t.equal(res.statusCode, 503);
  t.match(res.json(), { status: 'loading', phase: 'building_graph', phase_detail: /ONNX graph/ });
  const early = await app.inject({ method: 'POST', url: '/v1/generate', payload: { prompt: 'Hi' } });
  t.equal(early.statusCode, 503);
  t.equal(early.json().error.code, 'model_not_ready');
  t.match(early.json().error.message, /building graph/, 'the refusal names the phase');
  t.equal(early.headers['retry-after'], '5');
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, '/healthz answers throughout');

  const engine = await loadFixtureEngine();
  t.teardown(() => engine.close());
  attachEngine(app, clientFor(engine));
  res = await app.inject({ url: '/readyz' });
  t.equal(res.statusCode, 200);
  t.match(res.json(), { status: 'ready', phase: 'ready', model: 'llama-tiny', provider: 'cpu', queue_depth: 0, batch_size: 0, adapters: 3 });
  t.notOk('phase_detail' in res.json());
});

t.test('a model that cannot load: /readyz 503 phase failed with the reason; requests get model_not_ready', async (t) => {
  const badModel = mkdtempSync(join(tmpdir(), 'bad-model-'));
  writeFileSync(join(badModel, 'config.json'), '{"architectures": ["NotALlama"]}');
  writeFileSync(join(badModel, 'tokenizer.json'), '{}');
  const server = await startServer(['--model', badModel, '--adapters', FIXTURE_ADAPTERS, '--cache-dir', mkdtempSync(join(tmpdir(), 'bad-cache-'))], {}, { waitReady: false });
  t.teardown(() => server.stop('SIGKILL'));
  let body: { status?: string; phase?: string; error?: string } = {};
  let status = 0;
  for (let i = 0; i < 300 && body.phase !== 'failed'; i++) {
    const res = await fetch(`${server.url}/readyz`);
    status = res.status;
    body = await res.json();
    if (body.phase !== 'failed') await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(status, 503);
  t.equal(body.status, 'failed');
  t.equal(body.phase, 'failed');
  t.match(body.error, /NotALlama|architecture/i, `the reason: ${body.error}`);
  const res = await fetch(`${server.url}/v1/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Hi' }) });
  t.equal(res.status, 503);
  const error = ((await res.json()) as { error: { code: string; message: string } }).error;
  t.equal(error.code, 'model_not_ready');
  t.match(error.message, /failed to load/);
  t.equal((await fetch(`${server.url}/healthz`)).status, 200, 'the process still answers /healthz');
});
