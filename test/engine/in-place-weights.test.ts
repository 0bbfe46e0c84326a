/**
 * A float32 graph reads F32 checkpoint tensors in place (a hard link to the safetensors file in the cache entry,
 * external data at the tensor's offset) instead of copying them; BF16 tensors are converted and copied, and the
 * build says so per dtype. The served numbers are checked against HF by reference.test.ts on the same path.
 */
import t from 'tap';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_MODEL, engineOptions, freshCacheDir, greedyRequest, reference } from '../helpers/engine.js';
import { Engine } from '../../src/engine/engine.js';
import { encodeSafetensors, readSafetensorsHeader, readTensorAsFloat32 } from '../../src/engine/model/safetensors.js';
import { listEntries } from '../../src/engine/model/graph-cache.js';

async function load(modelDir: string, cacheDir: string) {
  const logged: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const log = { info: (obj: object, msg?: string) => logged.push({ obj: obj as Record<string, unknown>, msg }), warn: () => {} };
  const engine = await Engine.load(engineOptions({ modelDir, cacheDir }), log);
  t.teardown(() => engine.close());
  const layout = logged.find((l) => l.msg?.startsWith('graph weights:'))?.obj;
  return { engine, layout };
}

/** A cache folder on the fixtures' file system (a hard link cannot cross file systems; /tmp may be another one). */
function cacheBesideFixtures(): string {
  const base = join(FIXTURE_MODEL, '..', '..', '..', '.cache');
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(join(base, 'in-place-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('F32 checkpoint: referenced in place through a hard link; the entry holds only what it computed', async (t) => {
  const cacheDir = cacheBesideFixtures();
  const { engine, layout } = await load(FIXTURE_MODEL, cacheDir);
  const checkpointBytes = statSync(join(FIXTURE_MODEL, 'model.safetensors')).size;
  const [entry] = readdirSync(cacheDir).map((name) => join(cacheDir, name));
  const link = statSync(join(entry, 'checkpoint-0.safetensors'));
  t.equal(link.ino, statSync(join(FIXTURE_MODEL, 'model.safetensors')).ino, 'a hard link to the checkpoint');
  t.ok(
    statSync(join(entry, 'model.onnx.data')).size < checkpointBytes / 4,
    `the data file holds the rotary tables only (${statSync(join(entry, 'model.onnx.data')).size} bytes)`,
  );
  t.ok((layout?.referenced as Record<string, number>).F32 > checkpointBytes * 0.9, 'every weight referenced in place');
  t.same(layout?.copied, {}, 'nothing copied');
  t.ok(listEntries(cacheDir)[0].bytes < checkpointBytes / 4, 'the cache bound counts the link as no extra space');
  const c = reference.cases[0];
  t.same((await engine.generate(greedyRequest(c))).tokenIds, c.greedy_token_ids, 'and serves the reference tokens');
});

t.test('BF16 checkpoint: converted to float32 and copied, reported as such', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bf16-'));
  cpSync(FIXTURE_MODEL, dir, { recursive: true });
  const header = readSafetensorsHeader(join(FIXTURE_MODEL, 'model.safetensors'));
  writeFileSync(
    join(dir, 'model.safetensors'),
    encodeSafetensors(
      [...header.tensors.values()].map((i) => ({ name: i.name, dtype: 'BF16' as const, shape: i.shape, data: readTensorAsFloat32(header, i.name) })),
    ),
  );
  const cacheDir = freshCacheDir();
  const { layout } = await load(dir, cacheDir);
  t.same(layout?.referenced, {});
  t.match(layout?.copied, { BF16: { why: 'BF16 is converted to float32' } });
  t.same(
    readdirSync(join(cacheDir, readdirSync(cacheDir)[0])).filter((f) => f.startsWith('checkpoint-')),
    [],
    'no link',
  );
});
