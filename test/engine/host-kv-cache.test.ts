/** HostKvCache: capacity and rows follow what is cached; re-layouts, moves and writes keep every cached value. */
import t, { type Test } from 'tap';
import { CAPACITY_QUANTUM, HostKvCache } from '../../src/engine/model/host-kv-cache.js';
import type { ModelSpec } from '../../src/engine/model/hf-config.js';

const spec = { numLayers: 2, numKvHeads: 2, headDim: 4 } as ModelSpec;
const KVD = spec.numKvHeads * spec.headDim;

/** A value that names its layer, row, position, head and dimension, so a misplaced copy shows. */
const code = (layer: number, row: number, pos: number, i: number, kind: 0 | 1) => kind * 1e7 + layer * 1e6 + row * 1e4 + pos * 10 + i / 10;

/** Writes `count` positions of `row` from `from` on, through the cache's write path (one flat step). */
function fill(cache: HostKvCache, row: number, from: number, count: number): void {
  for (let l = 0; l < spec.numLayers; l++) {
    const keys = new Float32Array(count * KVD);
    const values = new Float32Array(count * KVD);
    for (let p = 0; p < count; p++)
      for (let i = 0; i < KVD; i++) {
        keys[p * KVD + i] = code(l, row, from + p, i, 0);
        values[p * KVD + i] = code(l, row, from + p, i, 1);
      }
    cache.write(
      l,
      keys,
      values,
      Int32Array.from({ length: count }, () => row),
      Int32Array.from({ length: count }, (_, p) => from + p),
    );
  }
  cache.setLength(row, from + count);
}

/** Reads a row back from the graph-input views and checks every position against what was written for `asRow`. */
function check(t: Test, cache: HostKvCache, row: number, length: number, asRow = row): void {
  const C = cache.capacity;
  let bad = 0;
  for (let l = 0; l < spec.numLayers; l++) {
    const { keys, values } = cache.view(l, row, 1);
    for (let h = 0; h < spec.numKvHeads; h++)
      for (let d = 0; d < spec.headDim; d++)
        for (let p = 0; p < length; p++) {
          const i = h * spec.headDim + d;
          if (keys[(h * spec.headDim + d) * C + p] !== Math.fround(code(l, asRow, p, i, 0))) bad++;
          if (values[(h * C + p) * spec.headDim + d] !== Math.fround(code(l, asRow, p, i, 1))) bad++;
        }
  }
  t.equal(bad, 0, `row ${row}: ${length} positions as written for row ${asRow}`);
}

t.test('capacity follows the longest row, not the configured maximum', async (t) => {
  const cache = new HostKvCache(spec, { maxRows: 8, maxSequenceLength: 16384, budgetBytes: 0 });
  cache.reserve(1, 10);
  t.equal(cache.capacity, CAPACITY_QUANTUM);
  t.equal(cache.rows, 1);
  t.equal(cache.bytes, CAPACITY_QUANTUM * HostKvCache.bytesPerToken(spec));
  fill(cache, 0, 0, 10);
  cache.reserve(3, 100);
  t.ok(cache.capacity >= 100 && cache.capacity < 200, `grew to ${cache.capacity}`);
  t.ok(cache.rows >= 3 && cache.rows <= 8);
  check(t, cache, 0, 10);
});

t.test('growth, moves and shrinking keep every cached value', async (t) => {
  const cache = new HostKvCache(spec, { maxRows: 8, maxSequenceLength: 4096, budgetBytes: 0 });
  cache.reserve(2, 40);
  fill(cache, 0, 0, 40);
  fill(cache, 1, 0, 7);
  cache.reserve(4, 300); // more rows and capacity: one re-layout
  fill(cache, 2, 0, 300);
  fill(cache, 3, 0, 5);
  fill(cache, 1, 7, 3); // a decode-like append
  check(t, cache, 0, 40);
  check(t, cache, 1, 10);
  check(t, cache, 2, 300);
  check(t, cache, 3, 5);
  // Row 2 (the long one) finishes: row 3 moves into its place, row 3 is free.
  cache.move(3, 2, 5);
  cache.freeFrom(3);
  const before = cache.capacity;
  cache.reserve(3, 41);
  t.ok(cache.capacity < before, `capacity shrank from ${before} to ${cache.capacity} once the long row left`);
  t.ok(cache.capacity >= 41);
  check(t, cache, 0, 40);
  check(t, cache, 1, 10);
  check(t, cache, 2, 5, 3);
  t.ok(cache.relayouts >= 3);
});

t.test('rows shrink when most are free', async (t) => {
  const cache = new HostKvCache(spec, { maxRows: 64, maxSequenceLength: 256, budgetBytes: 0 });
  cache.reserve(32, 16);
  t.equal(cache.rows, 32);
  fill(cache, 0, 0, 16);
  cache.freeFrom(1);
  cache.reserve(1, 17);
  t.ok(cache.rows <= 2, `rows ${cache.rows}`);
  check(t, cache, 0, 16);
});

t.test('the budget bounds what is allocated, and a request beyond it throws', async (t) => {
  const perToken = HostKvCache.bytesPerToken(spec);
  const cache = new HostKvCache(spec, { maxRows: 8, maxSequenceLength: 4096, budgetBytes: 4 * 256 * perToken });
  cache.reserve(4, 256);
  t.ok(cache.bytes <= 4 * 256 * perToken);
  cache.freeFrom(0);
  t.throws(() => cache.reserve(5, 256), /exceeds its budget/);
});
