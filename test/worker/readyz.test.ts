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

t.test('a model that cannot load: the process exits 1 within seconds, the reason on stderr and in the log', async (t) => {
  const badModel = mkdtempSync(join(tmpdir(), 'bad-model-'));
  writeFileSync(join(badModel, 'config.json'), '{"architectures": ["GemmaForCausalLM"]}');
  writeFileSync(join(badModel, 'tokenizer.json'), '{}');
  const server = await startServer(
    ['--model', badModel, '--adapters', FIXTURE_ADAPTERS, '--cache-dir', mkdtempSync(join(tmpdir(), 'bad-cache-'))],
    {},
    { waitReady: false },
  );
  t.teardown(() => server.stop('SIGKILL'));
  // unref: a pending 30 s timer kept this test's process alive ~25 s after its last test ended.
  const code = await Promise.race([server.exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 30_000).unref())]);
  t.equal(code, 1, 'exit code 1');
  const stderr = server.stderr.join('');
  t.match(stderr, /the model could not be loaded: .*architecture GemmaForCausalLM is not supported; supported: LlamaForCausalLM/, `stderr: ${stderr.trim()}`);
  const logLine = server.logs
    .map((chunk) => chunk.split('\n'))
    .flat()
    .find((line) => line.includes('the model failed to load; exiting'));
  t.match(logLine, /GemmaForCausalLM/, 'the JSON log says why too');
  t.notMatch(server.logs.join(''), /retrying/, 'an unsupported architecture is not retried');
});

t.test('while the model starts, refusals say it is starting (never "failed" and "loading" together); after a failure, the reason', async (t) => {
  const app = await buildApp({ config: testConfig() });
  t.teardown(() => app.close());
  app.engineState.phase = 'creating_session';
  let res = await app.inject({ method: 'POST', url: '/v1/generate', payload: { prompt: 'Hi' } });
  t.equal(res.statusCode, 503);
  t.equal(res.json().error.code, 'model_not_ready');
  t.match(res.json().error.message, /^The model is starting \(creating session\)\. Poll GET \/readyz/);
  t.notMatch(res.json().error.message, /fail/i);

  app.engineState.phase = 'failed';
  app.engineState.error = 'the engine worker exited with code 1';
  res = await app.inject({ method: 'POST', url: '/v1/generate', payload: { prompt: 'Hi' } });
  t.equal(res.statusCode, 503);
  t.equal(res.json().error.code, 'model_unavailable');
  t.match(res.json().error.message, /not available: the engine worker exited with code 1/);
  t.notMatch(res.json().error.message, /starting|loading/i);
});

t.test('start-up failures that may pass are the only ones retried', async (t) => {
  const { isTransientStartFailure } = await import('../../src/engine/errors.js');
  for (const code of ['EMFILE', 'EAGAIN', 'EIO', 'ENOMEM']) t.ok(isTransientStartFailure(Object.assign(new Error('x'), { code })), code);
  for (const code of ['ENOENT', 'EACCES', undefined]) t.notOk(isTransientStartFailure(Object.assign(new Error('x'), { code })), String(code));
  const { ModelConfigError } = await import('../../src/engine/model/hf-config.js');
  t.notOk(isTransientStartFailure(new ModelConfigError('config.json', 'architecture X is not supported')));
});
