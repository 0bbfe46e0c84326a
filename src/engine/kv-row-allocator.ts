/**
 * Which KV-cache row each running sequence holds, and freeing rows so that they stay contiguous.
 *
 * Sequences that finished their prompt (decoders) hold rows 0..d-1, those still in prefill the rows after, in
 * admission order. Prompt tokens go to the rows in prefill in that order, so the rows that finish their prompt
 * in a step are always the first ones in prefill: they become decoders without moving. Freeing a row moves the
 * last decoder into the gap and the last row into the last decoder's place; the runner is told of each move
 * (`moveRow`) so that the cached positions follow the sequence.
 *
 * While a step's results are handled they are read by row, so no row may move: frees are held then
 * (`holdFrees`) and done together after (`releaseHeldFrees`).
 */

/** What the allocator reads and writes on a sequence. */
export interface RowHolder {
  /** The sequence's row, -1 when it holds none. */
  row: number;
  /** The whole prompt has run: the row belongs to the decoding rows. */
  prefillDone: boolean;
  /** Positions cached in the row: what a move copies. */
  cached: number;
}

export type MoveRow = (from: number, to: number, length: number) => void;

export class KvRowAllocator<S extends RowHolder> {
  private readonly byRow: S[] = [];
  private heldFrees: S[] | null = null;

  constructor(private readonly moveRow: MoveRow) {}

  /** Rows in use. */
  get count(): number {
    return this.byRow.length;
  }

  /** The sequences in row order. */
  get sequences(): readonly S[] {
    return this.byRow;
  }

  /** The sequences that finished their prompt: rows 0..d-1. */
  decoders(): S[] {
    return this.byRow.filter((s) => s.prefillDone);
  }

  /** The sequences still in prefill, in admission order: the rows after the decoders. */
  inPrefill(): S[] {
    return this.byRow.slice(this.decoders().length);
  }

  /** Gives a newly admitted sequence the next row (after every row in use). */
  assign(seq: S): void {
    seq.row = this.byRow.length;
    this.byRow.push(seq);
  }

  /** Frees the sequence's row now, or after the step when frees are held. */
  free(seq: S): void {
    if (seq.row < 0) return;
    if (this.heldFrees) this.heldFrees.push(seq);
    else this.freeNow(seq);
  }

  /** From now until `releaseHeldFrees`, frees wait: no row moves while a step's results are read by row. */
  holdFrees(): void {
    this.heldFrees = [];
  }

  /** Frees the rows whose frees were held, in the order they were asked for. */
  releaseHeldFrees(): void {
    const held = this.heldFrees ?? [];
    this.heldFrees = null;
    for (const s of held) this.freeNow(s);
  }

  private freeNow(seq: S): void {
    const r = seq.row;
    seq.row = -1;
    const last = this.byRow.length - 1;
    if (seq.prefillDone) {
      const lastDecoder = this.byRow.filter((s) => s.prefillDone).length - 1;
      if (r !== lastDecoder) this.moveTo(this.byRow[lastDecoder], r);
      if (lastDecoder !== last) this.moveTo(this.byRow[last], lastDecoder);
    } else if (r !== last) this.moveTo(this.byRow[last], r);
    this.byRow.length = last;
  }

  private moveTo(seq: S, row: number): void {
    this.moveRow(seq.row, row, seq.cached);
    this.byRow[row] = seq;
    seq.row = row;
  }
}
