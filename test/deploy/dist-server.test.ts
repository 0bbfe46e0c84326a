/**
 * Production runs the build: `npm run build`'s configuration (tsconfig.build.json) compiles src/ into a
 * scratch app directory laid out as the image's /app (dist/, config/, models/, adapters/, public/, node_modules/),
 * and `node dist/server.js` (the image's CMD) serves from it with Node alone: the app's node_modules holds
 * every package except tsx (and the .bin links), so an import of tsx anywhere at run time, the engine
 * worker's bootstrap.mjs included, would fail. Then a real generation through the engine's worker thread.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { childEnv } from '../helpers/child-env.js';
import { PROJECT_ROOT, startServer } from '../helpers/server-process.js';

const require = createRequire(import.meta.url);
const app = mkdtempSync(join(tmpdir(), 'dist-app-'));
t.teardown(() => rmSync(app, { recursive: true, force: true }));

t.test('tsc -p tsconfig.build.json builds dist/ with the worker bootstrap', { timeout: 240_000 }, async (t) => {
  // --noCheck: the same JavaScript (isolatedModules: each file is emitted alone), without type-checking again
  // what `npm run typecheck` checks with this same tsconfig.
  const argv = [require.resolve('typescript/bin/tsc'), '-p', join(PROJECT_ROOT, 'tsconfig.build.json'), '--outDir', join(app, 'dist'), '--noCheck'];
  const tsc = spawnSync(process.execPath, argv, {
    cwd: PROJECT_ROOT,
    env: childEnv(),
    encoding: 'utf8',
    timeout: 220_000,
  });
  t.equal(tsc.status, 0, `tsc: ${tsc.stdout.slice(-2000)}${tsc.stderr.slice(-1000)}`);
  for (const f of ['server.js', 'engine/worker/bootstrap.mjs', 'engine/worker/engine-worker.js']) t.ok(existsSync(join(app, 'dist', f)), `dist/${f}`);
});

t.test('node dist/server.js serves without tsx: ready, and a generation through the worker', { timeout: 180_000 }, async (t) => {
  if (!existsSync(join(app, 'dist', 'server.js'))) return t.fail('no build');
  for (const dir of ['config', 'models', 'adapters', 'public', 'package.json']) symlinkSync(join(PROJECT_ROOT, dir), join(app, dir));
  const modules = join(app, 'node_modules');
  mkdirSync(modules);
  for (const name of readdirSync(join(PROJECT_ROOT, 'node_modules'))) {
    if (name === 'tsx' || name.startsWith('.')) continue;
    symlinkSync(join(PROJECT_ROOT, 'node_modules', name), join(modules, name));
  }
  t.notOk(existsSync(join(modules, 'tsx')), 'tsx is not there');

  // The tests' shared graph cache (test/helpers/engine.ts): entries are keyed by a hash of model and options.
  const cacheDir = join(tmpdir(), 'lora-server-test-cache');
  // NODE_OPTIONS from the test runner could carry --import tsx: the image has none.
  const server = await startServer(
    ['--cache-dir', cacheDir],
    { NODE_OPTIONS: '', ALLOW_UNAUTHENTICATED: '', API_KEYS_FILE: '' },
    { entry: [join(app, 'dist', 'server.js')], cwd: app },
  );
  t.teardown(() => server.stop());
  const ready = (await (await fetch(`${server.url}/readyz`)).json()) as { phase: string };
  t.equal(ready.phase, 'ready', `ready (logs: ${server.logs.join('').slice(-1500)})`);

  const res = await fetch(`${server.url}/v1/generate?adapter=support`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Summarize this ticket: the printer jams.', max_tokens: 4, temperature: 0, ignore_eos: true }),
  });
  t.equal(res.status, 200);
  const body = (await res.json()) as { token_ids: number[]; adapter: string };
  t.equal(body.token_ids.length, 4, 'four tokens from the demo model');
  t.equal(body.adapter, 'support');
  // The playground's files, found beside dist/ as in the image (public/).
  const page = await fetch(`${server.url}/playground`);
  t.equal(page.status, 200, 'the playground page is served from the build');
  t.match(await page.text(), /<script type="module" src="\/playground\/app.js">/);
  t.equal(await server.stop(), 0, 'drains and exits 0 on SIGTERM');
});
