/**
 * The engine's worker thread through its client (src/engine/worker/): the real Worker, the real protocol.
 * Start-up phases, a generation equal to the reference, streaming in batched messages, metrics hooks
 * forwarded, cancellation (abort and break) freeing the request in the worker, errors keeping their engine
 * codes across the boundary, adapter admin calls, and drain on close.
 */
import t from 'tap';
import { cpSync, mkdtempSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineClient } from '../../src/engine/worker/engine-client.js';
import { EngineError } from '../../src/engine/errors.js';
import type { FromWorker } from '../../src/engine/worker/protocol.js';
import type { GenerationEvent } from '../../src/engine/types.js';
import { validateJson } from '../../src/engine/constrain/index.js';
import { TextTokenizer } from '../../src/engine/model/tokenizer.js';
import { engineOptions, FIXTURE_ADAPTERS, FIXTURE_MODEL, greedyRequest, longRequest, maxAbsDiff, reference } from '../helpers/engine.js';
import { waitFor } from '../helpers/wait.js';

const adaptersDir = mkdtempSync(join(tmpdir(), 'worker-adapters-'));
cpSync(FIXTURE_ADAPTERS, adaptersDir, { recursive: true });
cpSync(join(FIXTURE_ADAPTERS, 'sales'), join(adaptersDir, 'broken'), { recursive: true });
const brokenWeights = join(adaptersDir, 'broken', 'adapter_model.safetensors');
truncateSync(brokenWeights, statSync(brokenWeights).size - 64);

const phases: string[] = [];
const client = EngineClient.spawn(engineOptions({ adaptersDir, maxBatch: 4, maxQueue: 6 }), { onPhase: (p) => phases.push(p) });
t.teardown(() => client.close());
await client.ready;

// Every message from the worker, for the batching assertions.
const received: FromWorker[] = [];
const receive = client.receive.bind(client);
client.receive = (m: FromWorker) => {
  received.push(m);
  receive(m);
};

async function collect(events: AsyncIterable<GenerationEvent>): Promise<GenerationEvent[]> {
  const out: GenerationEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

t.test('start-up phases arrive in order, then ready with the engine facts', async (t) => {
  t.same(phases, ['reading_config', 'building_graph', 'creating_session', 'loading_adapters', 'ready']);
  t.equal(client.phase, 'ready');
  t.equal(client.modelName, 'llama-tiny');
  t.equal(client.provider, 'cpu');
  t.same(client.adapters.names().sort(), ['broken', 'code', 'sales', 'support']);
  t.equal(client.adapters.get('broken').status, 'errored', "the mirror holds the worker's adapter states");
});

t.test('token bytes (for log-probability strings) are built in the worker and arrive packed after ready', async (t) => {
  t.ok(await waitFor(() => (client as unknown as { packedTokenBytes: unknown }).packedTokenBytes !== null), 'the table arrived');
  const expected = new TextTokenizer(FIXTURE_MODEL).tokenBytes();
  const table = client.tokenBytes();
  t.equal(table.length, expected.length);
  t.ok(
    table.every((b, i) => b.length === expected[i].length && b.every((x, j) => x === expected[i][j])),
    "the same bytes as the tokenizer's own table",
  );
});

t.test('a greedy generation through the worker equals the reference (tokens and log-probabilities)', async (t) => {
  for (const c of reference.cases.slice(0, 4)) {
    const events = await collect(client.start(greedyRequest(c)).events);
    const finish = events.at(-1)!;
    t.equal(finish.type, 'finish');
    if (finish.type !== 'finish') continue;
    t.same(finish.tokenIds, c.greedy_token_ids, `${c.adapter ?? 'base'}: tokens`);
    t.ok(maxAbsDiff(finish.logprobs!, c.greedy_logprobs) < 2e-4, `${c.adapter ?? 'base'}: log-probabilities`);
    t.equal(events.filter((e) => e.type === 'token' && e.tokenId >= 0).length, c.greedy_token_ids.length, 'one token event per token');
  }
});

t.test('tokens of concurrent streams go out together: fewer messages than tokens', async (t) => {
  received.length = 0;
  const observed = { first: 0, next: 0, finished: 0 };
  client.observer = { firstToken: () => observed.first++, nextToken: () => observed.next++, finished: () => observed.finished++ };
  t.teardown(() => (client.observer = null));
  const runs = await Promise.all([0, 1, 2, 3].map((i) => collect(client.start(longRequest({ maxTokens: 30, seed: i, temperature: 1 })).events)));
  const tokens = runs.reduce((n, r) => n + r.filter((e) => e.type === 'token').length, 0);
  const batches = received.filter((m) => m.type === 'batch');
  const items = batches.reduce((n, m) => n + (m.type === 'batch' ? m.items.length : 0), 0);
  t.equal(items, tokens + 4, 'every token and finish event came in a batch');
  t.ok(batches.length <= tokens / 2, `${batches.length} messages for ${tokens} tokens of 4 streams`);
  t.same(observed, { first: 4, next: 4 * 29, finished: 4 }, 'metrics hooks forwarded');
});

t.test('aborting mid-stream cancels the request in the worker and frees its row', async (t) => {
  const before = client.stats.cancelled;
  const abort = new AbortController();
  const generation = client.start(longRequest({ signal: abort.signal }));
  let seen = 0;
  let error: unknown;
  try {
    for await (const e of generation.events) {
      if (e.type === 'token' && ++seen === 3) abort.abort();
    }
  } catch (e) {
    error = e;
  }
  t.ok(error instanceof EngineError, 'the stream ends with an EngineError');
  t.equal((error as EngineError).code, 'cancelled');
  t.ok(seen < 200, `stopped after ${seen} tokens`);
  t.ok(
    await waitFor(() => client.stats.cancelled > before && client.batchSize === 0 && client.queueDepth === 0 && client.workerInFlight === 0),
    'the worker dropped it: no row, no queue, nothing in flight',
  );
  t.equal(
    client.adapters.list().reduce((n, a) => n + a.inUse, 0),
    0,
    'no adapter reference held',
  );
});

t.test('breaking off the iteration cancels too', async (t) => {
  const before = client.stats.cancelled;
  for await (const e of client.start(longRequest({ adapter: 'sales' })).events) if (e.type === 'token') break;
  t.ok(await waitFor(() => client.stats.cancelled > before && client.batchSize === 0 && client.workerInFlight === 0), 'cancelled in the worker');
  t.equal(client.adapters.get('sales').inUse, 0);
});

t.test('errors keep their engine codes across the boundary', async (t) => {
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return e instanceof EngineError ? e.code : `not an EngineError: ${String(e)}`;
    }
    return 'no error';
  };
  t.equal(
    code(() => client.start(longRequest({ adapter: 'nope' }))),
    'adapter_not_found',
    'unknown adapter (checked on the mirror)',
  );
  t.equal(
    code(() => client.start(longRequest({ adapter: 'broken' }))),
    'adapter_errored',
  );
  t.equal(
    code(() => client.start(longRequest({ maxTokens: 10_000 }))),
    'context_length_exceeded',
  );
  t.equal(
    code(() => client.start(longRequest({ prompt: undefined, promptTokenIds: [1, 99999] }))),
    'invalid_request',
  );

  // maxBatch 4 + maxQueue 6: of 16 at once some are refused by the worker, through their events.
  const abort = new AbortController();
  const outcomes = await Promise.all(
    Array.from({ length: 16 }, async () => {
      try {
        await collect(client.start(longRequest({ signal: abort.signal, maxTokens: 100 })).events);
        return 'finished';
      } catch (e) {
        if (e instanceof EngineError && e.code === 'queue_full') abort.abort();
        return e instanceof EngineError ? e.code : 'other';
      }
    }),
  );
  t.ok(outcomes.includes('queue_full'), `queue_full from the worker (${outcomes.join(', ')})`);
  t.ok(
    outcomes.every((o) => o === 'queue_full' || o === 'cancelled' || o === 'finished'),
    'the rest were cancelled',
  );
  t.ok(await waitFor(() => client.batchSize === 0 && client.queueDepth === 0 && client.workerInFlight === 0));

  // A 1 ms deadline: 240 decode steps cannot all fit in it, however fast the machine.
  const timed = EngineClient.spawn(engineOptions({ adaptersDir, requestTimeoutMs: 1 }));
  t.teardown(() => timed.close());
  await timed.ready;
  const error = await collect(timed.start(longRequest({ maxTokens: 240 })).events).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(error instanceof EngineError && error.code === 'timeout', `a deadline is a timeout (${String(error)})`);
});

t.test('JSON mode crosses as data: the worker compiles the constraint; output is valid against the schema', async (t) => {
  const schema = {
    type: 'object',
    properties: { ok: { type: 'boolean' }, n: { type: 'integer' } },
    required: ['ok', 'n'],
    additionalProperties: false,
  } as const;
  let finished = 0;
  for (const seed of [1, 2, 3, 4]) {
    const events = await collect(
      client.start(longRequest({ maxTokens: 120, temperature: 1, seed, ignoreEos: false }), { responseFormat: { schema, strict: true } }).events,
    );
    const finish = events.at(-1);
    if (finish?.type !== 'finish' || finish.finishReason !== 'stop') continue;
    finished++;
    t.same(validateJson(JSON.parse(finish.text), schema), [], `seed ${seed}: ${finish.text}`);
  }
  t.ok(finished > 0, `${finished} of 4 completed within 120 tokens`);
});

t.test('adapter admin calls: register, validate, pin, unpin, remove, with their errors', async (t) => {
  const info = await client.adapters.register('support2', 'support');
  t.equal(info.name, 'support2');
  t.ok(client.adapters.has('support2'), 'the mirror knows it as soon as the call resolves');
  t.equal((await client.adapters.validate('support2')).status, 'host', 'validated into the host tier');
  t.equal((await client.adapters.pin('support2', true)).pinned, true);
  t.equal(client.adapters.get('support2').pinned, true);
  t.equal((await client.adapters.pin('support2', false)).pinned, false);
  const rejected = async (p: Promise<unknown>) =>
    p.then(
      () => 'resolved',
      (e: unknown) => (e instanceof EngineError ? e.code : String(e)),
    );
  t.equal(await rejected(client.adapters.register('support2', 'support')), 'adapter_exists');
  t.equal(await rejected(client.adapters.register('outside', '../..')), 'invalid_request');
  t.equal(await rejected(client.adapters.register('bad name!', 'support')), 'invalid_adapter_name');
  t.equal(await rejected(client.adapters.pin('broken', true)), 'adapter_errored');
  t.equal(await rejected(client.adapters.remove('nope')), 'adapter_not_found');

  // In use: removal is refused while a generation holds the adapter.
  const abort = new AbortController();
  const running = client.start(longRequest({ adapter: 'support2', signal: abort.signal }));
  const it = running.events[Symbol.asyncIterator]();
  await it.next();
  t.equal(await rejected(client.adapters.remove('support2')), 'adapter_in_use');
  abort.abort();
  await it.next().catch(() => undefined);
  t.ok(await waitFor(() => client.workerInFlight === 0 && client.adapters.get('support2').inUse === 0));
  await client.adapters.remove('support2');
  t.notOk(client.adapters.has('support2'), 'removed from the mirror');
});

t.test('the mirror follows a running batch from the snapshots', async (t) => {
  const abort = new AbortController();
  const steps = client.stats.steps;
  const running = collect(client.start(longRequest({ maxTokens: 240, signal: abort.signal })).events).catch(() => undefined);
  t.ok(await waitFor(() => client.batchSize === 1), 'batch size 1 while it runs');
  t.ok(await waitFor(() => client.stats.steps > steps), 'scheduler stats refresh');
  abort.abort();
  await running;
  t.ok(await waitFor(() => client.batchSize === 0));
});

t.test('close drains: a running generation finishes, then new work is refused', async (t) => {
  const other = EngineClient.spawn(engineOptions({ adaptersDir }));
  await other.ready;
  const running = collect(other.start(longRequest({ maxTokens: 200 })).events);
  t.ok(await waitFor(() => other.batchSize === 1), 'the generation is running');
  const closed = other.close();
  const events = await running;
  const finish = events.at(-1);
  t.equal(finish?.type, 'finish', 'the in-flight generation ran to its end');
  t.equal(finish?.type === 'finish' ? finish.usage.completionTokens : 0, 200);
  await closed;
  t.throws(() => other.start(longRequest()), { code: 'shutting_down' });
});

t.test('a kill while a drain waits: generations are cancelled between steps, the model released once, one `closed`', async (t) => {
  // The server's drain deadline calls kill() while close() already asked for a drain. Before, the worker ran its
  // shutdown twice (releasing the session twice) and a terminate could land inside that second native call,
  // which aborted the whole process (SIGABRT from onnxruntime-node's binding) instead of exiting with its code.
  const errors: string[] = [];
  const phases: string[] = [];
  const other = EngineClient.spawn(engineOptions({ adaptersDir, maxBatch: 2 }), {
    onPhase: (p) => phases.push(p),
    log: { info: () => undefined, warn: () => undefined, error: (obj, msg) => errors.push(`${msg} ${JSON.stringify(obj)}`) },
  });
  await other.ready;
  const closedMessages: string[] = [];
  const receive = other.receive.bind(other);
  other.receive = (m: FromWorker) => {
    if (m.type === 'closed' || (m.type === 'log' && m.level !== 'info')) closedMessages.push(m.type === 'log' ? `log: ${m.msg}` : 'closed');
    receive(m);
  };
  // 12 generations of 200 tokens for 2 batch rows: ~1,200 steps of work, most of it still queued at the kill.
  const generations = Array.from({ length: 12 }, () => collect(other.start(longRequest({ maxTokens: 200 })).events).catch((e: unknown) => e));
  t.ok(await waitFor(() => other.stats.steps > 2), 'the generations are running');
  const draining = other.close();
  await other.kill();
  await draining;
  const outcomes = await Promise.all(generations);
  t.same(closedMessages, ['closed'], 'the worker said closed once, and logged no warning or error');
  t.same(errors, [], 'no worker error on this side either');
  t.notOk(phases.includes('failed'), 'the engine never reported itself failed');
  const ended = outcomes.map((o) => (o instanceof EngineError ? o.code : Array.isArray(o) && o.at(-1)?.type === 'finish' ? 'finished' : String(o)));
  t.ok(
    ended.every((e) => e === 'finished' || e === 'cancelled'),
    `each generation finished before the kill or was cancelled by it: ${ended.join(', ')}`,
  );
  t.ok(ended.includes('cancelled'), 'the kill cancelled the queued ones');
});
