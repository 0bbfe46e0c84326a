/**
 * The LoRA tensors the model reads: per projection kind, A [layers*slots, in, rank] and
 * B [layers*slots, rank, out], where entry layer*slots+slot holds that slot's weights for that layer.
 * Slot 0 stays all zeros (the bare base model). Ranks smaller than the stack's are zero-padded; the stack's
 * rank grows to the largest resident adapter's (the graph's rank dimension is dynamic), so small adapters do
 * not pay for a large configured maximum.
 */
import type { ModelSpec } from '../model/hf-config.js';
import { PROJECTIONS, projectionShape, type Projection } from '../model/graph-builder.js';
import { moduleKey, type LoadedAdapter } from './peft-adapter.js';

interface Stack {
  a: Float32Array;
  b: Float32Array;
  inSize: number;
  outSize: number;
}

export class SlotStacks {
  private stacks = new Map<Projection, Stack>();
  private rankValue = 1;
  private readonly listeners: Array<(slot: number | 'all') => void> = [];

  constructor(private readonly spec: ModelSpec, readonly slotCount: number) {
    if (slotCount < 2) throw new Error('slotCount must be at least 2 (slot 0 is the bare base model)');
    this.allocate(1);
  }

  get rank(): number {
    return this.rankValue;
  }

  get entries(): number {
    return this.spec.numLayers * this.slotCount;
  }

  /** Called after a slot's content changes, or with 'all' after the layout (rank) changes. */
  onChange(listener: (slot: number | 'all') => void): void {
    this.listeners.push(listener);
  }

  private changed(slot: number | 'all'): void {
    for (const listener of this.listeners) listener(slot);
  }

  stack(p: Projection): Readonly<Stack> {
    return this.stacks.get(p)!;
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
    this.stacks = new Map();
    for (const p of PROJECTIONS) {
      const [inSize, outSize] = projectionShape(this.spec, p);
      const stack: Stack = { a: new Float32Array(this.entries * inSize * rank), b: new Float32Array(this.entries * rank * outSize), inSize, outSize };
      const previous = old.get(p);
      const kept = Math.min(oldRank, rank);
      if (previous) {
        for (let e = 0; e < this.entries; e++) {
          for (let i = 0; i < inSize; i++) stack.a.set(previous.a.subarray((e * inSize + i) * oldRank, (e * inSize + i) * oldRank + kept), (e * inSize + i) * rank);
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
    for (const p of PROJECTIONS) {
      const s = this.stacks.get(p)!;
      for (let layer = 0; layer < this.spec.numLayers; layer++) {
        const e = layer * this.slotCount + slot;
        const aEntry = s.a.subarray(e * s.inSize * R, (e + 1) * s.inSize * R);
        const bEntry = s.b.subarray(e * R * s.outSize, (e + 1) * R * s.outSize);
        aEntry.fill(0);
        bEntry.fill(0);
        const m = adapter.modules.get(moduleKey(layer, p));
        if (!m) continue;
        for (let i = 0; i < s.inSize; i++) aEntry.set(m.a.subarray(i * m.rank, (i + 1) * m.rank), i * R);
        bEntry.set(m.b);
      }
    }
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

  /** Zeroes a slot so that nothing of the evicted adapter stays readable. */
  clear(slot: number): void {
    const R = this.rankValue;
    for (const s of this.stacks.values()) {
      for (let layer = 0; layer < this.spec.numLayers; layer++) {
        const e = layer * this.slotCount + slot;
        s.a.fill(0, e * s.inSize * R, (e + 1) * s.inSize * R);
        s.b.fill(0, e * R * s.outSize, (e + 1) * R * s.outSize);
      }
    }
    this.changed(slot);
  }
}
