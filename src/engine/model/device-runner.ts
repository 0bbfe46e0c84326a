/**
 * Runs the decoder with its state resident on the execution provider's device between steps (see
 * batch-runner.ts for the contract). Needs a graph built with `sampling: true` (and `loraFormulation: 'masked'`
 * with LoRA inputs).
 *
 * - KV cache: one batch tensor per layer and kind, [maxBatch, kvHeads, maxSeq, headDim], fed as `past.*` and
 *   replaced by the step's `present.*` outputs, which the session leaves on the device. Every decode step runs
 *   all maxBatch rows (unused rows are padding with an empty cache): a device tensor cannot be sliced without a
 *   copy, and at decode batch sizes the weight reads, not the rows, set the step time on a GPU.
 * - A sequence in prefill has a one-row KV tensor of its own (its first chunk reads a shared empty one, so no
 *   zeros cross the bus per request); before its first decode step it is copied into a free row of the batch
 *   tensors on the device (DeviceEdits.insertRows). The scheduler's rows are logical: `physical[row]` is the
 *   batch row that holds that sequence's cache, so compaction moves no KV at all. Several whole prompts can
 *   also go in one run (prefillTogether) and land straight in their batch rows (DeviceEdits.insertRows).
 * - LoRA weights (lora/slot-stacks.ts): uploaded once; a slot written or cleared later is replaced on the device
 *   through DeviceEdits.writeSlots (only that slot's blocks cross the bus); a rank change re-uploads them.
 * - Token selection: in the graph (sampling-graph.ts); only ids and log-probabilities come back, logits only
 *   when the caller passes no sampling (prompt log-probabilities, top log-probabilities, JSON mode).
 *
 * On the CPU provider the same code runs on host tensors, which is how it is tested on machines without a GPU.
 */
import { intraOpThreadCount, ort } from './ort.js';
import type { ModelSpec } from './hf-config.js';
import { PROJECTIONS, loraInput, pastName, presentName } from './graph-builder.js';
import type { SlotStacks } from '../lora/slot-stacks.js';
import type { BatchRunner, DecodeRow, RowOutput, RowSampling, StepOutput, StepPlan, StepRow } from './batch-runner.js';
import { DeviceEdits, type TensorLocation } from './device-edits.js';
import { toFloat16 } from './float16.js';
import { GREEDY_ROW, samplingFeeds } from './sampling-graph.js';

export interface DeviceRunnerOptions {
  maxBatch: number;
  maxSequenceLength: number;
  /** The one provider this runner uses (the engine picks it and falls back to cpu). */
  provider: string;
  intraOpThreads?: number;
  /** Element type of the KV cache and the stacks, as the graph was built. */
  dtype?: 'float32' | 'float16';
  /** Write onnxruntime's per-node profile (JSON) to files starting with this path; see endProfiling. */
  profileFilePrefix?: string;
}

type KvSet = Record<string, ort.Tensor>;
type Float = 'float32' | 'float16';

function zeros(type: Float, dims: number[]): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return new ort.Tensor(type, type === 'float16' ? new Uint16Array(n) : new Float32Array(n), dims);
}

function disposeAll(tensors: KvSet | undefined): void {
  for (const t of Object.values(tensors ?? {})) t.dispose();
}

export class DeviceRunner implements BatchRunner {
  readonly selectsTokens = true;
  /** Set at start: whether this provider runs a batch of prompts from an empty cache (checkEdits tries it). */
  prefillsTogether = false;
  private batchKv: KvSet = {};
  /** An empty one-row cache on the device, the `past` of every prompt's first chunk (never written: outputs are new tensors). */
  private emptyRow: KvSet = {};
  /** Logical row (the scheduler's) -> one-row KV of a sequence still in prefill. */
  private readonly pending = new Map<number, KvSet>();
  /** Logical row -> batch row holding its cache. */
  private readonly physical: number[] = [];
  private stackFeeds: KvSet = {};
  private stacksChanged: Set<number> | 'all' = 'all';

  private constructor(
    readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
    private readonly edits: DeviceEdits,
    private readonly options: DeviceRunnerOptions,
    private readonly stacks: SlotStacks | null,
  ) {
    stacks?.onChange((slot) => {
      if (this.stacksChanged === 'all') return;
      if (slot === 'all') this.stacksChanged = 'all';
      else this.stacksChanged.add(slot);
    });
  }

  static async create(onnxPath: string, spec: ModelSpec, options: DeviceRunnerOptions, stacks: SlotStacks | null): Promise<DeviceRunner> {
    const location: TensorLocation = options.provider === 'cpu' ? 'cpu' : 'gpu-buffer';
    const preferredOutputLocation: Record<string, TensorLocation> = { logits: 'cpu', next_token: 'cpu', next_logprob: 'cpu' };
    for (let l = 0; l < spec.numLayers; l++) for (const kv of ['key', 'value'] as const) preferredOutputLocation[presentName(l, kv)] = location;
    const session = await ort.InferenceSession.create(onnxPath, {
      executionProviders: [options.provider],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: intraOpThreadCount(options.intraOpThreads),
      preferredOutputLocation,
      ...(options.profileFilePrefix ? { enableProfiling: true, profileFilePrefix: options.profileFilePrefix } : {}),
    });
    if (!session.outputNames.includes('next_token')) throw new Error('DeviceRunner needs a graph built with sampling: true');
    if (stacks && !session.inputNames.includes('lora_mask')) throw new Error("DeviceRunner needs a graph built with loraFormulation: 'masked'");
    const runner = new DeviceRunner(spec, session, new DeviceEdits(options.provider, location), options, stacks);
    runner.batchKv = await runner.edits.upload(runner.emptyKv(options.maxBatch));
    runner.emptyRow = await runner.edits.upload(runner.emptyKv(1));
    await runner.checkEdits();
    return runner;
  }

  /**
   * Runs each device edit once at start (a row insert and a slot write that change nothing), so that a
   * provider lacking one of their ops fails here, where the engine falls back to the next provider, and not
   * on the first request. A prompt batch is tried too; without it prompts go one at a time.
   */
  private async checkEdits(): Promise<void> {
    const merged = await this.edits.insertRows(this.batchKv, this.emptyRow, [0]);
    disposeAll(this.batchKv);
    this.batchKv = merged;
    if (this.options.maxBatch > 1) {
      try {
        // Two short prompts into rows 0 and 1 (rows that hold nothing yet): a prompt batch from a zero-length cache.
        await this.prefillTogether([
          { row: 0, tokens: [0], slot: 0 },
          { row: 1, tokens: [0, 0], slot: 0 },
        ]);
        this.prefillsTogether = true;
      } catch {
        this.prefillsTogether = false; // prompts then go one at a time, which every provider runs
      }
      this.physical.length = 0;
    }
    if (this.stacks) {
      await this.syncStacks();
      this.stacksChanged = new Set([1]);
      await this.syncStacks();
    }
  }

  get provider(): string {
    return this.options.provider;
  }

  private get kvType(): Float {
    return this.options.dtype ?? 'float32';
  }

  get kvCacheBytes(): number {
    const { numKvHeads, headDim, numLayers } = this.spec;
    return numKvHeads * this.options.maxSequenceLength * headDim * (this.kvType === 'float16' ? 2 : 4) * 2 * numLayers * this.options.maxBatch;
  }

  private emptyKv(rows: number): KvSet {
    return this.emptyKvOfLength(rows, this.options.maxSequenceLength);
  }

  private emptyKvOfLength(rows: number, length: number): KvSet {
    const dims = [rows, this.spec.numKvHeads, length, this.spec.headDim];
    const kv: KvSet = {};
    for (let l = 0; l < this.spec.numLayers; l++) for (const k of ['key', 'value'] as const) kv[pastName(l, k)] = zeros(this.kvType, dims);
    return kv;
  }

  get kvBytesPerToken(): number {
    return this.spec.numLayers * 2 * this.spec.numKvHeads * this.spec.headDim * (this.kvType === 'float16' ? 2 : 4);
  }

  /**
   * One step through this runner's own calls: one decode run for the decoding rows, then the prompt chunks
   * (whole new prompts together in one run where the provider can, otherwise one run each). Tokens are chosen
   * in the graph when every row of a run passes sampling; otherwise that run returns logits.
   */
  async step(plan: StepPlan): Promise<RowOutput[]> {
    const results: RowOutput[] = [];
    if (plan.decode.length) {
      const sampling = allSampling(plan.decode);
      results.push(
        ...splitOutput(
          await this.decode(
            plan.decode.map((r) => ({ token: r.tokens[0], pastLength: r.pastLength, slot: r.slot })),
            sampling,
          ),
          plan.decode,
          this.spec.vocabSize,
        ),
      );
    }
    const whole =
      plan.prefill.length > 1 &&
      this.prefillsTogether &&
      plan.prefill.every((r) => r.pastLength === 0 && r.logitPositions.length === 1 && r.logitPositions[0] === r.tokens.length - 1);
    if (whole) {
      results.push(...splitOutput(await this.prefillTogether(plan.prefill, allSampling(plan.prefill)), plan.prefill, this.spec.vocabSize));
      return results;
    }
    for (const r of plan.prefill) {
      const positions = r.logitPositions.length ? r.logitPositions : [r.tokens.length - 1];
      const out = await this.prefill(r.row, r.tokens, r.pastLength, r.slot, positions, r.logitPositions.length ? r.sampling : undefined);
      results.push(r.logitPositions.length ? splitOutput(out, [r], this.spec.vocabSize)[0] : {});
    }
    return results;
  }

  freeRowsFrom(): void {
    // Rows are logical here (physical[]); a freed row's cache is overwritten by the next prompt it takes.
  }

  async prefill(row: number, tokens: number[], pastLength: number, slot: number, logitPositions: number[], sampling?: RowSampling): Promise<StepOutput> {
    if (pastLength === 0) {
      disposeAll(this.pending.get(row));
      this.pending.delete(row);
      const taken = new Set(this.physical.slice(0, row));
      this.physical[row] = [...Array(this.options.maxBatch).keys()].find((p) => !taken.has(p))!;
    }
    const past = pastLength === 0 ? this.emptyRow : this.pending.get(row);
    if (!past) throw new Error(`DeviceRunner: row ${row} continues a prefill that was never started`);
    if (sampling && logitPositions.length !== 1) throw new Error('DeviceRunner: sampling needs exactly one logit position');
    const T = tokens.length;
    const { outputs, present } = await this.run(
      past,
      {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, T]),
        logit_rows: new ort.Tensor('int64', BigInt64Array.from(logitPositions, BigInt), [logitPositions.length]),
        seqlens_k: new ort.Tensor('int32', Int32Array.of(pastLength + T - 1), [1]),
        total_sequence_length: new ort.Tensor('int32', Int32Array.of(pastLength + T), []),
      },
      [slot],
      sampling ? [sampling] : undefined,
    );
    if (pastLength > 0) disposeAll(past);
    this.pending.set(row, present);
    return outputs;
  }

  /**
   * Whole prompts of new sequences in one run: right-padded to the longest, each row's own length in
   * seqlens_k, from an empty (zero-length) cache; the caches that come out are padded to the batch's length and
   * copied into free batch rows on the device.
   */
  async prefillTogether(rows: Array<{ row: number; tokens: number[]; slot: number }>, sampling?: RowSampling[]): Promise<StepOutput> {
    const n = rows.length;
    const T = Math.max(...rows.map((r) => r.tokens.length));
    const taken = new Set(this.physical.slice(0, rows[0].row));
    const free = [...Array(this.options.maxBatch).keys()].filter((p) => !taken.has(p));
    rows.forEach((r, j) => {
      disposeAll(this.pending.get(r.row));
      this.pending.delete(r.row);
      this.physical[r.row] = free[j];
    });
    const ids = new BigInt64Array(n * T);
    rows.forEach((r, j) => r.tokens.forEach((id, k) => (ids[j * T + k] = BigInt(id))));
    const { outputs, present } = await this.run(
      this.emptyKvOfLength(n, 0),
      {
        input_ids: new ort.Tensor('int64', ids, [n, T]),
        logit_rows: new ort.Tensor(
          'int64',
          BigInt64Array.from(rows, (r, j) => BigInt(j * T + r.tokens.length - 1)),
          [n],
        ),
        seqlens_k: new ort.Tensor(
          'int32',
          Int32Array.from(rows, (r) => r.tokens.length - 1),
          [n],
        ),
        total_sequence_length: new ort.Tensor('int32', Int32Array.of(T), []),
      },
      rows.map((r) => r.slot),
      sampling,
    );
    const merged = await this.edits.insertRows(
      this.batchKv,
      present,
      rows.map((r) => this.physical[r.row]),
    );
    disposeAll(this.batchKv);
    disposeAll(present);
    this.batchKv = merged;
    return outputs;
  }

  async decode(rows: DecodeRow[], sampling?: RowSampling[]): Promise<StepOutput> {
    for (let r = 0; r < rows.length; r++) await this.admitPending(r);
    const B = this.options.maxBatch;
    const ids = new BigInt64Array(B);
    const seqlens = new Int32Array(B);
    const slots = new Array<number>(B).fill(0);
    rows.forEach((row, r) => {
      const p = this.physical[r];
      ids[p] = BigInt(row.token);
      seqlens[p] = row.pastLength;
      slots[p] = row.slot;
    });
    const { outputs, present } = await this.run(
      this.batchKv,
      {
        input_ids: new ort.Tensor('int64', ids, [B, 1]),
        logit_rows: new ort.Tensor(
          'int64',
          BigInt64Array.from(rows, (_, r) => BigInt(this.physical[r])),
          [rows.length],
        ),
        seqlens_k: new ort.Tensor('int32', seqlens, [B]),
        total_sequence_length: new ort.Tensor('int32', Int32Array.of(Math.max(...rows.map((r) => r.pastLength)) + 1), []),
      },
      slots,
      sampling,
    );
    disposeAll(this.batchKv);
    this.batchKv = present;
    return outputs;
  }

  /** Copies a finished prefill's one-row cache into its batch row, on the device. */
  private async admitPending(row: number): Promise<void> {
    const kv = this.pending.get(row);
    if (!kv) return;
    this.pending.delete(row);
    const merged = await this.edits.insertRows(this.batchKv, kv, [this.physical[row]]);
    disposeAll(this.batchKv);
    disposeAll(kv);
    this.batchKv = merged;
  }

  moveRow(from: number, to: number): void {
    if (from === to) return;
    disposeAll(this.pending.get(to));
    this.pending.delete(to);
    this.physical[to] = this.physical[from];
    const kv = this.pending.get(from);
    if (kv) {
      this.pending.set(to, kv);
      this.pending.delete(from);
    }
  }

  private async run(
    past: KvSet,
    feeds: Record<string, ort.Tensor>,
    slots: number[],
    sampling?: RowSampling[],
  ): Promise<{ outputs: StepOutput; present: KvSet }> {
    Object.assign(feeds, past);
    if (this.stacks) Object.assign(feeds, await this.loraFeeds(slots));
    Object.assign(feeds, samplingFeeds(sampling ?? new Array(feeds.logit_rows.dims[0]).fill(GREEDY_ROW), this.spec.vocabSize));
    const fetches = sampling ? ['next_token', 'next_logprob'] : ['logits'];
    for (let l = 0; l < this.spec.numLayers; l++) for (const kv of ['key', 'value'] as const) fetches.push(presentName(l, kv));
    const out = await this.session.run(feeds, fetches);
    const present: KvSet = {};
    for (let l = 0; l < this.spec.numLayers; l++) for (const kv of ['key', 'value'] as const) present[pastName(l, kv)] = out[presentName(l, kv)];
    if (!sampling) return { outputs: { logits: out.logits.data as Float32Array }, present };
    return {
      outputs: { tokens: Array.from(out.next_token.data as BigInt64Array, Number), logprobs: Array.from(out.next_logprob.data as Float32Array) },
      present,
    };
  }

  private async loraFeeds(slots: number[]): Promise<Record<string, ort.Tensor>> {
    await this.syncStacks();
    const stacks = this.stacks!;
    return { ...this.stackFeeds, lora_mask: new ort.Tensor(this.kvType, toFloat(this.kvType, stacks.rowMask(slots)), [slots.length, stacks.width]) };
  }

  /** Brings the device copies of the LoRA weights up to date with the host's: one slot's blocks, or all after a rank change. */
  private async syncStacks(): Promise<void> {
    const changed = this.stacksChanged;
    this.stacksChanged = new Set();
    const stacks = this.stacks!;
    const L = this.spec.numLayers;
    if (changed === 'all') {
      const host: KvSet = {};
      for (let l = 0; l < L; l++) {
        for (const p of PROJECTIONS) {
          // The masked layout: A as [in, slots*rank], B as [slots*rank, out] (the same bytes as [slots, rank, out]).
          const { b, aDims, bDims } = stacks.layer(l, p);
          host[loraInput(l, p, 'a')] = new ort.Tensor(this.kvType, toFloat(this.kvType, stacks.maskedA(l, p)), [aDims[1], stacks.width]);
          host[loraInput(l, p, 'b')] = new ort.Tensor(this.kvType, toFloat(this.kvType, b), [stacks.width, bDims[2]]);
        }
      }
      const device = await this.edits.upload(host);
      if (this.edits.location !== 'cpu') disposeAll(this.stackFeeds);
      this.stackFeeds = device;
      return;
    }
    for (const slot of changed) {
      const blocks: Parameters<DeviceEdits['writeSlots']>[0] = [];
      for (let l = 0; l < L; l++) {
        for (const p of PROJECTIONS) {
          const { aDims, bDims } = stacks.layer(l, p);
          const block = stacks.slotBlock(slot, l, p);
          blocks.push({ name: loraInput(l, p, 'a'), block: new ort.Tensor(this.kvType, toFloat(this.kvType, block.a), [aDims[1], 1, stacks.rank]), axis: 1 });
          blocks.push({ name: loraInput(l, p, 'b'), block: new ort.Tensor(this.kvType, toFloat(this.kvType, block.b), [1, stacks.rank, bDims[2]]), axis: 0 });
        }
      }
      const edited = await this.edits.writeSlots(blocks, this.stackFeeds, slot, stacks.slotCount);
      for (const { name } of blocks) {
        this.stackFeeds[name].dispose();
        this.stackFeeds[name] = edited[name];
      }
    }
  }

  /** Stops profiling and writes the profile file (only with profileFilePrefix). */
  endProfiling(): void {
    this.session.endProfiling();
  }

  async release(): Promise<void> {
    disposeAll(this.batchKv);
    disposeAll(this.emptyRow);
    for (const kv of this.pending.values()) disposeAll(kv);
    this.pending.clear();
    await this.edits.release();
    await this.session.release();
  }
}

/** The runs' sampling when every row has one, else undefined (the run returns logits). */
function allSampling(rows: StepRow[]): RowSampling[] | undefined {
  return rows.every((r) => r.sampling) ? rows.map((r) => r.sampling!) : undefined;
}

/** One run's output split per row: its chosen token, or its logit positions' rows of the logits. */
function splitOutput(out: StepOutput, rows: StepRow[], vocab: number): RowOutput[] {
  if (out.tokens) return rows.map((_, i) => ({ token: out.tokens![i], logprob: out.logprobs![i] }));
  let at = 0;
  return rows.map((r) => {
    const n = Math.max(1, r.logitPositions.length);
    const logits = out.logits!.subarray(at * vocab, (at + n) * vocab);
    at += n;
    return { logits };
  });
}

/** The element type the graph reads (float16 data is stored as its bit patterns). */
function toFloat(type: Float, data: Float32Array): Float32Array | Uint16Array {
  return type === 'float16' ? toFloat16(data) : data;
}
