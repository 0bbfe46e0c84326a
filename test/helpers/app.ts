/** Builds the app around a fixture engine for app.inject() tests. */
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Engine } from '../../src/engine/engine.js';

export function testConfig(overrides: (c: Config) => void = () => undefined): Config {
  const config = loadConfig({ argv: [], env: {} });
  overrides(config);
  return config;
}

export async function buildTestApp(engine: Engine | null, overrides?: (c: Config) => void) {
  return buildApp({ config: testConfig(overrides), engine });
}
