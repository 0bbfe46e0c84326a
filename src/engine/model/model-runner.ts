/**
 * Runs the decoder graph with onnxruntime-node, KV cache in host memory (see batch-runner.ts): one
 * fixed-size row per running sequence, rows 0..n-1 in use so that a decode step reads a contiguous prefix,
 * updated in place by the attention op. Returns logits; the scheduler samples on the host.
 */
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import type { ModelSpec } from './hf-config.js';
import { PROJECTIONS, loraStackInput, pastName, presentName } from './graph-builder.js';
import type { SlotStacks } from '../lora/slot-stacks.js';
import type { BatchRunner, DecodeRow, StepOutput } from './batch-runner.js';

export interface RunnerOptions {
  maxBatch: number;
  maxSequenceLength: number;
  executionProviders: string[];
  intraOpThreads?: number;
}

export class ModelRunner implements BatchRunner {
  readonly selectsTokens = false;
  /** Prompts one at a time: on the CPU a step's time grows with its tokens, so nothing is gained by batching them. */
  readonly prefillsTogether = false;
  private readonly keys: Float32Array[] = [];
  private readonly values: Float32Array[] = [];
  private readonly rowSize: number;
  private loraWeights: Record<string, ort.Tensor> | null = null;

  private constructor(
    readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
    readonly options: RunnerOptions,
    readonly provider: string,
    private readonly stacks: SlotStacks | null,
  ) {
    this.rowSize = spec.numKvHeads * options.maxSequenceLength * spec.headDim;
    stacks?.onChange((change) => {
      if (change === 'all') this.loraWeights = null;
    });
    for (let l = 0; l < spec.numLayers; l++) {
      this.keys.push(new Float32Array(options.maxBatch * this.rowSize));
      this.values.push(new Float32Array(options.maxBatch * this.rowSize));
    }
  }

  static async create(onnxPath: string, spec: ModelSpec, options: RunnerOptions, stacks: SlotStacks | null): Promise<ModelRunner> {
    const threads = options.intraOpThreads ?? availableParallelism();
    const session = await ort.InferenceSession.create(onnxPath, {
      executionProviders: options.executionProviders,
      graphOptimizationLevel: 'all',
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    });
    return new ModelRunner(spec, session, options, options.executionProviders[0], stacks);
  }

  get kvCacheBytes(): number {
    return this.rowSize * 4 * 2 * this.spec.numLayers * this.options.maxBatch;
  }

  /**
   * Runs `tokens` of one row (a prompt or a chunk of it) after `pastLength` cached tokens. Returns the
   * logits of the positions in `logitPositions` (relative to the chunk), [positions, vocab].
   */
  async prefill(row: number, tokens: number[], pastLength: number, slot: number, logitPositions: number[]): Promise<StepOutput> {
    const T = tokens.length;
    return this.run(row, 1, {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, T]),
      logit_rows: new ort.Tensor('int64', BigInt64Array.from(logitPositions, BigInt), [logitPositions.length]),
      seqlens_k: new ort.Tensor('int32', Int32Array.of(pastLength + T - 1), [1]),
      total_sequence_length: new ort.Tensor('int32', Int32Array.of(pastLength + T), []),
    }, [slot]);
  }

  /** One token for each of rows 0..rows.length-1. Returns logits [rows, vocab]. */
  async decode(rows: DecodeRow[]): Promise<StepOutput> {
    const n = rows.length;
    return this.run(0, n, {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(rows, (r) => BigInt(r.token)), [n, 1]),
      logit_rows: new ort.Tensor('int64', BigInt64Array.from(rows, (_, i) => BigInt(i)), [n]),
      seqlens_k: new ort.Tensor('int32', Int32Array.from(rows, (r) => r.pastLength), [n]),
      total_sequence_length: new ort.Tensor('int32', Int32Array.of(Math.max(...rows.map((r) => r.pastLength)) + 1), []),
    }, rows.map((r) => r.slot));
  }

  private async run(firstRow: number, rowCount: number, feeds: Record<string, ort.Tensor>, slots: number[]): Promise<StepOutput> {
    const { numKvHeads, headDim, numLayers } = this.spec;
    const dims = [rowCount, numKvHeads, this.options.maxSequenceLength, headDim];
    const fetches: Record<string, ort.Tensor | null> = { logits: null };
    for (let l = 0; l < numLayers; l++) {
      const k = new ort.Tensor('float32', this.keys[l].subarray(firstRow * this.rowSize, (firstRow + rowCount) * this.rowSize), dims);
      const v = new ort.Tensor('float32', this.values[l].subarray(firstRow * this.rowSize, (firstRow + rowCount) * this.rowSize), dims);
      // The same buffer is past and present: onnxruntime appends the new positions in place.
      feeds[pastName(l, 'key')] = k;
      feeds[pastName(l, 'value')] = v;
      fetches[presentName(l, 'key')] = k;
      fetches[presentName(l, 'value')] = v;
    }
    if (this.stacks) Object.assign(feeds, this.loraFeeds(slots));
    const out = await this.session.run(feeds, fetches as ort.InferenceSession.FetchesType);
    return { logits: out.logits.data as Float32Array };
  }

  private loraFeeds(slots: number[]): Record<string, ort.Tensor> {
    const stacks = this.stacks!;
    if (!this.loraWeights) {
      // Views of the stacks: valid while their layout is (a rank change drops them, see the constructor).
      this.loraWeights = {};
      for (const p of PROJECTIONS) {
        const s = stacks.stack(p);
        this.loraWeights[loraStackInput(p, 'a')] = new ort.Tensor('float32', s.a, s.aDims);
        this.loraWeights[loraStackInput(p, 'b')] = new ort.Tensor('float32', s.b, s.bDims);
      }
    }
    const L = this.spec.numLayers;
    const index = new BigInt64Array(L * slots.length);
    for (let l = 0; l < L; l++) for (let i = 0; i < slots.length; i++) index[l * slots.length + i] = BigInt(l * stacks.slotCount + slots[i]);
    return { ...this.loraWeights, lora_index: new ort.Tensor('int64', index, [L, slots.length]) };
  }

  /** Moves a sequence's cached positions from one row to another (compaction when a row frees up). */
  moveRow(from: number, to: number, length: number): void {
    if (from === to) return;
    const { numKvHeads, headDim } = this.spec;
    const headStride = this.options.maxSequenceLength * headDim;
    for (const buffers of [this.keys, this.values]) {
      for (const buf of buffers) {
        for (let h = 0; h < numKvHeads; h++) {
          const src = from * this.rowSize + h * headStride;
          buf.copyWithin(to * this.rowSize + h * headStride, src, src + length * headDim);
        }
      }
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
