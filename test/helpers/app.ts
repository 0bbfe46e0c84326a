/**
 * Builds the app around a fixture engine for app.inject() tests. The routes talk to the engine through an
 * EngineClient, as in the server; here its EngineHost runs in-process over a MessageChannel (the same
 * protocol messages and structured clones as the worker thread, src/engine/worker/in-process.ts), so tests
 * can still inject faults into the engine and read its scheduler. The real worker thread is covered by
 * test/worker/*.test.ts and the tests that start the server process.
 */
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Engine } from '../../src/engine/engine.js';
import type { EngineClient } from '../../src/engine/worker/engine-client.js';
import { inProcessClient } from '../../src/engine/worker/in-process.js';

export function testConfig(overrides: (c: Config) => void = () => undefined): Config {
  const config = loadConfig({ argv: [], env: {} });
  overrides(config);
  return config;
}

const clients = new WeakMap<Engine, EngineClient>();

/** The in-process client of an engine (one per engine: its host owns the scheduler's metrics hooks). */
export function clientFor(engine: Engine): EngineClient {
  let client = clients.get(engine);
  if (!client) {
    client = inProcessClient(engine);
    clients.set(engine, client);
  }
  return client;
}

export async function buildTestApp(engine: Engine | null, overrides?: (c: Config) => void) {
  return buildApp({ config: testConfig(overrides), engine: engine ? clientFor(engine) : null });
}
