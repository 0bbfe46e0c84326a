/** The graph cache's bound: least recently used entries evicted, never the one served; npm run cache:prune. */
import t from 'tap';
import { childEnv } from '../helpers/child-env.js';
import { mkdirSync, utimesSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { freshCacheDir, loadFixtureEngine } from '../helpers/engine.js';
import { listEntries, pruneCache, touchEntry } from '../../src/engine/model/graph-cache.js';

/** A fake entry of `bytes` bytes last used `ageS` seconds ago. */
function entry(cacheDir: string, name: string, bytes: number, ageS: number): string {
  const dir = join(cacheDir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.onnx'), Buffer.alloc(bytes));
  touchEntry(dir);
  const when = new Date(Date.now() - ageS * 1000);
  utimesSync(join(dir, 'last-used'), when, when);
  return dir;
}

t.test('evicts least recently used entries until the cache fits, never one that is kept; stale temporary folders go', async (t) => {
  const cache = freshCacheDir();
  entry(cache, 'old', 1000, 300);
  entry(cache, 'middle', 1000, 200);
  const inUse = entry(cache, 'in-use-but-oldest', 1000, 400);
  entry(cache, 'new', 1000, 100);
  mkdirSync(join(cache, 'x.tmp-1-2'));
  utimesSync(join(cache, 'x.tmp-1-2'), new Date(0), new Date(0));
  mkdirSync(join(cache, 'y.tmp-3-4')); // a build under way: kept
  t.same(
    listEntries(cache).map((e) => e.dir.split('/').pop()),
    ['in-use-but-oldest', 'old', 'middle', 'new'],
    'least recently used first',
  );
  const { removed, keptBytes } = pruneCache(cache, 2500, [inUse]);
  t.same(
    removed.map((e) => e.dir.split('/').pop()),
    ['old', 'middle'],
  );
  t.equal(keptBytes, 2000, 'two entries of 1000 bytes (and empty last-used markers) remain');
  t.same(readdirSync(cache).sort(), ['in-use-but-oldest', 'new', 'y.tmp-3-4']);
  t.same(
    pruneCache(cache, 0, [inUse]).removed.map((e) => e.dir.split('/').pop()),
    ['new'],
    'bound 0: all but the one in use',
  );
});

t.test('the engine marks its entry used and evicts others beyond --cache-max-mb at start', async (t) => {
  const cache = freshCacheDir();
  const stale = entry(cache, 'another-checkpoint', 4096, 3600);
  const engine = await loadFixtureEngine({ cacheDir: cache, graphCacheMaxBytes: 1 });
  t.teardown(() => engine.close());
  t.notOk(existsSync(stale), 'the stale entry was evicted');
  const left = listEntries(cache);
  t.equal(left.length, 1, 'the entry being served stays although it is over the bound on its own');
  t.ok(Date.now() - left[0].lastUsedMs < 60_000, 'and is marked as just used');
});

t.test('npm run cache:prune', async (t) => {
  const cache = freshCacheDir();
  entry(cache, 'a', 3 << 20, 100);
  entry(cache, 'b', 3 << 20, 50);
  const run = (args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'tools/cache-prune.ts', '--cache-dir', cache, ...args], {
      encoding: 'utf8',
      env: { ...childEnv(), CACHE_MAX_MB: '' },
    });
  let out = run(['--cache-max-mb', '4']);
  t.equal(out.status, 0, out.stderr);
  t.match(out.stdout, /removed .*\/a \(3\.0 MiB/);
  t.match(out.stdout, /1 of 2 entries kept/);
  out = run(['--all']);
  t.match(out.stdout, /0 of 1 entries kept/);
  t.same(readdirSync(cache), []);
});
