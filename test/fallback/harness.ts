/**
 * Shared setup for the tests that drive the real Bedrock SDK client at the loopback fake.
 * (tap lists this file as "no tests found"; it only exports helpers.)
 */
import type { Test } from 'tap';
import type { GenerateRequest, GenerationEvent } from '../../src/engine/types.js';
import { BedrockFallback, type BedrockFallbackOptions } from '../../src/fallback/bedrock-client.js';
import { parseBedrockConfig } from '../../src/fallback/bedrock-config.js';
import { FakeBedrock } from '../helpers/fake-bedrock.js';

export const TEST_ACCESS_KEY_ID = 'AKIDLOOPBACKTEST0001';

/**
 * Static test credentials for the SDK's default provider chain (its first source is the
 * environment). Each tap test file runs in its own process, so this touches no other test.
 */
export function useTestCredentials(): void {
  delete process.env.AWS_BEARER_TOKEN_BEDROCK;
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;
  process.env.AWS_ACCESS_KEY_ID = TEST_ACCESS_KEY_ID;
  process.env.AWS_SECRET_ACCESS_KEY = 'loopback-test-secret-not-a-real-key';
}

export const LLAMA_ARN = 'arn:aws:bedrock:us-east-1:123456789012:provisioned-model/llama-sales-pt';
export const TITAN_ARN = 'arn:aws:bedrock:us-east-1:123456789012:provisioned-model/titan-support-pt';
export const CONVERSE_MODEL = 'us.meta.llama3-1-8b-instruct-v1:0';

/** Targets: sales (llama), support (titan), chat (converse), plus anything the test adds. */
export function testConfigRaw(endpoint: string, extra: Record<string, unknown> = {}, circuitBreaker = { failureThreshold: 3, cooldownMs: 10_000 }) {
  return {
    endpoint,
    circuitBreaker,
    targets: {
      sales: { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', timeoutMs: 2_000, maxRetries: 2 },
      support: { modelId: TITAN_ARN, family: 'titan', region: 'us-east-1', timeoutMs: 2_000, maxRetries: 2 },
      chat: { modelId: CONVERSE_MODEL, family: 'converse', region: 'us-west-2', timeoutMs: 2_000, maxRetries: 2 },
      ...extra,
    },
  };
}

export interface Harness {
  fake: FakeBedrock;
  fallback: BedrockFallback;
  /** The breakers' clock; move it with `clock.now += ms`. */
  clock: { now: number };
}

export async function startHarness(
  t: Test,
  options: {
    extraTargets?: Record<string, unknown>;
    circuitBreaker?: { failureThreshold: number; cooldownMs: number };
    fallback?: BedrockFallbackOptions;
  } = {},
): Promise<Harness> {
  useTestCredentials();
  const fake = await FakeBedrock.start();
  const clock = { now: Date.parse('2030-01-01T00:00:00Z') };
  const fallback = new BedrockFallback(parseBedrockConfig(testConfigRaw(fake.endpoint, options.extraTargets, options.circuitBreaker)), {
    now: () => clock.now,
    backoff: { baseMs: 10, capMs: 50 },
    ...options.fallback,
  });
  t.teardown(async () => {
    fallback.close();
    await fake.close();
  });
  return { fake, fallback, clock };
}

export function request(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    adapter: 'sales',
    prompt: 'Say hello to the team',
    maxTokens: 64,
    temperature: 0.5,
    topP: 0.9,
    topK: 0,
    stop: [],
    ignoreEos: false,
    logprobs: false,
    ...overrides,
  };
}

/** Reads a stream to its end; `error` is what it threw, after `events`. */
export async function collect(stream: AsyncIterable<GenerationEvent>): Promise<{ events: GenerationEvent[]; error?: unknown }> {
  const events: GenerationEvent[] = [];
  try {
    for await (const event of stream) events.push(event);
    return { events };
  } catch (error) {
    return { events, error };
  }
}

export function tokenTexts(events: GenerationEvent[]): string[] {
  return events.flatMap((e) => (e.type === 'token' ? [e.text] : []));
}
