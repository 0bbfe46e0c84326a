/**
 * Faults on a listening app with the fixture engine: a client that disconnects mid-stream frees its batch
 * row promptly; a failure in one request (its logits hook throws) fails that request only; a failed model
 * step fails the requests of that step with internal_error and the server keeps serving.
 */
import t from 'tap';
import type { AddressInfo } from 'node:net';
import { loadFixtureEngine } from '../helpers/engine.js';
import { buildTestApp } from '../helpers/app.js';
import { streamGenerate } from '../../tools/soak/sse-client.js';
import type { LogitsConstraint } from '../../src/engine/scheduler.js';

const engine = await loadFixtureEngine({ maxBatch: 8 });
const app = await buildTestApp(engine);
await app.listen({ port: 0, host: '127.0.0.1' });
const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/generate`;
t.teardown(async () => {
  await app.close();
  await engine.close();
});
const waitFor = async (cond: () => boolean, ms: number) => {
  const until = performance.now() + ms;
  while (!cond() && performance.now() < until) await new Promise((r) => setTimeout(r, 5));
  return cond();
};
const long = { prompt: 'Tell me a long story.', max_tokens: 200, ignore_eos: true, stream: true };

t.test('a client disconnect cancels its generation and frees the row promptly', async (t) => {
  const cancelledBefore = engine.scheduler.stats.cancelled;
  const keep = streamGenerate(url, long, { agent: false });
  const controller = new AbortController();
  const cut = streamGenerate(url, long, {
    agent: false,
    signal: controller.signal,
    onToken: (n) => {
      if (n === 5) controller.abort();
    },
  });
  const outcome = await cut;
  t.ok(outcome.transportError, 'the client went away');
  t.ok(await waitFor(() => engine.scheduler.stats.cancelled > cancelledBefore, 10_000), 'the scheduler cancelled it');
  // Promptly as a property, not a time: the row is free while the other 200-token stream still runs.
  t.ok(engine.scheduler.batchSize <= 1, 'its row is free while the other stream runs');
  const other = await keep;
  t.equal(other.completionTokens, 200, 'the other stream is unaffected');
  t.ok(await waitFor(() => engine.scheduler.batchSize === 0, 10_000), 'no row is left behind');

  // Many at once, cut at random points, while others complete.
  const runs = Array.from({ length: 24 }, (_, i) => {
    const c = new AbortController();
    const cutAt = i % 2 ? 1 + (i % 7) * 5 : Infinity;
    return streamGenerate(url, { ...long, max_tokens: 60 }, { agent: false, signal: c.signal, onToken: (n) => n >= cutAt && c.abort() });
  });
  const results = await Promise.all(runs);
  t.ok(
    results.filter((_, i) => i % 2 === 0).every((r) => r.completionTokens === 60 && r.done),
    'the uncut ones complete',
  );
  t.ok(
    results.filter((_, i) => i % 2 === 1).every((r) => r.transportError),
    'the cut ones were cut',
  );
  t.ok(await waitFor(() => engine.scheduler.batchSize === 0 && engine.scheduler.queueDepth === 0, 10_000), 'batch and queue drain to zero');
  t.equal(
    engine.adapters.list().reduce((n, a) => n + a.inUse, 0),
    0,
    'no adapter reference leaks',
  );
});

t.test('a failure in one request fails that request only', async (t) => {
  let calls = 0;
  const failing: LogitsConstraint = {
    maskLogits() {
      if (++calls === 4) throw new Error('constraint exploded');
    },
    accept() {},
    isComplete: () => false,
  };
  const others = Array.from({ length: 3 }, () => streamGenerate(url, { ...long, max_tokens: 40 }, { agent: false }));
  await waitFor(() => engine.scheduler.batchSize >= 3, 10_000);
  const bad = engine.start(
    { adapter: null, prompt: 'Hi', maxTokens: 40, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true, logprobs: false },
    { constraint: failing },
  );
  let error: unknown = null;
  try {
    for await (const _ of bad.events) {
      /* drain */
    }
  } catch (e) {
    error = e;
  }
  t.match((error as { code?: string })?.code, 'internal', 'the failing request gets the engine code internal (internal_error over HTTP)');
  const results = await Promise.all(others);
  results.forEach((r, i) => t.equal(r.completionTokens, 40, `concurrent stream ${i} completes`));
  t.ok(await waitFor(() => engine.scheduler.batchSize === 0, 10_000));
});

t.test('a failed model step fails that step only; the server keeps serving', async (t) => {
  const runner = engine.runner;
  const step = runner.step;
  let steps = 0;
  runner.step = function (this: unknown, ...args: Parameters<typeof step>) {
    if (args[0].decode.length && ++steps === 5) return Promise.reject(new Error('onnxruntime: simulated failure'));
    return step.apply(this, args);
  };
  t.teardown(() => {
    runner.step = step;
  });
  const during = await Promise.all(Array.from({ length: 3 }, () => streamGenerate(url, { ...long, max_tokens: 20 }, { agent: false })));
  for (const r of during) {
    t.equal(r.status, 200);
    t.equal(r.errorCode, 'internal_error', 'an error event, then [DONE]');
    t.equal(r.done, true);
  }
  runner.step = step;
  const after = await app.inject({ method: 'POST', url: '/v1/generate', payload: { prompt: 'Hi', max_tokens: 5 } });
  t.equal(after.statusCode, 200, 'the next request is served');
  t.ok(await waitFor(() => engine.scheduler.batchSize === 0, 10_000));
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
});
