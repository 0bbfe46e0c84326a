import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEFAULTS, loadConfig } from '../../src/config.js';

t.test('defaults < file < environment < flags', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'cfg-')), 'c.json');
  writeFileSync(file, JSON.stringify({ server: { port: 1000, host: '0.0.0.0' }, engine: { maxBatch: 4, maxQueue: 7 } }));
  t.same(loadConfig({ argv: [], env: {} }), DEFAULTS);
  const c = loadConfig({ argv: ['--port', '3000', '--max-batch=2'], env: { CONFIG_FILE: file, PORT: '2000', MAX_QUEUE: '9' } });
  t.equal(c.server.port, 3000, 'flag beats env and file');
  t.equal(c.engine.maxQueue, 9, 'env beats file');
  t.equal(c.server.host, '0.0.0.0', 'file beats default');
  t.equal(c.engine.maxBatch, 2);
  t.same(loadConfig({ argv: ['--execution-providers', 'webgpu,cpu'], env: {} }).model.executionProviders, ['webgpu', 'cpu']);
});

t.test('each bad value gets a clear message', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'cfg-')), 'c.json');
  writeFileSync(file, JSON.stringify({ engine: { maxBatch: 0, bogus: 1 }, nope: {} }));
  try {
    loadConfig({ argv: ['--port', 'abc', '--wat', '1', '--log-level', 'loud'], env: { CONFIG_FILE: file, MAX_QUEUE: '-1' } });
    t.fail('should throw');
  } catch (e) {
    t.type(e, ConfigError);
    const problems = (e as ConfigError).problems.join('\n');
    t.match(problems, /server\.port must be an integer from 0 to 65535 \(got "abc" from flag --port\)/);
    t.match(problems, /unknown argument --wat/);
    t.match(problems, /server\.logLevel must be one of/);
    t.match(problems, /engine\.maxBatch must be an integer from 1 to 256/);
    t.match(problems, /unknown setting engine\.bogus/);
    t.match(problems, /unknown section "nope"/);
    t.match(problems, /engine\.maxQueue .*from environment MAX_QUEUE/);
  }
  t.throws(() => loadConfig({ argv: ['--config', '/nonexistent.json'], env: {} }), /does not exist/);
});

t.test('state residency: a choice, validated with the accepted values in the message', async (t) => {
  t.equal(loadConfig({ argv: [], env: {} }).model.stateResidency, 'auto');
  t.equal(loadConfig({ argv: ['--state-residency', 'device'], env: { STATE_RESIDENCY: 'host' } }).model.stateResidency, 'device', 'flag beats environment');
  t.throws(
    () => loadConfig({ argv: [], env: { STATE_RESIDENCY: 'gpu' } }),
    /model\.stateResidency must be one of auto, host, device \(got "gpu" from environment STATE_RESIDENCY\)/,
  );
});
