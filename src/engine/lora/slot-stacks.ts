/**
 * The LoRA weights the model reads, every resident adapter side by side. Per layer and projection:
 *   A [slots, in, rank] and B [slots, rank, out]
 * where index s holds slot s; slot 0, the bare base model, stays zero. The graph reads them one of two ways
 * (graph-builder.ts): per row (each row's A and B gathered by its slot: least arithmetic, best on a CPU) or
 * masked (((x A') * mask) B over all slots, A' = A laid out as [in, slots*rank]: each adapter's weights read
 * once per step whatever the batch, best on a GPU; see maskedA). Ranks below the stack's are zero-padded; the
 * rank follows the largest resident adapter (the graph's rank is dynamic), so small adapters do not pay for a
 * large configured maximum. PEFT's scale is already folded into B.
 */
import type { ModelSpec } from '../model/hf-config.js';
import { PROJECTIONS, projectionShape, type Projection } from '../model/graph-builder.js';
import { moduleKey, type LoadedAdapter } from './peft-adapter.js';

interface Stack {
  /** [layers, slots, in, rank] */
  a: Float32Array;
  /** [layers, slots, rank, out] */
  b: Float32Array;
  inSize: number;
  outSize: number;
}

/** One layer's matrices of one projection, as views into the stacks. */
export interface LayerWeights {
  a: Float32Array;
  aDims: [number, number, number];
  b: Float32Array;
  bDims: [number, number, number];
}

export class SlotStacks {
  private stacks = new Map<Projection, Stack>();
  /** The projections each written slot's adapter changes (in any layer). */
  private readonly slotTargets = new Map<number, ReadonlySet<Projection>>();
  private rankValue = 1;
  private readonly listeners: Array<(slot: number | 'all') => void> = [];

  constructor(
    private readonly spec: ModelSpec,
    readonly slotCount: number,
  ) {
    if (slotCount < 2) throw new Error('slotCount must be at least 2 (slot 0 is the bare base model)');
    this.allocate(1);
  }

  /** Called after a slot's content changes, or with 'all' after the layout (rank) changes. */
  onChange(listener: (slot: number | 'all') => void): void {
    this.listeners.push(listener);
  }

  private changed(slot: number | 'all'): void {
    for (const listener of this.listeners) listener(slot);
  }

  get rank(): number {
    return this.rankValue;
  }

  /** slots * rank: the columns of A (rows of B) in the masked layout. */
  get width(): number {
    return this.slotCount * this.rankValue;
  }

  /** A projection's stacks over all layers: A [layers*slots, in, rank], B [layers*slots, rank, out]. */
  stack(p: Projection): { a: Float32Array; aDims: [number, number, number]; b: Float32Array; bDims: [number, number, number] } {
    const s = this.stacks.get(p)!;
    const entries = this.spec.numLayers * this.slotCount;
    return { a: s.a, aDims: [entries, s.inSize, this.rankValue], b: s.b, bDims: [entries, this.rankValue, s.outSize] };
  }

  layer(layer: number, p: Projection): LayerWeights {
    const s = this.stacks.get(p)!;
    const S = this.slotCount;
    const R = this.rankValue;
    return {
      a: s.a.subarray(layer * S * s.inSize * R, (layer + 1) * S * s.inSize * R),
      aDims: [S, s.inSize, R],
      b: s.b.subarray(layer * S * R * s.outSize, (layer + 1) * S * R * s.outSize),
      bDims: [S, R, s.outSize],
    };
  }

  /** One layer's A as [in, slots*rank] (a transposed copy), the masked formulation's layout. */
  maskedA(layer: number, p: Projection): Float32Array {
    const { a, aDims } = this.layer(layer, p);
    const [S, inSize, R] = aDims;
    const out = new Float32Array(a.length);
    for (let s = 0; s < S; s++) for (let i = 0; i < inSize; i++) out.set(a.subarray((s * inSize + i) * R, (s * inSize + i + 1) * R), (i * S + s) * R);
    return out;
  }

  /** [rows, slots*rank]: 1 over the columns of each row's slot, 0 elsewhere (slot 0: all 0). */
  rowMask(slots: readonly number[]): Float32Array {
    const W = this.width;
    const R = this.rankValue;
    const mask = new Float32Array(slots.length * W);
    slots.forEach((slot, row) => {
      if (slot > 0) mask.fill(1, row * W + slot * R, row * W + (slot + 1) * R);
    });
    return mask;
  }

  /** A slot's block of one layer: A [in, rank] and B [rank, out] (views). */
  slotBlock(slot: number, layer: number, p: Projection): { a: Float32Array; b: Float32Array } {
    const { a, b, aDims, bDims } = this.layer(layer, p);
    const aSize = aDims[1] * aDims[2];
    const bSize = bDims[1] * bDims[2];
    return { a: a.subarray(slot * aSize, (slot + 1) * aSize), b: b.subarray(slot * bSize, (slot + 1) * bSize) };
  }

  /** Bytes the stacks hold. */
  get bytes(): number {
    let n = 0;
    for (const s of this.stacks.values()) n += (s.a.length + s.b.length) * 4;
    return n;
  }

  private allocate(rank: number): void {
    const old = this.stacks;
    const oldRank = this.rankValue;
    const kept = Math.min(oldRank, rank);
    const blocks = this.spec.numLayers * this.slotCount;
    this.stacks = new Map();
    for (const p of PROJECTIONS) {
      const [inSize, outSize] = projectionShape(this.spec, p);
      const stack: Stack = { a: new Float32Array(blocks * inSize * rank), b: new Float32Array(blocks * rank * outSize), inSize, outSize };
      const previous = old.get(p);
      if (previous) {
        for (let e = 0; e < blocks; e++) {
          for (let i = 0; i < inSize; i++)
            stack.a.set(previous.a.subarray((e * inSize + i) * oldRank, (e * inSize + i) * oldRank + kept), (e * inSize + i) * rank);
          stack.b.set(previous.b.subarray(e * oldRank * outSize, (e * oldRank + kept) * outSize), e * rank * outSize);
        }
      }
      this.stacks.set(p, stack);
    }
    this.rankValue = rank;
    this.changed('all');
  }

  /** Writes an adapter into a slot (1..slotCount-1), replacing whatever was there. */
  write(slot: number, adapter: LoadedAdapter): void {
    if (slot < 1 || slot >= this.slotCount) throw new Error(`slot ${slot} out of range 1..${this.slotCount - 1}`);
    if (adapter.rank > this.rankValue) this.allocate(adapter.rank);
    const R = this.rankValue;
    const targets = new Set<Projection>();
    for (const p of PROJECTIONS) {
      for (let layer = 0; layer < this.spec.numLayers; layer++) {
        const block = this.slotBlock(slot, layer, p);
        block.a.fill(0);
        block.b.fill(0);
        const m = adapter.modules.get(moduleKey(layer, p));
        if (!m) continue;
        targets.add(p);
        const inSize = block.a.length / R;
        for (let i = 0; i < inSize; i++) block.a.set(m.a.subarray(i * m.rank, (i + 1) * m.rank), i * R);
        block.b.set(m.b);
      }
    }
    this.slotTargets.set(slot, targets);
    this.changed(slot);
  }

  /** The projections the adapter in `slot` changes (none for an empty slot). */
  targets(slot: number): ReadonlySet<Projection> {
    return this.slotTargets.get(slot) ?? new Set();
  }

  /** Zeroes a slot so that nothing of the evicted adapter stays readable. */
  clear(slot: number): void {
    for (const p of PROJECTIONS) {
      for (let layer = 0; layer < this.spec.numLayers; layer++) {
        const block = this.slotBlock(slot, layer, p);
        block.a.fill(0);
        block.b.fill(0);
      }
    }
    this.slotTargets.delete(slot);
    this.changed(slot);
  }

  /**
   * Shrinks (or grows) the rank dimension to `rank`, e.g. after the only large adapter left, so the memory
   * and the per-step work follow the largest resident adapter. Callers guarantee no resident adapter is larger.
   */
  fitRank(rank: number): void {
    const target = Math.max(1, rank);
    if (target !== this.rankValue) this.allocate(target);
  }
}
