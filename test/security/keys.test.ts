/** Keys and their configuration: hashing, lookup, validation, the keys file, the exposure rule, the token bucket. */
import t from 'tap';
import { childEnv } from '../helpers/child-env.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { ConfigError, loadConfig } from '../../src/config.js';
import { KeyStore, exposureProblem, isLoopbackHost, sha256Hex } from '../../src/security/keys.js';
import { bearerToken, isAdminRoute } from '../../src/security/plugin.js';
import { KeyLimiter } from '../../src/security/rate-limit.js';
import { PROJECT_ROOT } from '../helpers/server-process.js';

const dir = mkdtempSync(join(tmpdir(), 'keys-'));
const file = (name: string, content: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};
const problemsOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.join('\n');
    throw e;
  }
  return '';
};

t.test('lookup hashes the presented key and finds its principal; stored hashes are not keys', async (t) => {
  const store = new KeyStore(
    [
      { name: 'a', sha256: sha256Hex('key-a'), adapters: ['base', 'support'], rateLimitPerMinute: 10 },
      { name: 'b', sha256: sha256Hex('key-b').toUpperCase(), adapters: '*', maxConcurrent: 2 },
    ],
    [sha256Hex('admin-key')],
  );
  t.equal(store.enabled, true);
  t.equal(store.lookup('key-a')?.name, 'a');
  t.same([...(store.lookup('key-a')!.adapters as Set<string>)], ['base', 'support']);
  t.equal(store.lookup('key-a')?.rateLimitPerMinute, 10);
  t.equal(store.lookup('key-b')?.name, 'b', 'upper-case hashes match');
  t.equal(store.lookup('key-b')?.maxConcurrent, 2);
  t.equal(store.lookup('admin-key')?.admin, true);
  t.equal(store.lookup('key-a')?.admin, false);
  t.equal(store.lookup('key-c'), null);
  t.equal(store.lookup(sha256Hex('key-a')), null, 'the hash itself is not a key');
  t.equal(store.lookup(''), null);
  t.equal(new KeyStore([], []).enabled, false);
  t.equal(sha256Hex('hello'), '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
});

t.test('bearer tokens and admin routes', async (t) => {
  t.equal(bearerToken('Bearer abc'), 'abc');
  t.equal(bearerToken('bearer\tabc  '), 'abc');
  for (const bad of [undefined, '', 'Bearer', 'Bearer ', 'Basic abc', 'abc', 'Bearer a b', ['Bearer a', 'Bearer b'], `Bearer ${'x'.repeat(5000)}`]) {
    t.equal(bearerToken(bad as string), null, JSON.stringify(bad)?.slice(0, 40));
  }
  t.equal(isAdminRoute('POST', '/v1/adapters'), true);
  t.equal(isAdminRoute('DELETE', '/v1/adapters/:name'), true);
  t.equal(isAdminRoute('POST', '/v1/adapters/:name/pin'), true);
  t.equal(isAdminRoute('GET', '/v1/adapters'), false);
  t.equal(isAdminRoute('POST', '/v1/generate'), false);
  t.equal(isAdminRoute('POST', undefined), false);
});

t.test('key configuration is validated with clear messages', async (t) => {
  const config = file('bad.json', {
    server: {
      apiKeys: [
        { name: 'ok', sha256: sha256Hex('x'), adapters: '*' },
        { name: 'ok', sha256: sha256Hex('y'), adapters: '*' },
        { name: 'plain', sha256: 'my-secret-key', adapters: '*' },
        { name: 'bad adapters', sha256: sha256Hex('z'), adapters: ['../x'] },
        { name: 'rl', sha256: sha256Hex('w'), adapters: 'all', rateLimitPerMinute: 0, maxConcurrent: 1.5, extra: 1 },
        'nope',
      ],
      adminKeys: ['admin'],
    },
  });
  const problems = problemsOf(() => loadConfig({ argv: ['--config', config], env: {} }));
  t.match(problems, /server\.apiKeys\[1\]\.name ok is used twice/);
  t.match(problems, /server\.apiKeys\[2\]\.sha256 must be the 64 hex digits .* not the key itself/);
  t.match(problems, /server\.apiKeys\[3\]\.name must be/);
  t.match(problems, /server\.apiKeys\[3\]\.adapters must be "\*" or a list of adapter names/);
  t.match(problems, /server\.apiKeys\[4\]\.adapters must be/);
  t.match(problems, /server\.apiKeys\[4\]\.rateLimitPerMinute must be an integer/);
  t.match(problems, /server\.apiKeys\[4\]\.maxConcurrent must be an integer/);
  t.match(problems, /server\.apiKeys\[4\]: unknown field "extra"/);
  t.match(problems, /server\.apiKeys\[5\] must be an object/);
  t.match(problems, /server\.adminKeys\[0\] must be the 64 hex digits/);
  t.notMatch(problems, /my-secret-key/, 'a key pasted by mistake is not echoed');
  t.equal(
    problemsOf(() => loadConfig({ argv: [], env: {} })),
    '',
    'defaults are fine',
  );
});

t.test('API_KEYS_FILE / --api-keys-file replaces the keys of the config file', async (t) => {
  const keys = file('keys.json', {
    apiKeys: [{ name: 'svc', sha256: sha256Hex('svc-key').toUpperCase(), adapters: ['base'] }],
    adminKeys: [sha256Hex('root')],
  });
  const c = loadConfig({ argv: [], env: { API_KEYS_FILE: keys } });
  t.equal(c.server.apiKeys[0].name, 'svc');
  t.equal(c.server.apiKeys[0].sha256, sha256Hex('svc-key'), 'hashes are normalised to lower case');
  t.same(c.server.adminKeys, [sha256Hex('root')]);
  t.equal(loadConfig({ argv: ['--api-keys-file', keys], env: {} }).server.apiKeys.length, 1);
  t.match(
    problemsOf(() => loadConfig({ argv: [], env: { API_KEYS_FILE: join(dir, 'missing.json') } })),
    /apiKeysFile .* does not exist/,
  );
  t.match(
    problemsOf(() => loadConfig({ argv: [], env: { API_KEYS_FILE: file('notjson.json', '{') } })),
    /not valid JSON/,
  );
  t.match(
    problemsOf(() => loadConfig({ argv: [], env: { API_KEYS_FILE: file('array.json', []) } })),
    /must hold a JSON object/,
  );
  t.match(
    problemsOf(() => loadConfig({ argv: [], env: { API_KEYS_FILE: file('extra.json', { keys: [] }) } })),
    /unknown field "keys"/,
  );
  t.match(
    problemsOf(() => loadConfig({ argv: [], env: { API_KEYS_FILE: file('big.json', ' '.repeat((1 << 20) + 1)) } })),
    /bytes; the limit is/,
  );
});

t.test('no keys and a non-loopback host: refused unless allowUnauthenticated', async (t) => {
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) t.equal(isLoopbackHost(host), true, host);
  for (const host of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', 'example.com', '128.0.0.1']) t.equal(isLoopbackHost(host), false, host);
  t.equal(exposureProblem(loadConfig({ argv: [], env: {} })), null, 'loopback default');
  t.match(exposureProblem(loadConfig({ argv: ['--host', '0.0.0.0'], env: {} })), /not loopback, and no API keys are configured.*--allow-unauthenticated/);
  t.equal(exposureProblem(loadConfig({ argv: ['--host', '0.0.0.0', '--allow-unauthenticated'], env: {} })), null, 'bare flag');
  t.equal(exposureProblem(loadConfig({ argv: ['--allow-unauthenticated', '--host', '0.0.0.0'], env: {} })), null, 'bare flag before another flag');
  t.equal(exposureProblem(loadConfig({ argv: ['--host', '0.0.0.0'], env: { ALLOW_UNAUTHENTICATED: 'true' } })), null, 'environment');
  t.match(exposureProblem(loadConfig({ argv: ['--host', '0.0.0.0'], env: { ALLOW_UNAUTHENTICATED: 'false' } })), /not loopback/);
  t.match(
    problemsOf(() => loadConfig({ argv: [], env: { ALLOW_UNAUTHENTICATED: 'yes' } })),
    /server\.allowUnauthenticated must be true or false/,
  );
  t.equal(
    exposureProblem(loadConfig({ argv: ['--host', '0.0.0.0'], env: { API_KEYS_FILE: file('k.json', { adminKeys: [sha256Hex('a')] }) } })),
    null,
    'keys configured',
  );
});

t.test('the server refuses to start exposed without keys (exit 2, clear message)', async (t) => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src', 'server.ts'), '--host', '0.0.0.0', '--port', '0'], {
    cwd: PROJECT_ROOT,
    env: { ...childEnv(), ALLOW_UNAUTHENTICATED: '', API_KEYS_FILE: '' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  t.equal(run.status, 2);
  t.match(run.stderr, /server\.host is 0\.0\.0\.0, which is not loopback, and no API keys are configured/);
});

t.test('npm run key:hash prints the sha256 to paste into the config', async (t) => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'tools', 'key-hash.ts'), 'hello'], {
    cwd: PROJECT_ROOT,
    env: childEnv(),
    encoding: 'utf8',
  });
  t.equal(out.trim(), sha256Hex('hello'));
  const piped = execFileSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'tools', 'key-hash.ts')], {
    cwd: PROJECT_ROOT,
    env: childEnv(),
    encoding: 'utf8',
    input: 'hello\n',
  });
  t.equal(piped.trim(), sha256Hex('hello'), 'from stdin, trailing newline dropped');
  const fresh = execFileSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'tools', 'key-hash.ts'), '--new'], {
    cwd: PROJECT_ROOT,
    env: childEnv(),
    encoding: 'utf8',
  });
  const [, key, hash] = /key: +(\S+)\nsha256: ([0-9a-f]{64})/.exec(fresh) ?? [];
  t.equal(sha256Hex(key), hash, '--new prints a key and its hash');
});

t.test('token bucket: burst of a minute, refills continuously; concurrency counts', async (t) => {
  let now = 0;
  const limiter = new KeyLimiter({ now: () => now });
  for (let i = 0; i < 6; i++) t.equal(limiter.take('k', 6), 0, `request ${i + 1}`);
  t.equal(limiter.take('k', 6), 10, 'empty: one request refills in 10 s');
  now += 5_000;
  t.equal(limiter.take('k', 6), 5, 'half refilled: 5 s more');
  now += 5_000;
  t.equal(limiter.take('k', 6), 0, 'refilled');
  t.equal(limiter.take('other', 6), 0, 'keys are independent');
  now += 3_600_000;
  for (let i = 0; i < 6; i++) t.equal(limiter.take('k', 6), 0, 'never more than a minute of burst');
  t.ok(limiter.take('k', 6) > 0);
  t.equal(limiter.enter('c', 2), true);
  t.equal(limiter.enter('c', 2), true);
  t.equal(limiter.enter('c', 2), false);
  limiter.leave('c');
  t.equal(limiter.active('c'), 1);
  t.equal(limiter.enter('c', 2), true);
});
