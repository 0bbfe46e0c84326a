/** The adapter admin API through app.inject(): register, confine paths, pin, delete. */
import t from 'tap';
import { cpSync, mkdtempSync, symlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_ADAPTERS, loadFixtureEngine } from '../helpers/engine.js';
import { buildTestApp } from '../helpers/app.js';

const root = mkdtempSync(join(tmpdir(), 'adapters-root-'));
cpSync(join(FIXTURE_ADAPTERS, 'support'), join(root, 'support'), { recursive: true });
mkdirSync(join(root, 'staging'));
cpSync(join(FIXTURE_ADAPTERS, 'sales'), join(root, 'staging', 'sales-v2'), { recursive: true });
const outside = mkdtempSync(join(tmpdir(), 'outside-'));
cpSync(join(FIXTURE_ADAPTERS, 'code'), join(outside, 'code'), { recursive: true });
symlinkSync(join(outside, 'code'), join(root, 'escape'));

const engine = await loadFixtureEngine({ adaptersDir: root });
const app = await buildTestApp(engine);
t.teardown(async () => {
  await app.close();
  await engine.close();
});
const post = (url: string, payload?: unknown) => app.inject({ method: 'POST', url, ...(payload ? { payload: payload as object } : {}) });

t.test('register from a path under the root', async (t) => {
  const res = await post('/v1/adapters', { name: 'sales-v2', path: 'staging/sales-v2' });
  t.equal(res.statusCode, 201);
  t.equal(res.json().status, 'host', 'validated into the host tier');
  t.equal(res.json().rank, 8);
  t.equal((await post('/v1/adapters', { name: 'sales-v2', path: 'staging/sales-v2' })).json().error.code, 'adapter_exists');
  const gen = await app.inject({ method: 'POST', url: '/v1/generate?adapter=sales-v2', payload: { prompt: 'Hi', max_tokens: 2 } });
  t.equal(gen.statusCode, 200);
});

t.test('paths outside the root, traversal and symbolic-link escapes are refused', async (t) => {
  for (const [path, message] of [
    ['../', /outside the adapters root/],
    [outside, /outside the adapters root/],
    ['staging/../../x', /outside/],
    ['escape', /symbolic link/],
    ['nope', /not a directory/],
  ] as const) {
    const res = await post('/v1/adapters', { name: 'x1', path });
    t.equal(res.statusCode, 400, path);
    t.match(res.json().error.message, message, path);
  }
  t.equal((await post('/v1/adapters', { name: '../evil', path: 'support' })).json().error.code, 'invalid_adapter_name');
  const list = (await app.inject({ url: '/v1/adapters' })).json().data;
  const escape = list.find((a: { name: string }) => a.name === 'escape');
  t.equal(escape.status, 'errored', 'a symlink found at start-up that leads outside is errored, not served');
  t.match(escape.reason, /symbolic link/, 'the reason, as the README calls it');
  t.equal(escape.error, escape.reason, 'and under its former name, error');
});

t.test('pin, unpin, delete', async (t) => {
  t.equal((await post('/v1/adapters/support/pin')).json().pinned, true);
  t.equal((await post('/v1/adapters/support/unpin')).json().pinned, false);
  t.equal((await post('/v1/adapters/nope/pin')).statusCode, 404);
  const del = await app.inject({ method: 'DELETE', url: '/v1/adapters/sales-v2' });
  t.equal(del.statusCode, 204);
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/adapters/sales-v2' })).statusCode, 404);
  const gen = await app.inject({ method: 'POST', url: '/v1/generate?adapter=sales-v2', payload: { prompt: 'Hi' } });
  t.equal(gen.json().error.code, 'adapter_not_found');
});
