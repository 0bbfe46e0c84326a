/**
 * AdmissionPolicy (src/engine/admission-policy.ts): who joins the batch under its row, token and KV-budget
 * bounds, in order, later sequences going ahead of one that does not fit; the slot is asked for only when a
 * sequence fits; a sequence that could never fit alone is refused at submission.
 */
import t from 'tap';
import { AdmissionPolicy, claimOf, type Claimant } from '../../src/engine/admission-policy.js';
import { EngineError } from '../../src/engine/errors.js';

interface Seq extends Claimant {
  name: string;
}
const seq = (name: string, prompt: number, maxTokens: number): Seq => ({
  name,
  promptIds: Array.from({ length: prompt }, (_, i) => i),
  request: { maxTokens },
});
const names = (xs: Array<{ seq: Seq }>) => xs.map((x) => x.seq.name);
const anySlot = () => 1;

t.test('claimOf: prompt plus max_tokens', async (t) => {
  t.equal(claimOf(seq('a', 10, 6)), 16);
});

t.test('admits in order up to maxBatch rows, counting the rows already running', async (t) => {
  const policy = new AdmissionPolicy({ maxBatch: 3, maxBatchTokens: 1e9, kvBudgetBytes: 0 }, 4);
  const waiting = ['a', 'b', 'c', 'd'].map((n) => seq(n, 4, 4));
  t.same(names(policy.admit(waiting, [], anySlot).admitted), ['a', 'b', 'c']);
  t.same(names(policy.admit(waiting, [seq('r', 4, 4)], anySlot).admitted), ['a', 'b']);
  t.same(policy.admit(waiting, [seq('r', 1, 1), seq('s', 1, 1), seq('u', 1, 1)], anySlot).admitted, [], 'a full batch admits none');
});

t.test('the token bound: one that does not fit waits, a later smaller one goes ahead', async (t) => {
  const policy = new AdmissionPolicy({ maxBatch: 8, maxBatchTokens: 100, kvBudgetBytes: 0 }, 4);
  const running = [seq('r', 30, 10)]; // claims 40
  const waiting = [seq('big', 50, 20), seq('small', 40, 10), seq('tiny', 5, 6)];
  t.same(names(policy.admit(waiting, running, anySlot).admitted), ['small'], '40 + 70 > 100 waits; 40 + 50 fits; then 90 + 11 > 100');
  t.same(names(policy.admit([seq('huge', 500, 500)], [], anySlot).admitted), ['huge'], 'the first into an empty batch is admitted whatever its claim');
});

t.test('the KV budget: rows x the longest claim rounded up to 32 positions', async (t) => {
  const bytesPerToken = 1000;
  const policy = new AdmissionPolicy({ maxBatch: 8, maxBatchTokens: 1e9, kvBudgetBytes: 3 * 64 * bytesPerToken }, bytesPerToken);
  t.equal(policy.kvBytes(2, 33), 2 * 64 * bytesPerToken);
  const running = [seq('r', 40, 10)]; // 50 -> 64 positions
  t.same(names(policy.admit([seq('a', 10, 10), seq('b', 60, 10), seq('c', 10, 10), seq('d', 1, 1)], running, anySlot).admitted), ['a', 'c']);
  // a: 2 x 64 fits; b: 3 x 96 > 3 x 64 waits; c: 3 x 64 fits; d: 4 rows x 64 > budget
});

t.test('the slot: asked only for a sequence that fits; null waits, a throw fails that sequence only', async (t) => {
  const policy = new AdmissionPolicy({ maxBatch: 8, maxBatchTokens: 30, kvBudgetBytes: 0 }, 4);
  const asked: string[] = [];
  const broken = new Error('adapter failed to load');
  const waiting = [seq('first', 10, 0), seq('loading', 5, 0), seq('errored', 5, 0), seq('toolong', 30, 0), seq('ok', 5, 0)];
  const result = policy.admit(waiting, [], (s) => {
    asked.push(s.name);
    if (s.name === 'loading') return null;
    if (s.name === 'errored') throw broken;
    return asked.length;
  });
  t.same(asked, ['first', 'loading', 'errored', 'ok'], 'toolong (10 + 30 > 30) was never asked for a slot');
  t.same(
    result.admitted.map((a) => [a.seq.name, a.slot]),
    [
      ['first', 1],
      ['ok', 4],
    ],
  );
  t.same(
    result.failed.map((f) => [f.seq.name, f.error]),
    [['errored', broken]],
  );
});

t.test('refuseIfNeverFits: kv_budget_exceeded with the sizes, only with a budget', async (t) => {
  const MiB = 2 ** 20;
  const policy = new AdmissionPolicy({ maxBatch: 8, maxBatchTokens: 1e9, kvBudgetBytes: 2 * MiB }, 1024);
  t.doesNotThrow(() => policy.refuseIfNeverFits(seq('fits', 1000, 1000)), '2,016 positions x 1 KiB fit 2 MiB');
  let refused: unknown = null;
  try {
    policy.refuseIfNeverFits(seq('over', 2000, 100));
  } catch (e) {
    refused = e;
  }
  t.ok(refused instanceof EngineError && refused.code === 'kv_budget_exceeded', 'kv_budget_exceeded');
  t.match((refused as Error).message, /2000 prompt tokens \+ max_tokens 100 need 3 MiB .* budget of 2 MiB/, 'the sizes in the message');
  const unbounded = new AdmissionPolicy({ maxBatch: 8, maxBatchTokens: 1e9, kvBudgetBytes: 0 }, 1024);
  t.doesNotThrow(() => unbounded.refuseIfNeverFits(seq('any', 1e6, 1e6)));
});

t.test('kvUsage: the share of the budget the running rows hold, or rows over max batch without a budget', async (t) => {
  const budgeted = new AdmissionPolicy({ maxBatch: 8, maxBatchTokens: 1e9, kvBudgetBytes: 4 * 64 * 10 }, 10);
  t.equal(budgeted.kvUsage([seq('a', 40, 10), seq('b', 1, 1)]), 0.5, '2 rows x 64 positions of 4 x 64');
  t.equal(budgeted.kvUsage([seq('a', 400, 10)]), 1, 'capped at 1');
  t.equal(budgeted.kvUsage([]), 0);
  const unbounded = new AdmissionPolicy({ maxBatch: 8, maxBatchTokens: 1e9, kvBudgetBytes: 0 }, 10);
  t.equal(unbounded.kvUsage([seq('a', 1, 1), seq('b', 1, 1)]), 0.25);
});
