/**
 * Keys on the real server process (keys from API_KEYS_FILE, log level trace): the matrix holds over
 * HTTP, and no key ever appears in the log output, whatever the request did; the key's name does.
 */
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL } from '../helpers/engine.js';
import { startServer } from '../helpers/server-process.js';
import { sha256Hex } from '../../src/security/keys.js';
import { streamGenerate } from '../../tools/soak/sse-client.js';

const dir = mkdtempSync(join(tmpdir(), 'auth-process-'));
const USER_KEY = 'sk-user-SECRETVALUE-4f1d2c9b8a7e6d5c';
const ADMIN_KEY = 'sk-admin-SECRETVALUE-0a9b8c7d6e5f4a3b';
const WRONG_KEY = 'sk-wrong-SECRETVALUE-1234567890abcdef';
const keysFile = join(dir, 'keys.json');
writeFileSync(
  keysFile,
  JSON.stringify({ apiKeys: [{ name: 'svc-user', sha256: sha256Hex(USER_KEY), adapters: ['support', 'base'] }], adminKeys: [sha256Hex(ADMIN_KEY)] }),
);

const server = await startServer(['--model', FIXTURE_MODEL, '--adapters', FIXTURE_ADAPTERS, '--cache-dir', join(dir, 'cache'), '--log-level', 'trace'], {
  API_KEYS_FILE: keysFile,
});
t.teardown(() => server.stop());

const call = (path: string, key: string | null, init: { method?: string; body?: unknown } = {}) =>
  fetch(`${server.url}${path}`, {
    method: init.method ?? (init.body ? 'POST' : 'GET'),
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(init.body ? { 'content-type': 'application/json' } : {}) },
    ...(init.body ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}),
  });

t.test('the matrix over HTTP, and keys never reach the log', async (t) => {
  t.equal((await call('/healthz', null)).status, 200);
  t.equal((await call('/metrics', null)).status, 200);
  t.equal((await call('/v1/generate', null, { body: { prompt: 'Hi', max_tokens: 2 } })).status, 401);
  t.equal((await call('/v1/generate', WRONG_KEY, { body: { prompt: 'Hi', max_tokens: 2 } })).status, 401);
  t.equal((await call('/v1/generate?adapter=support', USER_KEY, { body: { prompt: 'Hi', max_tokens: 2 } })).status, 200);
  t.equal((await call('/v1/generate?adapter=sales', USER_KEY, { body: { prompt: 'Hi', max_tokens: 2 } })).status, 403);
  t.equal((await call('/v1/generate', USER_KEY, { body: '{"prompt": ' })).status, 400, 'a bad body with a good key');
  t.equal((await call('/v1/generate', USER_KEY, { body: { prompt: 'Hi', max_tokens: 100000 } })).status, 400);
  t.equal((await call('/v1/adapters', USER_KEY, { body: { name: 'x', path: 'support' } })).status, 403);
  t.equal((await call('/v1/adapters', ADMIN_KEY, { body: { name: 'x', path: '../../etc' } })).status, 400);
  t.equal((await call('/v1/adapters/support/pin', ADMIN_KEY, { method: 'POST' })).status, 200);
  t.equal(
    (await call(`/v1/generate?key=${encodeURIComponent(WRONG_KEY)}`, null, { body: { prompt: 'Hi', max_tokens: 2 } })).status,
    401,
    'keys in the query string are not accepted',
  );
  const stream = await streamGenerate(
    `${server.url}/v1/generate`,
    { prompt: 'Hi', max_tokens: 3, stream: true },
    { headers: { authorization: `Bearer ${USER_KEY}` } },
  );
  t.equal(stream.done, true, 'a streamed request with a key');
  const cut = new AbortController();
  await streamGenerate(
    `${server.url}/v1/generate`,
    { prompt: 'Hi', max_tokens: 100, ignore_eos: true, stream: true },
    { headers: { authorization: `Bearer ${USER_KEY}` }, signal: cut.signal, onToken: () => cut.abort() },
  );
  // Nine calls to /v1/generate above; the cut stream's line is written when the server sees it end: poll for it.
  const generateLines = () =>
    server.logs
      .join('')
      .split('\n')
      .filter((l) => l.includes('"msg":"request"') && l.includes('"url":"/v1/generate"')).length;
  for (let i = 0; i < 500 && generateLines() < 9; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(generateLines(), 9, 'one request line per /v1/generate call, the cut stream included');

  const logs = server.logs.join('');
  t.ok(logs.split('\n').filter((l) => l.includes('"msg":"request"')).length >= 10, 'the requests were logged');
  for (const secret of [USER_KEY, ADMIN_KEY, WRONG_KEY, 'SECRETVALUE']) t.notOk(logs.includes(secret), `no log line holds ${secret.slice(0, 12)}…`);
  t.match(logs, /"keyName":"svc-user"/, 'the key name is logged for auditing');
  t.match(logs, /"keyName":"admin-1"/);
});
