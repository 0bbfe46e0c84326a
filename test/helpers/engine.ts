/** Shared test setup: an engine on the reference fixture (llama-tiny + support, sales, code). */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { Engine, type EngineOptions } from '../../src/engine/engine.js';
import type { GenerateRequest } from '../../src/engine/types.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const FIXTURE_MODEL = join(FIXTURES, 'llama-tiny');
export const FIXTURE_ADAPTERS = join(FIXTURES, 'adapters');

export interface ReferenceCase {
  prompt: string;
  prompt_token_ids: number[];
  adapter: string | null;
  prompt_logprobs: number[];
  last_logprobs: number[];
  greedy_token_ids: number[];
  greedy_logprobs: number[];
  greedy_min_margin: number;
  greedy_text: string;
}

export interface Reference {
  cases: ReferenceCase[];
  tokenizer_cases: Array<{ text: string; ids: number[]; decoded: string }>;
  chat_template_case: { messages: Array<{ role: string; content: string }>; rendered: string };
}

export const reference: Reference = JSON.parse(readFileSync(join(FIXTURES, 'reference.json'), 'utf8')).models[0];

export function engineOptions(overrides: Partial<EngineOptions> = {}): EngineOptions {
  return {
    modelDir: FIXTURE_MODEL,
    adaptersDir: FIXTURE_ADAPTERS,
    cacheDir: join(tmpdir(), 'lora-server-test-cache'),
    executionProviders: ['cpu'],
    maxBatch: 8,
    maxBatchTokens: 8 * 256,
    maxQueue: 64,
    adapterSlots: 4,
    maxLoraRank: 64,
    hostCacheBytes: 64 << 20,
    maxSequenceLength: 256,
    prefillChunk: 512,
    requestTimeoutMs: 60_000,
    intraOpThreads: 1,
    ...overrides,
  };
}

export function freshCacheDir(): string {
  return mkdtempSync(join(tmpdir(), 'lora-server-cache-'));
}

export async function loadFixtureEngine(overrides: Partial<EngineOptions> = {}): Promise<Engine> {
  return Engine.load(engineOptions(overrides));
}

/** A greedy request for 200 tokens that ignores EOS: one that keeps a batch row busy for a while. */
export function longRequest(extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    adapter: null,
    prompt: 'Tell me a long story.',
    maxTokens: 200,
    temperature: 0,
    topP: 1,
    topK: 0,
    stop: [],
    ignoreEos: true,
    logprobs: false,
    ...extra,
  };
}

export function greedyRequest(c: ReferenceCase, extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    adapter: c.adapter,
    promptTokenIds: c.prompt_token_ids,
    maxTokens: c.greedy_token_ids.length,
    temperature: 0,
    topP: 1,
    topK: 0,
    stop: [],
    ignoreEos: true,
    logprobs: true,
    ...extra,
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/**
 * The one injected fault of the Bedrock tests: the engine's prompt step throws (as a model failure before the
 * first token would) until the test ends.
 */
export function failPrefillUntilTeardown(t: Test, engine: Engine): void {
  const realStep = engine.runner.step.bind(engine.runner);
  engine.runner.step = async (plan) => {
    if (plan.prefill.length) throw new Error('injected engine failure');
    return realStep(plan);
  };
  t.teardown(() => {
    engine.runner.step = realStep;
  });
}
