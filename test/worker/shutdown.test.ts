/**
 * Stopping the engine through its client (src/engine/worker/): close() drains, kill() cancels, and when the
 * server's drain deadline calls kill() while close() already waits, the model is released once and the other
 * side is ended only after that release. The host is served in-process (in-process.ts), so the test can watch
 * the runner's release and the moment the client ends the other side; protocol.test.ts runs the same over the
 * real worker thread.
 */
import t from 'tap';
import { inProcessClient } from '../../src/engine/worker/in-process.js';
import { EngineError } from '../../src/engine/errors.js';
import type { GenerationEvent } from '../../src/engine/types.js';
import { loadFixtureEngine, longRequest } from '../helpers/engine.js';

async function outcome(events: AsyncIterable<GenerationEvent>): Promise<string> {
  try {
    let last: GenerationEvent | undefined;
    for await (const e of events) last = e;
    return last?.type === 'finish' ? 'finished' : `ended without a finish (${last?.type})`;
  } catch (e) {
    return e instanceof EngineError ? e.code : String(e);
  }
}

t.test('a kill while a drain waits: generations cancelled, the model released once, the other side ended after it', async (t) => {
  const engine = await loadFixtureEngine({ maxBatch: 2 });
  // What happened, in order: each release's start and end, and the client ending the host (terminate).
  const order: string[] = [];
  const release = engine.runner.release.bind(engine.runner);
  engine.runner.release = async () => {
    order.push('release');
    await release();
    order.push('released');
  };
  const client = inProcessClient(engine);
  const detach = client.host.detach.bind(client.host);
  client.host.detach = () => {
    order.push('terminate');
    detach();
  };
  // 12 generations of 200 tokens for 2 batch rows: most are still queued when the kill comes.
  const generations = Array.from({ length: 12 }, () => outcome(client.start(longRequest()).events));
  while (engine.scheduler.stats.steps < 3) await new Promise((r) => setTimeout(r, 5));
  const draining = client.close();
  await client.kill();
  await draining;
  const ended = await Promise.all(generations);
  t.ok(
    ended.every((e) => e === 'finished' || e === 'cancelled'),
    `each generation finished before the kill or was cancelled by it: ${ended.join(', ')}`,
  );
  t.ok(ended.includes('cancelled'), 'the kill cancelled the queued ones');
  t.same(order.filter((o) => o === 'release').length, 1, `the model was released once (${order.join(' > ')})`);
  t.ok(order.indexOf('released') < order.indexOf('terminate'), `the other side was ended only after the release (${order.join(' > ')})`);
});

t.test('close() alone drains: every generation finishes, one release, then the other side is ended', async (t) => {
  const engine = await loadFixtureEngine({ maxBatch: 2 });
  let releases = 0;
  const release = engine.runner.release.bind(engine.runner);
  engine.runner.release = async () => {
    releases++;
    await release();
  };
  const client = inProcessClient(engine);
  const generations = Array.from({ length: 4 }, () => outcome(client.start(longRequest({ maxTokens: 20 })).events));
  while (engine.scheduler.stats.steps < 1) await new Promise((r) => setTimeout(r, 5));
  await client.close();
  t.same(await Promise.all(generations), ['finished', 'finished', 'finished', 'finished']);
  t.equal(releases, 1, 'one release');
  await client.close();
  await engine.close();
  t.equal(releases, 1, 'closing again does not release again');
});

t.test('a worker that dies while kill() waits for `closed` does not leave kill() waiting', async (t) => {
  const engine = await loadFixtureEngine();
  t.teardown(() => engine.close());
  const client = inProcessClient(engine);
  // A worker that never answers the shutdown (stuck, then crashing).
  client.host.shutdown = () => new Promise<void>(() => undefined);
  let terminated = false;
  const detach = client.host.detach.bind(client.host);
  client.host.detach = () => {
    terminated = true;
    detach();
  };
  const killed = client.kill();
  client.workerDied('the engine worker exited with code 1', new Error('crashed'));
  await killed;
  t.ok(terminated, 'kill() went on to end the other side');
});
