/**
 * The KV cache of the host path, in host memory, sized by the tokens in flight rather than by max-batch x
 * max-sequence-length. Per layer one keys array [rows, kv_heads, head_dim, capacity] (transposed, so the
 * graph's scores are a plain MatMul) and one values array [rows, kv_heads, capacity, head_dim]. Rows 0..n-1
 * are the scheduler's rows; any prefix of rows is a valid graph input without a copy.
 *
 * The capacity follows the longest row: it grows (by at least a quarter, so growth is amortized) when a step
 * needs more and shrinks when the longest row is well under it, so a long configured context costs nothing
 * until a request uses it. The row count grows and shrinks the same way. Either change re-lays the arrays
 * out (one copy of what is cached), which happens a handful of times per long request, not per step.
 */
import type { ModelSpec } from './hf-config.js';

/** Capacities are multiples of this many positions. */
export const CAPACITY_QUANTUM = 32;

const roundUp = (n: number, q: number) => Math.ceil(n / q) * q;

export interface KvCacheLimits {
  maxRows: number;
  maxSequenceLength: number;
  /** Bytes the arrays may hold in all; 0 = unbounded. */
  budgetBytes: number;
}

export class HostKvCache {
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private rowsAllocated = 0;
  private capacityValue = 0;
  /** Tokens cached per row (rows beyond the live count hold nothing the caller needs). */
  private readonly lengths: number[] = [];
  /** Re-layouts so far (growth and shrinking), for stats and tests. */
  relayouts = 0;

  constructor(
    private readonly spec: ModelSpec,
    private readonly limits: KvCacheLimits,
  ) {}

  /** Bytes one cached token takes over all layers, keys and values. */
  static bytesPerToken(spec: ModelSpec): number {
    return spec.numLayers * 2 * spec.numKvHeads * spec.headDim * 4;
  }

  get capacity(): number {
    return this.capacityValue;
  }

  get rows(): number {
    return this.rowsAllocated;
  }

  /** Bytes allocated now. */
  get bytes(): number {
    return this.rowsAllocated * this.capacityValue * HostKvCache.bytesPerToken(this.spec);
  }

  private get rowStride(): number {
    return this.spec.numKvHeads * this.spec.headDim * this.capacityValue;
  }

  /** Makes room for `rows` rows of at least `length` positions before a step. */
  reserve(rows: number, length: number): void {
    const live = Math.max(rows, this.liveRows());
    const longest = Math.max(length, ...this.lengths.slice(0, live));
    let capacity = this.capacityValue;
    if (longest > capacity) capacity = Math.max(longest, Math.ceil(capacity * 1.25));
    else if (longest <= capacity / 2 && capacity > CAPACITY_QUANTUM) capacity = Math.ceil(longest * 1.25);
    capacity = Math.min(roundUp(Math.max(capacity, 1), CAPACITY_QUANTUM), roundUp(this.limits.maxSequenceLength, CAPACITY_QUANTUM));
    let rowsAllocated = this.rowsAllocated;
    if (live > rowsAllocated) rowsAllocated = Math.min(this.limits.maxRows, Math.max(live, rowsAllocated * 2));
    else if (live <= rowsAllocated / 4) rowsAllocated = Math.max(live * 2, 1);
    const budget = this.limits.budgetBytes;
    if (budget > 0) {
      const perToken = HostKvCache.bytesPerToken(this.spec);
      // Keep within the budget: fewer spare rows first, then a tighter capacity.
      rowsAllocated = Math.max(live, Math.min(rowsAllocated, Math.floor(budget / (capacity * perToken))));
      if (rowsAllocated * capacity * perToken > budget) {
        capacity = Math.max(roundUp(longest, CAPACITY_QUANTUM), Math.floor(budget / (rowsAllocated * perToken) / CAPACITY_QUANTUM) * CAPACITY_QUANTUM);
      }
      if (rowsAllocated * capacity * perToken > budget) {
        throw new Error(`KV cache of ${live} rows x ${longest} positions exceeds its budget of ${budget} bytes`);
      }
    }
    if (capacity !== this.capacityValue || rowsAllocated !== this.rowsAllocated) this.relayout(rowsAllocated, capacity, live);
  }

  private liveRows(): number {
    let n = this.lengths.length;
    while (n > 0 && this.lengths[n - 1] === 0) n--;
    return n;
  }

  private relayout(rowsAllocated: number, capacity: number, live: number): void {
    const { numKvHeads: KV, headDim: D, numLayers: L } = this.spec;
    const oldCapacity = this.capacityValue;
    const copyRows = Math.min(live, this.rowsAllocated, rowsAllocated);
    const keep = Math.min(oldCapacity, capacity);
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    for (let l = 0; l < L; l++) {
      const k = new Float32Array(rowsAllocated * KV * D * capacity);
      const v = new Float32Array(rowsAllocated * KV * capacity * D);
      for (let r = 0; r < copyRows; r++) {
        const n = Math.min(this.lengths[r] ?? 0, keep);
        if (n === 0) continue;
        for (let h = 0; h < KV; h++) {
          const oldHead = (r * KV + h) * D;
          for (let d = 0; d < D; d++) {
            const from = (oldHead + d) * oldCapacity;
            k.set(this.keys[l].subarray(from, from + n), (oldHead + d) * capacity);
          }
          v.set(this.values[l].subarray((r * KV + h) * oldCapacity * D, ((r * KV + h) * oldCapacity + n) * D), (r * KV + h) * capacity * D);
        }
      }
      keys.push(k);
      values.push(v);
    }
    this.keys = keys;
    this.values = values;
    this.rowsAllocated = rowsAllocated;
    this.capacityValue = capacity;
    this.lengths.length = Math.min(this.lengths.length, rowsAllocated);
    this.relayouts++;
  }

  /** Rows [first, first+count) of a layer's keys, [count, kv, D, capacity], and values, [count, kv, capacity, D]: views, no copy. */
  view(layer: number, first: number, count: number): { keys: Float32Array; values: Float32Array } {
    const stride = this.rowStride;
    return {
      keys: this.keys[layer].subarray(first * stride, (first + count) * stride),
      values: this.values[layer].subarray(first * stride, (first + count) * stride),
    };
  }

  /**
   * Writes a step's new keys and values of one layer: `keys`/`values` are [tokens, kv*D] in the step's flat
   * order; token i goes to row rows[i] at position positions[i].
   */
  write(layer: number, keys: Float32Array, values: Float32Array, rows: Int32Array, positions: Int32Array): void {
    const { numKvHeads: KV, headDim: D } = this.spec;
    const C = this.capacityValue;
    const K = this.keys[layer];
    const V = this.values[layer];
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      const p = positions[i];
      for (let h = 0; h < KV; h++) {
        const src = (i * KV + h) * D;
        const head = (r * KV + h) * D;
        for (let d = 0; d < D; d++) K[(head + d) * C + p] = keys[src + d];
        V.set(values.subarray(src, src + D), ((r * KV + h) * C + p) * D);
      }
    }
  }

  /** After a step: row `row` now holds `length` tokens. */
  setLength(row: number, length: number): void {
    while (this.lengths.length <= row) this.lengths.push(0);
    this.lengths[row] = length;
  }

  /** Copies a row's first `length` positions into another row (compaction when a row frees up). */
  move(from: number, to: number, length: number): void {
    if (from === to) return;
    const { numKvHeads: KV, headDim: D } = this.spec;
    const C = this.capacityValue;
    for (let l = 0; l < this.keys.length; l++) {
      const K = this.keys[l];
      const V = this.values[l];
      for (let h = 0; h < KV; h++) {
        for (let d = 0; d < D; d++) K.copyWithin(((to * KV + h) * D + d) * C, ((from * KV + h) * D + d) * C, ((from * KV + h) * D + d) * C + length);
        V.copyWithin((to * KV + h) * C * D, (from * KV + h) * C * D, ((from * KV + h) * C + length) * D);
      }
    }
    this.setLength(to, length);
  }

  /** Rows from `count` on are free. */
  freeFrom(count: number): void {
    if (this.lengths.length > count) this.lengths.length = count;
  }
}
