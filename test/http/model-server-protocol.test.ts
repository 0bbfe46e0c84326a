/**
 * /metrics read exactly as the Gateway API Inference Extension's endpoint picker reads it (llm-d-router's
 * core-metrics-extractor with its default vLLM mapping): `vllm:num_requests_waiting`,
 * `vllm:num_requests_running`, `vllm:kv_cache_usage_perc`, and of `vllm:lora_requests_info` the series with the
 * largest value, its `running_lora_adapters` / `waiting_lora_adapters` split on ',' and trimmed, `max_lora` as an
 * integer. Under a scripted load (the engine's step loop held at chosen moments, so the state is deterministic)
 * the lists must tell the truth: an idle adapter in a slot is running, an adapter that queued requests wait
 * for and that is not in a slot is waiting, never one name in both.
 */
import t from 'tap';
import { buildTestApp, clientFor } from '../helpers/app.js';
import { loadFixtureEngine, reference } from '../helpers/engine.js';
import type { GenerationEvent } from '../../src/engine/types.js';
import { extract, type EndpointMetrics as Extracted } from '../../tools/model-server-protocol/extractor.js';

const engine = await loadFixtureEngine({ adapterSlots: 2, kvCacheBudgetBytes: 4 << 20 });
const app = await buildTestApp(engine);
const client = clientFor(engine);
t.teardown(() => app.close());

const scrapes: Extracted[] = [];
async function scrape(): Promise<Extracted> {
  const res = await app.inject({ url: '/metrics' });
  const e = extract(res.body);
  scrapes.push(e);
  return e;
}
async function scrapeUntil(check: (e: Extracted) => boolean, what: string): Promise<Extracted> {
  for (let i = 0; i < 200; i++) {
    const e = await scrape();
    if (check(e)) return e;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`never saw: ${what}; last ${JSON.stringify(scrapes[scrapes.length - 1])}`);
}

// Holding the step loop: while `held`, every step waits to be let through.
const waiting: Array<() => void> = [];
let held = false;
const runner = engine.runner as { step: (plan: unknown) => Promise<unknown> };
const step = runner.step.bind(runner);
runner.step = async (plan) => {
  if (held) await new Promise<void>((resolve) => waiting.push(resolve));
  return step(plan);
};

const prompt = reference.cases[0].prompt_token_ids;
const request = (adapter: string, maxTokens: number) => ({
  adapter,
  promptTokenIds: prompt,
  maxTokens,
  temperature: 0,
  topP: 1,
  topK: 0,
  stop: [],
  ignoreEos: true,
  logprobs: false,
});
async function startRunning(adapter: string) {
  const generation = client.start(request(adapter, 40));
  const it = generation.events[Symbol.asyncIterator]();
  const first = await it.next();
  if ((first.value as GenerationEvent).type !== 'token') throw new Error('no first token');
  return async () => {
    for (let next = await it.next(); !next.done; next = await it.next());
  };
}

t.test('idle: the series are there with their default engine names, max_lora is the slot count', async (t) => {
  const e = await scrape();
  t.match(e, { waitingQueueSize: 0, runningRequestsSize: 0, kvCacheUsagePercent: 0, maxActiveModels: 2, activeModels: [], waitingModels: [] });
  t.ok(Math.abs(e.loraValue - Date.now() / 1000) < 3600, 'the value is a unix time in seconds');
  t.equal(e.cacheBlockSize, 32, 'cache_config_info: the KV cache grows by 32 positions');
  t.equal(e.cacheNumBlocks, Math.floor((4 << 20) / engine.runner.kvBytesPerToken / 32), 'and the budget holds that many blocks');
});

t.test('a resident adapter stays in running_lora_adapters when idle', async (t) => {
  const res = await app.inject({ method: 'POST', url: '/v1/generate?adapter=support', payload: { prompt_token_ids: prompt, max_tokens: 3, temperature: 0 } });
  t.equal(res.statusCode, 200);
  const e = await scrapeUntil((x) => x.activeModels.includes('support'), 'support resident');
  t.same(e.activeModels, ['support']);
  t.same(e.waitingModels, []);
  t.equal(e.runningRequestsSize, 0, 'no request runs: support is idle, and still listed');
});

t.test('an adapter whose queued requests wait for a slot is waiting, not running; load and KV use are reported', async (t) => {
  const before = (await scrape()).loraValue;
  const finishSupport = await startRunning('support');
  const finishSales = await startRunning('sales');
  held = true; // both slots are held by running requests from here on
  const queued = client.start(request('code', 5));
  const e = await scrapeUntil((x) => x.waitingModels.length > 0, 'code waiting');
  t.same(e.waitingModels, ['code']);
  t.same(e.activeModels, ['sales', 'support']);
  t.equal(e.waitingQueueSize, 1);
  t.equal(e.runningRequestsSize, 2);
  t.ok(e.kvCacheUsagePercent > 0 && e.kvCacheUsagePercent <= 1, `KV use ${e.kvCacheUsagePercent}`);
  t.equal(e.kvCacheUsagePercent, engine.scheduler.load.kvUsage, "the share of the KV budget the scheduler's admission counts");
  t.ok(e.loraValue >= before, 'the value moved with the change');

  held = false;
  for (const release of waiting.splice(0)) release();
  await Promise.all([
    finishSupport(),
    finishSales(),
    (async () => {
      for await (const _ of queued.events);
    })(),
  ]);
  const done = await scrapeUntil(
    (x) => x.waitingModels.length === 0 && x.activeModels.includes('code') && x.runningRequestsSize === 0,
    'code resident, nothing waiting',
  );
  t.equal(done.activeModels.length, 2, 'two slots: code and the most recently used of the others');
  t.equal(done.waitingQueueSize, 0);
  t.equal(done.kvCacheUsagePercent, 0);
});

t.test('never the same adapter in both lists, in any scrape', async (t) => {
  t.ok(scrapes.length > 4, `${scrapes.length} scrapes`);
  for (const e of scrapes) {
    t.same(
      e.activeModels.filter((a) => e.waitingModels.includes(a)),
      [],
      JSON.stringify(e),
    );
    t.ok(e.activeModels.length <= e.maxActiveModels, 'no more running adapters than slots');
  }
  const body = (await app.inject({ url: '/metrics' })).body;
  t.equal(body.split('\n').filter((l) => l.startsWith('vllm:lora_requests_info{')).length, 1, 'one series: the current lists');
  t.match(body, /lora_adapter_residency\{tier="device"\} 2/);
  // Local adapters were parsed at start, before the metrics existed; loads after start are counted (S3 test).
  t.match(body, /# TYPE lora_adapter_load_seconds histogram/);
});

t.test("the routing harness's rules (bench/fleet.ts) are llm-d's scorers", async (t) => {
  const { loraAffinityScore, queueScores, pick } = await import('../../tools/model-server-protocol/extractor.js');
  const pod = (active: string[], waiting: string[], queue = 0, kv = 0): Extracted => ({
    waitingQueueSize: queue,
    runningRequestsSize: 0,
    kvCacheUsagePercent: kv,
    maxActiveModels: 2,
    activeModels: active,
    waitingModels: waiting,
    loraValue: 0,
    cacheBlockSize: 32,
    cacheNumBlocks: 1,
  });
  t.equal(loraAffinityScore(pod(['a', 'b'], []), 'a'), 1, 'active');
  t.equal(loraAffinityScore(pod(['b'], []), 'a'), 0.8, 'room for one more');
  t.equal(loraAffinityScore(pod(['b'], ['a']), 'a'), 0.6, 'queued');
  t.equal(loraAffinityScore(pod(['b', 'c'], []), 'a'), 0, 'full');
  t.same(queueScores([pod([], [], 0), pod([], [], 4), pod([], [], 2)]), [1, 0, 0.5]);
  const weights = { lora: 3, queue: 2, kv: 1 };
  t.equal(pick([pod(['b', 'c'], []), pod(['a', 'b'], []), pod(['c'], [])], 'a', weights), 1, 'the pod holding the adapter');
  t.equal(pick([pod(['b', 'c'], []), pod(['a', 'b'], [], 6), pod(['c'], [], 0)], 'a', weights), 2, 'unless its queue is long and another pod has room');
});
