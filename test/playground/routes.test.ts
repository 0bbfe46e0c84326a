/**
 * The playground's routes through app.inject() (no engine needed): the page, its files and their headers, the
 * redirect from /, and that with API keys configured the page loads without one while the API it calls does not.
 */
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildTestApp } from '../helpers/app.js';
import { PLAYGROUND_CSP, PLAYGROUND_DIR } from '../../src/routes/playground.js';
import { sha256Hex } from '../../src/security/keys.js';

const app = await buildTestApp(null);
const keyed = await buildTestApp(null, (c) => {
  c.server.apiKeys = [{ name: 'user', sha256: sha256Hex('sk-playground-user-key'), adapters: '*' }];
});
t.teardown(async () => {
  await app.close();
  await keyed.close();
});

const get = (url: string, on = app) => on.inject({ method: 'GET', url });

t.test('GET / redirects to the page, and so does /playground/', async (t) => {
  for (const url of ['/', '/playground/']) {
    const res = await get(url);
    t.equal(res.statusCode, 302, url);
    t.equal(res.headers.location, '/playground', url);
  }
});

t.test('GET /playground serves the page with a strict Content-Security-Policy', async (t) => {
  const res = await get('/playground');
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/html/);
  t.equal(res.headers['content-security-policy'], PLAYGROUND_CSP);
  t.notMatch(PLAYGROUND_CSP, /unsafe|\*|https?:/, 'no unsafe-inline/eval, wildcard or outside origin');
  t.match(PLAYGROUND_CSP, /default-src 'none'/);
  t.match(PLAYGROUND_CSP, /script-src 'self'/);
  t.equal(res.headers['x-content-type-options'], 'nosniff');
  t.equal(res.body, readFileSync(join(PLAYGROUND_DIR, 'index.html'), 'utf8'));
  t.equal((await app.inject({ method: 'HEAD', url: '/playground' })).statusCode, 200, 'HEAD too');
});

t.test('the page has no inline script, style or handler, and every file it names is served', async (t) => {
  const html = (await get('/playground')).body;
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
  t.ok(scripts.length >= 1);
  for (const [, attributes, body] of scripts) {
    t.match(attributes, /\bsrc="\/playground\/[\w.-]+\.js"/, 'a script from this origin');
    t.equal(body.trim(), '', 'with no inline code');
  }
  t.notMatch(html, /\son[a-z]+\s*=/i, 'no inline event handlers');
  t.notMatch(html, /\sstyle\s*=|<style/i, 'no inline styles');
  t.notMatch(html, /https?:\/\//, 'nothing from another origin');

  const referenced = [...html.matchAll(/(?:src|href)="(\/playground\/[^"]+)"/g)].map((m) => m[1]);
  // The module scripts' own imports ('./x.js'), followed from app.js.
  const queue = referenced.filter((u) => u.endsWith('.js'));
  const seen = new Set<string>(referenced);
  while (queue.length) {
    const url = queue.pop()!;
    const body = (await get(url)).body;
    for (const m of body.matchAll(/^import\b[^'"]*['"]\.\/([\w.-]+\.js)['"]/gm)) {
      const next = `/playground/${m[1]}`;
      if (!seen.has(next)) {
        queue.push(next);
        seen.add(next);
      }
    }
  }
  t.same(
    [...seen].sort(),
    readdirSync(PLAYGROUND_DIR)
      .filter((f) => f !== 'index.html')
      .map((f) => `/playground/${f}`)
      .sort(),
    'every file in the folder is used',
  );
  for (const url of seen) {
    const res = await get(url);
    t.equal(res.statusCode, 200, url);
    t.match(res.headers['content-type'], url.endsWith('.js') ? /^(text|application)\/javascript/ : /^text\/css/, url);
    t.equal(res.headers['content-security-policy'], PLAYGROUND_CSP, `${url} has the policy`);
    t.notMatch(res.body, /https?:\/\/(?!127\.0\.0\.1)/, `${url} reaches no other origin`);
  }
});

t.test('nothing outside the folder is served', async (t) => {
  for (const url of [
    '/playground/nope.js',
    '/playground/../package.json',
    '/playground/%2e%2e/package.json',
    '/playground/..%2fpackage.json',
    '/package.json',
  ]) {
    t.equal((await get(url)).statusCode, 404, url);
  }
});

t.test('with API keys: the page needs none, the API it calls does', async (t) => {
  for (const url of ['/playground', '/playground/app.js', '/playground/playground.css']) t.equal((await get(url, keyed)).statusCode, 200, url);
  t.equal((await get('/', keyed)).statusCode, 302);
  const models = await get('/v1/models', keyed);
  t.equal(models.statusCode, 401);
  t.equal(models.json().error.code, 'unauthorized');
  t.equal((await get('/playground/nope.js', keyed)).statusCode, 401, 'an unknown path is not a route: the gate applies');
});
