/** A real listening server on the fixture engine, and the official openai client pointed at it. */
import OpenAI from 'openai';
import type { Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { attachEngine, buildApp } from '../../src/app.js';
import { clientFor } from '../helpers/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Engine, EngineOptions } from '../../src/engine/engine.js';
import { loadFixtureEngine, type ReferenceCase } from '../helpers/engine.js';

export interface TestServer {
  app: FastifyInstance;
  engine: Engine;
  port: number;
  baseURL: string;
  client: OpenAI;
  close(): Promise<void>;
}

export function openaiConfig(adjust: (c: Config) => void = () => undefined): Config {
  const config = loadConfig({ argv: [], env: {} });
  adjust(config);
  return config;
}

export async function startServer(options: { engine?: Partial<EngineOptions>; config?: (c: Config) => void } = {}): Promise<TestServer> {
  const engine = await loadFixtureEngine(options.engine);
  const app = await buildApp({ config: openaiConfig(options.config) });
  attachEngine(app, clientFor(engine));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const baseURL = `http://127.0.0.1:${port}/v1`;
  return {
    app,
    engine,
    port,
    baseURL,
    client: new OpenAI({ baseURL, apiKey: 'test', maxRetries: 0, timeout: 60_000 }),
    async close() {
      await app.close();
      await engine.close();
    },
  };
}

/**
 * The tolerance of test/engine/reference.test.ts: 1e-4, except the code adapter on the 89-token prompt
 * (measured 1.42e-4, float32 summation-order noise), held to 2e-4.
 */
export function logprobTolerance(c: ReferenceCase): number {
  return c.adapter === 'code' && c.prompt_token_ids.length > 64 ? 2e-4 : 1e-4;
}

export function maxDiff(a: number[], b: number[]): number {
  if (a.length !== b.length) return Infinity;
  return Math.max(0, ...a.map((x, i) => Math.abs(x - b[i])));
}

/** `token_id:<id>` strings (return_tokens_as_token_ids) back to ids. */
export function tokenIds(tokens: string[]): number[] {
  return tokens.map((s) => Number(/^token_id:(\d+)$/.exec(s)?.[1] ?? NaN));
}

/** Awaits a rejection and checks its class (the openai client's typed errors); returns the error. */
export async function rejectsWith<E extends Error>(t: Test, promise: Promise<unknown>, kind: new (...args: never[]) => E, message?: string): Promise<E | null> {
  try {
    await promise;
  } catch (e) {
    t.ok(e instanceof kind, message ?? `rejects with ${kind.name} (got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message})`);
    return e instanceof kind ? e : null;
  }
  t.fail(message ?? `expected a ${kind.name}, but the call succeeded`);
  return null;
}
