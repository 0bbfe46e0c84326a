/**
 * Who may join the running batch, under its bounds: rows (`maxBatch`), KV positions claimed (the sum of prompt +
 * max_tokens, `maxBatchTokens`) and the KV-cache memory budget (rows x the longest claim, `kvBudgetBytes`), plus
 * a device slot for the sequence's adapter. Waiting sequences are considered in order; one that does not fit now
 * keeps waiting and later ones may go ahead of it. The first sequence into an empty batch is admitted whatever
 * its claim (one that could never fit alone was refused at submission).
 */
import { EngineError } from './errors.js';
import { CAPACITY_QUANTUM } from './model/host-kv-cache.js';

export interface AdmissionLimits {
  maxBatch: number;
  /** Bound on the sum of (prompt + max_tokens) over running sequences. */
  maxBatchTokens: number;
  /** Bytes the KV cache may take for the sequences in flight; 0 = unbounded. */
  kvBudgetBytes: number;
}

/** What admission reads of a sequence. */
export interface Claimant {
  promptIds: readonly number[];
  request: { maxTokens: number };
}

/** The KV positions a sequence may come to hold: its prompt and every token it may generate. */
export function claimOf(seq: Claimant): number {
  return seq.promptIds.length + seq.request.maxTokens;
}

export interface Admissions<S> {
  /** Admitted in order, with the device slot acquired for each. */
  admitted: Array<{ seq: S; slot: number }>;
  /** Sequences whose slot could not be acquired for good (e.g. their adapter failed to load). */
  failed: Array<{ seq: S; error: unknown }>;
}

export class AdmissionPolicy {
  constructor(
    private readonly limits: AdmissionLimits,
    /** Bytes one cached token takes (all layers, keys and values). */
    private readonly kvBytesPerToken: number,
  ) {}

  /** KV bytes `rows` rows of up to `length` positions take (the host cache's capacities are rounded up). */
  kvBytes(rows: number, length: number): number {
    return rows * Math.ceil(length / CAPACITY_QUANTUM) * CAPACITY_QUANTUM * this.kvBytesPerToken;
  }

  /** Throws kv_budget_exceeded for a sequence that could never fit, even alone. */
  refuseIfNeverFits(seq: Claimant): void {
    const budget = this.limits.kvBudgetBytes;
    const needed = this.kvBytes(1, claimOf(seq));
    if (budget > 0 && needed > budget) {
      throw new EngineError(
        'kv_budget_exceeded',
        `${seq.promptIds.length} prompt tokens + max_tokens ${seq.request.maxTokens} need ${Math.ceil(needed / 2 ** 20)} MiB of KV cache, more than the server's KV-cache budget of ${Math.floor(budget / 2 ** 20)} MiB (--kv-cache-mb).`,
      );
    }
  }

  /** The share of the KV budget the running sequences hold (rows over max batch without a budget). */
  kvUsage(running: readonly Claimant[]): number {
    const budget = this.limits.kvBudgetBytes;
    if (budget <= 0) return running.length / this.limits.maxBatch;
    const longest = running.reduce((n, s) => Math.max(n, claimOf(s)), 0);
    return Math.min(1, this.kvBytes(running.length, longest) / budget);
  }

  /**
   * Which of `waiting` join `running` now, in order. `acquireSlot` is asked only for a sequence that fits the
   * bounds; it answers the device slot, null when the adapter is not resident yet (the sequence keeps waiting),
   * or throws when it never will be.
   */
  admit<S extends Claimant>(waiting: readonly S[], running: readonly Claimant[], acquireSlot: (seq: S) => number | null): Admissions<S> {
    const result: Admissions<S> = { admitted: [], failed: [] };
    let rows = running.length;
    let claimed = running.reduce((n, s) => n + claimOf(s), 0);
    let longest = running.reduce((n, s) => Math.max(n, claimOf(s)), 0);
    for (const seq of waiting) {
      if (rows >= this.limits.maxBatch) break;
      const claim = claimOf(seq);
      if (rows > 0 && claimed + claim > this.limits.maxBatchTokens) continue;
      const kvAfter = this.kvBytes(rows + 1, Math.max(longest, claim));
      if (rows > 0 && this.limits.kvBudgetBytes > 0 && kvAfter > this.limits.kvBudgetBytes) continue;
      let slot: number | null;
      try {
        slot = acquireSlot(seq);
      } catch (error) {
        result.failed.push({ seq, error });
        continue;
      }
      if (slot === null) continue;
      result.admitted.push({ seq, slot });
      rows++;
      claimed += claim;
      longest = Math.max(longest, claim);
    }
    return result;
  }
}
