/**
 * KvRowAllocator (src/engine/kv-row-allocator.ts): rows stay contiguous, decoders first, and every move it asks
 * of the runner keeps each sequence's cached positions in the row the sequence now holds. The runner here is a
 * table of which sequence's positions each row holds, changed only by the moves the allocator reports.
 */
import t, { type Test } from 'tap';
import { KvRowAllocator, type RowHolder } from '../../src/engine/kv-row-allocator.js';
import { seededRandom } from '../../src/engine/sampling.js';

interface Seq extends RowHolder {
  id: number;
}

function setup() {
  const cache: Array<number | undefined> = []; // row -> id of the sequence whose positions it holds
  const moves: Array<[number, number, number]> = [];
  const rows = new KvRowAllocator<Seq>((from, to, length) => {
    moves.push([from, to, length]);
    cache[to] = cache[from];
  });
  let nextId = 1;
  const admit = (): Seq => {
    const seq: Seq = { id: nextId++, row: -1, prefillDone: false, cached: 0 };
    rows.assign(seq);
    cache[seq.row] = seq.id;
    return seq;
  };
  return { rows, cache, moves, admit };
}

/** Rows 0..n-1 held, decoders before every row in prefill, each row's positions those of its sequence. */
function checkInvariants(t: Test, rows: KvRowAllocator<Seq>, cache: Array<number | undefined>, where: string): boolean {
  const seqs = rows.sequences;
  const contiguous = seqs.every((s, i) => s.row === i);
  const decodersFirst = seqs.every((s, i) => i === 0 || !s.prefillDone || seqs[i - 1].prefillDone);
  const positions = seqs.every((s) => cache[s.row] === s.id);
  const split = rows.decoders().length + rows.inPrefill().length === rows.count && rows.inPrefill().every((s) => !s.prefillDone);
  if (contiguous && decodersFirst && positions && split) return true;
  t.fail(`${where}: contiguous ${contiguous}, decoders first ${decodersFirst}, positions follow ${positions}, split ${split}`);
  return false;
}

t.test('assign gives the next row; decoders and rows in prefill split in row order', async (t) => {
  const { rows, admit } = setup();
  const [a, b, c] = [admit(), admit(), admit()];
  t.same([a.row, b.row, c.row], [0, 1, 2]);
  a.prefillDone = true;
  t.same(
    rows.decoders().map((s) => s.id),
    [a.id],
  );
  t.same(
    rows.inPrefill().map((s) => s.id),
    [b.id, c.id],
  );
  t.equal(rows.count, 3);
});

t.test('freeing a decoder in the middle: the last decoder fills the gap, the last row fills its place', async (t) => {
  const { rows, admit, moves, cache } = setup();
  const [d0, d1, d2, p0, p1] = [admit(), admit(), admit(), admit(), admit()];
  for (const d of [d0, d1, d2]) d.prefillDone = true;
  d2.cached = 7;
  p1.cached = 3;
  rows.free(d0);
  t.same(moves, [
    [2, 0, 7],
    [4, 2, 3],
  ]);
  t.same(
    rows.sequences.map((s) => s.id),
    [d2.id, d1.id, p1.id, p0.id],
  );
  t.equal(d0.row, -1);
  checkInvariants(t, rows, cache, 'after the free');
});

t.test('freeing a row in prefill moves only the last row into it; freeing the last row moves nothing', async (t) => {
  const { rows, admit, moves } = setup();
  const [d0, p0, p1, p2] = [admit(), admit(), admit(), admit()];
  d0.prefillDone = true;
  p2.cached = 5;
  rows.free(p0);
  t.same(moves, [[3, 1, 5]]);
  rows.free(p1);
  t.same(moves, [[3, 1, 5]], 'p1 held the last row');
  t.same(
    rows.sequences.map((s) => s.id),
    [d0.id, p2.id],
  );
});

t.test('held frees wait until released, so no row moves while a step is read by row', async (t) => {
  const { rows, admit, moves, cache } = setup();
  const [d0, d1, p0] = [admit(), admit(), admit()];
  d0.prefillDone = d1.prefillDone = true;
  rows.holdFrees();
  rows.free(d0);
  rows.free(p0);
  t.same(moves, [], 'nothing moved while held');
  t.same(
    rows.sequences.map((s) => s.row),
    [0, 1, 2],
  );
  rows.releaseHeldFrees();
  t.same(
    rows.sequences.map((s) => s.id),
    [d1.id],
  );
  checkInvariants(t, rows, cache, 'after release');
  rows.free(d1);
  t.equal(rows.count, 0, 'frees are immediate again after release');
  rows.free(d1);
  t.equal(rows.count, 0, 'freeing a sequence that holds no row does nothing');
});

t.test('random admissions, prompts finishing in row order and frees (some held) keep every invariant', async (t) => {
  const rng = seededRandom(16);
  let checks = 0;
  for (let round = 0; round < 200; round++) {
    const { rows, admit, cache } = setup();
    for (let op = 0; op < 60; op++) {
      const r = rng();
      if (r < 0.35 && rows.count < 12) admit();
      else if (r < 0.6) {
        // the first rows in prefill finish their prompt (as a step hands prompt tokens out in row order)
        const inPrefill = rows.inPrefill();
        const n = Math.floor(rng() * (inPrefill.length + 1));
        for (const s of inPrefill.slice(0, n)) s.prefillDone = true;
      } else if (rows.count) {
        const held = rng() < 0.5;
        if (held) rows.holdFrees();
        const victims = rows.sequences.filter(() => rng() < 0.3);
        for (const s of victims) {
          s.cached = Math.floor(rng() * 100);
          rows.free(s);
        }
        if (held) rows.releaseHeldFrees();
        if (victims.some((v) => v.row !== -1)) t.fail('a freed sequence still holds a row');
      }
      if (!checkInvariants(t, rows, cache, `round ${round}, op ${op}`)) return;
      checks++;
    }
  }
  t.equal(checks, 200 * 60, 'every state checked');
});
