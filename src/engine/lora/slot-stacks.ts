/**
 * The LoRA weights the model reads, every resident adapter side by side. Per layer and projection:
 *   A [in, width] and B [width, out], width = (slots - 1) * rank,
 * where columns (s-1)*rank .. s*rank-1 of A and the same rows of B hold slot s (slot 0, the bare base model,
 * has none). A step computes ((x A) * mask) B, the mask keeping each row's own slot's columns: every row of a
 * batch gets its own adapter from two matrix products over weights read once per step, instead of copying
 * each row's A and B out of a stack (which costs rows x adapter size per step). Ranks below the stack's are
 * zero-padded; the rank follows the largest resident adapter (the graph's width is dynamic), so small adapters
 * do not pay for a large configured maximum. PEFT's scale is already folded into B.
 */
import type { ModelSpec } from '../model/hf-config.js';
import { PROJECTIONS, projectionShape, type Projection } from '../model/graph-builder.js';
import { moduleKey, type LoadedAdapter } from './peft-adapter.js';

interface Stack {
  /** [layers, in, width] */
  a: Float32Array;
  /** [layers, width, out] */
  b: Float32Array;
  inSize: number;
  outSize: number;
}

/** One layer's matrices of one projection, as views into the stacks. */
export interface LayerWeights {
  a: Float32Array;
  aDims: [number, number];
  b: Float32Array;
  bDims: [number, number];
}

export class SlotStacks {
  private stacks = new Map<Projection, Stack>();
  private rankValue = 1;
  private readonly listeners: Array<(slot: number | 'all') => void> = [];

  constructor(private readonly spec: ModelSpec, readonly slotCount: number) {
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

  /** Columns of A (rows of B): rank for each slot but the base. */
  get width(): number {
    return (this.slotCount - 1) * this.rankValue;
  }

  layer(layer: number, p: Projection): LayerWeights {
    const s = this.stacks.get(p)!;
    const W = this.width;
    return {
      a: s.a.subarray(layer * s.inSize * W, (layer + 1) * s.inSize * W),
      aDims: [s.inSize, W],
      b: s.b.subarray(layer * W * s.outSize, (layer + 1) * W * s.outSize),
      bDims: [W, s.outSize],
    };
  }

  /** [rows, width]: 1 over the columns of each row's slot, 0 elsewhere (slot 0: all 0). */
  rowMask(slots: readonly number[]): Float32Array {
    const W = this.width;
    const R = this.rankValue;
    const mask = new Float32Array(slots.length * W);
    slots.forEach((slot, row) => {
      if (slot > 0) mask.fill(1, row * W + (slot - 1) * R, row * W + slot * R);
    });
    return mask;
  }

  /** A slot's block of one layer: A columns as [in, rank] and B rows as [rank, out] (copies). */
  slotBlock(slot: number, layer: number, p: Projection): { a: Float32Array; b: Float32Array } {
    const { a, b, aDims } = this.layer(layer, p);
    const R = this.rankValue;
    const [inSize, W] = aDims;
    const blockA = new Float32Array(inSize * R);
    for (let i = 0; i < inSize; i++) blockA.set(a.subarray(i * W + (slot - 1) * R, i * W + slot * R), i * R);
    const outSize = b.length / W;
    return { a: blockA, b: b.slice((slot - 1) * R * outSize, slot * R * outSize) };
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
    const slots = this.slotCount - 1;
    const L = this.spec.numLayers;
    this.stacks = new Map();
    for (const p of PROJECTIONS) {
      const [inSize, outSize] = projectionShape(this.spec, p);
      const W = slots * rank;
      const oldW = slots * oldRank;
      const stack: Stack = { a: new Float32Array(L * inSize * W), b: new Float32Array(L * W * outSize), inSize, outSize };
      const previous = old.get(p);
      if (previous) {
        for (let l = 0; l < L; l++) {
          for (let s = 0; s < slots; s++) {
            for (let i = 0; i < inSize; i++) {
              const from = (l * inSize + i) * oldW + s * oldRank;
              stack.a.set(previous.a.subarray(from, from + kept), (l * inSize + i) * W + s * rank);
            }
            const from = (l * oldW + s * oldRank) * outSize;
            stack.b.set(previous.b.subarray(from, from + kept * outSize), (l * W + s * rank) * outSize);
          }
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
    this.fill(slot, adapter);
    this.changed(slot);
  }

  /** Zeroes a slot so that nothing of the evicted adapter stays readable. */
  clear(slot: number): void {
    this.fill(slot, null);
    this.changed(slot);
  }

  private fill(slot: number, adapter: LoadedAdapter | null): void {
    const R = this.rankValue;
    for (const p of PROJECTIONS) {
      for (let layer = 0; layer < this.spec.numLayers; layer++) {
        const { a, b, aDims, bDims } = this.layer(layer, p);
        const [inSize, W] = aDims;
        const outSize = bDims[1];
        const m = adapter?.modules.get(moduleKey(layer, p));
        for (let i = 0; i < inSize; i++) {
          const at = i * W + (slot - 1) * R;
          a.fill(0, at, at + R);
          if (m) a.set(m.a.subarray(i * m.rank, (i + 1) * m.rank), at);
        }
        const rows = b.subarray((slot - 1) * R * outSize, slot * R * outSize);
        rows.fill(0);
        if (m) rows.set(m.b);
      }
    }
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
