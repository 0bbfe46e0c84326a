/**
 * The packed step loop: decoding rows and prompt chunks of several prompts in one forward run, admission while
 * prompts prefill, KV memory that follows the tokens in flight, admission by KV budget.
 */
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshCacheDir, greedyRequest, loadFixtureEngine, maxAbsDiff, reference } from '../helpers/engine.js';
import { writeRandomModel, writeWordTokenizer } from '../../bench/random-checkpoint.js';
import { Engine } from '../../src/engine/engine.js';
import type { ModelRunner } from '../../src/engine/model/model-runner.js';
import { isEngineError } from '../../src/engine/errors.js';
import type { GenerateRequest } from '../../src/engine/types.js';

t.test('greedy rows with and without log-probabilities in the same steps: only those that ask get them, equal to HF', async (t) => {
  // The graph computes the chosen token's log-probability only for the rows listed in logprob_rows (its
  // log-sum-exp over the vocabulary is the costly part): every other case here asks for none.
  const engine = await loadFixtureEngine({ maxBatch: 8, adapterSlots: 3 });
  t.teardown(() => engine.close());
  const asks = (i: number) => i % 2 === 0;
  const results = await Promise.all(reference.cases.map((c, i) => engine.generate({ ...greedyRequest(c), logprobs: asks(i) })));
  t.ok(engine.scheduler.stats.decodeRowsTotal / engine.scheduler.stats.decodeSteps > 1, 'decode steps held several rows');
  results.forEach((r, i) => {
    const c = reference.cases[i];
    t.same(r.tokenIds, c.greedy_token_ids, `case ${i}: greedy tokens equal HF`);
    if (asks(i)) {
      const tolerance = c.prompt_token_ids.length > 64 ? 2e-4 : 1e-4; // see reference.test.ts
      t.equal(r.logprobs?.length, c.greedy_logprobs.length, `case ${i}: one log-probability per token`);
      t.ok(maxAbsDiff(r.logprobs!, c.greedy_logprobs) < tolerance, `case ${i}: log-probabilities within ${tolerance} of HF`);
    } else t.same(r.logprobs ?? [], [], `case ${i}: no log-probabilities (not asked)`);
  });
});

t.test('every reference case, arriving staggered with small prompt chunks, gives the HF tokens and logprobs', async (t) => {
  // 16 prompt tokens per step: long prompts take several steps and share them with decoding rows and other prompts.
  const engine = await loadFixtureEngine({ prefillChunk: 16, maxBatch: 6, adapterSlots: 3 });
  t.teardown(() => engine.close());
  const results = await Promise.all(
    reference.cases.map(async (c, i) => {
      await new Promise((resolve) => setTimeout(resolve, i * 3)); // arrivals spread over the first steps
      return engine.generate({ ...greedyRequest(c), logprobs: true });
    }),
  );
  results.forEach((r, i) => {
    const c = reference.cases[i];
    const tolerance = c.prompt_token_ids.length > 64 ? 2e-4 : 1e-4; // see reference.test.ts
    t.same(r.tokenIds, c.greedy_token_ids, `case ${i} (${c.adapter ?? 'base'}): greedy tokens equal HF`);
    t.ok(maxAbsDiff(r.logprobs!, c.greedy_logprobs) < tolerance, `case ${i}: logprobs within ${tolerance}`);
  });
  const stats = engine.scheduler.stats;
  t.ok(stats.mixedSteps > 0, `steps that ran decodes and prompt chunks together: ${stats.mixedSteps}`);
  t.ok(stats.prefillGroups > 0, `steps that prefilled several prompts together: ${stats.prefillGroups}`);
  t.ok(stats.decodeRowsTotal / stats.decodeSteps > 1, 'decode steps held several rows');
});

t.test('prompt log-probabilities over several chunks equal one chunk', async (t) => {
  const whole = await loadFixtureEngine();
  const chunked = await loadFixtureEngine({ prefillChunk: 7 });
  t.teardown(async () => {
    await whole.close();
    await chunked.close();
  });
  const c = reference.cases.reduce((a, b) => (b.prompt_token_ids.length > a.prompt_token_ids.length ? b : a));
  const [a, b] = await Promise.all([whole.generate(greedyRequest(c), { promptLogprobs: true }), chunked.generate(greedyRequest(c), { promptLogprobs: true })]);
  t.same(b.tokenIds, a.tokenIds);
  t.ok(maxAbsDiff(a.scores!.promptLogprobs, b.scores!.promptLogprobs) < 1e-4, 'prompt logprobs agree');
  t.equal(b.scores!.promptLogprobs.length, c.prompt_token_ids.length - 1);
});

/** A small random model whose context allows 16384 positions (word tokenizer). */
function longContextModel(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lora-server-long-'));
  writeRandomModel(dir, { hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 512, maxPositions: 16384 });
  writeWordTokenizer(dir, 512);
  return dir;
}

const request = (i: number, overrides: Partial<GenerateRequest> = {}): GenerateRequest => ({
  adapter: null,
  promptTokenIds: Array.from({ length: 40 }, (_, k) => 2 + ((i * 31 + k * 7) % 500)),
  maxTokens: 24,
  temperature: 0,
  topP: 1,
  topK: 0,
  stop: [],
  ignoreEos: true,
  logprobs: false,
  ...overrides,
});

t.test('KV memory follows the tokens in flight, not the configured context', async (t) => {
  const modelDir = longContextModel();
  const cacheDir = freshCacheDir();
  const peaks: number[] = [];
  const outputs: number[][][] = [];
  for (const maxSequenceLength of [512, 16384]) {
    const engine = await Engine.load({ ...baseOptions(modelDir, cacheDir), maxSequenceLength });
    const runner = engine.runner as ModelRunner;
    let peak = 0;
    const poll = setInterval(() => (peak = Math.max(peak, runner.kvCacheBytes)), 1);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => engine.generate(request(i))));
    clearInterval(poll);
    peak = Math.max(peak, runner.kvCacheBytes);
    peaks.push(peak);
    outputs.push(results.map((r) => r.tokenIds));
    t.ok(runner.kvCapacity <= 128, `max-sequence-length ${maxSequenceLength}: capacity ${runner.kvCapacity} positions for 64-token rows`);
    await engine.close();
  }
  t.equal(peaks[0], peaks[1], `the same peak KV bytes at 512 and 16384 (${peaks[0]})`);
  t.same(outputs[1], outputs[0], 'and the same tokens');
});

t.test('admission by KV budget: what never fits is refused, what does not fit now waits', async (t) => {
  const modelDir = longContextModel();
  const perToken = 2 * 2 * 2 * 16 * 4; // layers * (k, v) * kv heads * head dim * 4 bytes
  // Room for two rows of 64 positions: 8 requests of 40 + 24 tokens run two at a time.
  const engine = await Engine.load({ ...baseOptions(modelDir, freshCacheDir()), kvCacheBudgetBytes: 2 * 64 * perToken });
  t.teardown(() => engine.close());
  t.equal(engine.runner.kvBytesPerToken, perToken);
  let widest = 0;
  const poll = setInterval(() => (widest = Math.max(widest, engine.scheduler.batchSize)), 1);
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => engine.generate(request(i))));
  clearInterval(poll);
  t.ok(
    results.every((r) => r.tokenIds.length === 24),
    'every request completes',
  );
  t.ok(widest <= 2, `never more than 2 rows in flight (saw ${widest})`);
  let error: unknown;
  try {
    engine.start(request(0, { maxTokens: 200 }));
  } catch (e) {
    error = e;
  }
  t.ok(isEngineError(error) && error.code === 'kv_budget_exceeded', 'a request that could never fit is refused at once');
  t.match((error as Error).message, /MiB of KV cache/);
});

function baseOptions(modelDir: string, cacheDir: string) {
  return {
    modelDir,
    adaptersDir: mkdtempSync(join(tmpdir(), 'lora-server-no-adapters-')),
    cacheDir,
    executionProviders: ['cpu'],
    maxBatch: 8,
    maxBatchTokens: 1 << 20,
    maxQueue: 64,
    adapterSlots: 2,
    maxLoraRank: 16,
    hostCacheBytes: 16 << 20,
    maxSequenceLength: 512,
    prefillChunk: 128,
    requestTimeoutMs: 60_000,
    intraOpThreads: 1,
  };
}

t.test('a head_dim that is not a multiple of 16 serves on the host path (packed attention has no such limit)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lora-server-hd24-'));
  writeRandomModel(dir, { hidden: 96, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 512, maxPositions: 512 });
  writeWordTokenizer(dir, 512);
  const whole = await Engine.load({ ...baseOptions(dir, freshCacheDir()), prefillChunk: 128 });
  const chunked = await Engine.load({ ...baseOptions(dir, freshCacheDir()), prefillChunk: 5 });
  t.teardown(async () => {
    await whole.close();
    await chunked.close();
  });
  t.equal(whole.spec.headDim, 24);
  const [a, b] = await Promise.all([whole.generate(request(1, { logprobs: true })), chunked.generate(request(1, { logprobs: true }))]);
  t.equal(a.tokenIds.length, 24);
  t.same(b.tokenIds, a.tokenIds, 'chunked and whole prefill agree');
  t.ok(maxAbsDiff(a.logprobs!, b.logprobs!) < 1e-4);
});

t.test('a prompt that finishes at its first token while a later one starts decoding keeps the rows in order', async (t) => {
  // One step: a running decoder, then P1 (done at its first token), P2 (goes on decoding), P3 (still in prefill).
  const engine = await loadFixtureEngine({ prefillChunk: 40 });
  t.teardown(() => engine.close());
  const ids = (n: number, seed: number) => Array.from({ length: n }, (_, k) => 3 + ((seed * 31 + k * 7) % 300));
  const greedy = (promptTokenIds: number[], maxTokens: number): GenerateRequest => ({
    adapter: null,
    promptTokenIds,
    maxTokens,
    temperature: 0,
    topP: 1,
    topK: 0,
    stop: [],
    ignoreEos: true,
    logprobs: false,
  });
  const inputs = [greedy(ids(12, 1), 30), greedy(ids(10, 2), 1), greedy(ids(10, 3), 12), greedy(ids(60, 4), 6)];
  const solo: number[][] = [];
  for (const r of inputs) solo.push((await engine.generate(r)).tokenIds);
  const running = engine.generate(inputs[0]);
  await new Promise((resolve) => setImmediate(resolve));
  const together = await Promise.all([running, ...inputs.slice(1).map((r) => engine.generate(r))]);
  together.forEach((r, i) => t.same(r.tokenIds, solo[i], `request ${i}: the same tokens as alone`));
  t.equal(engine.scheduler.stats.failed, 0, 'no step failed');
});

t.test('adapters in slots that are not neighbours, and a slot rewritten between steps, give the HF tokens', async (t) => {
  const engine = await loadFixtureEngine({ adapterSlots: 3 });
  t.teardown(() => engine.close());
  const byAdapter = (name: string | null) => reference.cases.find((c) => c.adapter === name)!;
  // Slots 1, 2, 3 = support, sales, code; then support and code together use slots 1 and 3 (a laid-out copy).
  for (const name of ['support', 'sales', 'code']) await engine.generate(greedyRequest(byAdapter(name)));
  const pair = await Promise.all(['support', 'code'].map((name) => engine.generate(greedyRequest(byAdapter(name)))));
  t.same(pair[0].tokenIds, byAdapter('support').greedy_token_ids, 'support (slot 1) beside code (slot 3)');
  t.same(pair[1].tokenIds, byAdapter('code').greedy_token_ids, 'code (slot 3) beside support (slot 1)');
  // One slot, three adapters in turn: every request rewrites the slot the previous step's layout read.
  const single = await loadFixtureEngine({ adapterSlots: 1 });
  t.teardown(() => single.close());
  for (const name of ['code', 'support', 'sales', 'code']) {
    t.same((await single.generate(greedyRequest(byAdapter(name)))).tokenIds, byAdapter(name).greedy_token_ids, `${name} after the slot was rewritten`);
  }
});
