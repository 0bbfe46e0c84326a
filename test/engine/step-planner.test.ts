/**
 * planStep (src/engine/step-planner.ts): every decoder's next token, then prompt chunks in row order up to the
 * step's prompt budget; logits only where they are wanted; the in-graph selection asked for only where a token
 * is chosen in this step.
 */
import t from 'tap';
import { planStep, type PlannableSequence } from '../../src/engine/step-planner.js';
import type { RowSampling } from '../../src/engine/model/batch-runner.js';

interface Seq extends PlannableSequence {
  name: string;
}
let rowCounter = 0;
const decoder = (name: string, nextToken: number, cached: number): Seq => ({
  name,
  row: rowCounter++,
  slot: 1,
  promptIds: [1, 2, 3],
  prefilled: 3,
  cached,
  nextToken,
  request: { maxTokens: 8 },
});
const prompt = (name: string, length: number, prefilled: number, extra: Partial<Seq> = {}): Seq => ({
  name,
  row: rowCounter++,
  slot: 2,
  promptIds: Array.from({ length }, (_, i) => 100 + i),
  prefilled,
  cached: prefilled,
  nextToken: null,
  request: { maxTokens: 8 },
  ...extra,
});

function recordingSelection() {
  const asked: string[] = [];
  const selection = (s: Seq): RowSampling => {
    asked.push(s.name);
    return { temperature: 0, topK: 0, topP: 1, uniform: 0 };
  };
  return { asked, selection };
}

t.test('decoders: one token each at their cached length, logits of that token, the selection', async (t) => {
  rowCounter = 0;
  const d = [decoder('d0', 11, 5), decoder('d1', 12, 9)];
  const { asked, selection } = recordingSelection();
  const { plan, decoders, prefills } = planStep(d, [], 512, selection);
  t.same(
    plan.decode.map((r) => [r.row, r.tokens, r.pastLength, r.slot, r.logitPositions]),
    [
      [0, [11], 5, 1, [0]],
      [1, [12], 9, 1, [0]],
    ],
  );
  t.ok(
    plan.decode.every((r) => r.sampling),
    'each decoder has its selection',
  );
  t.same(asked, ['d0', 'd1']);
  t.same(decoders, d);
  t.same(prefills, []);
  t.same(plan.prefill, []);
});

t.test('prompt chunks in row order until the budget is spent; a long prompt is chunked', async (t) => {
  rowCounter = 0;
  const a = prompt('a', 300, 0);
  const b = prompt('b', 400, 100); // 300 left
  const c = prompt('c', 50, 0);
  const { asked, selection } = recordingSelection();
  const { plan, prefills } = planStep([], [a, b, c], 512, selection);
  t.same(
    prefills.map((p) => [p.seq.name, p.start, p.chunk.length, p.chunk[0]]),
    [
      ['a', 0, 300, 100],
      ['b', 100, 212, 200],
    ],
    'a whole, b a 212-token chunk from position 100, c waits',
  );
  t.same(
    plan.prefill.map((r) => [r.row, r.pastLength, r.logitPositions]),
    [
      [0, 0, [299]],
      [1, 100, []],
    ],
    "the last chunk's last position has logits; a chunk that is not the last has none",
  );
  t.same(asked, ['a'], 'the selection is asked only for the prompt that ends in this step');
  t.notOk(plan.prefill[1].sampling);
});

t.test('prompt log-probabilities: logits at every position, no selection; max_tokens 0: no selection', async (t) => {
  rowCounter = 0;
  const scored = prompt('scored', 4, 0, { promptLogprobs: true });
  const none = prompt('none', 3, 0, { request: { maxTokens: 0 } });
  const { asked, selection } = recordingSelection();
  const { plan } = planStep([], [scored, none], 512, selection);
  t.same(
    plan.prefill.map((r) => r.logitPositions),
    [[0, 1, 2, 3], [2]],
  );
  t.same(asked, []);
});

t.test('decoders add to the step whatever the prompt budget; a budget of 0 runs no prompt', async (t) => {
  rowCounter = 0;
  const d = [decoder('d0', 7, 3)];
  const p = prompt('p', 10, 0);
  const { plan } = planStep(d, [p], 0, () => undefined);
  t.equal(plan.decode.length, 1);
  t.same(plan.prefill, []);
  t.notOk(plan.decode[0].sampling, 'undefined selection: logits back on the host');
});
