/**
 * The host path's runner (see batch-runner.ts): one packed forward run per step (packed-attention.ts) over
 * every decoding row's next token and the step's prompt chunks, with the KV cache in host memory
 * (host-kv-cache.ts) fed as read-only inputs and the step's new keys and values written back into it. Returns
 * logits of the positions asked for; the scheduler samples on the host.
 */
import { intraOpThreadCount, ort } from './ort.js';
import type { ModelSpec } from './hf-config.js';
import { PROJECTION_GROUPS, projectionShape } from './graph-builder.js';
import {
  ATTENTION_GROUPS,
  MASKED,
  groupGatherName,
  newKvName,
  usedLoraAName,
  usedLoraBName,
  newMaskName,
  packedPastName,
  pastMaskName,
  loraActiveName,
  PRE_HAS_ROWS,
  scoreSplitName,
  type AttentionGroup,
} from './packed-attention.js';
import { HostKvCache } from './host-kv-cache.js';
import type { SlotStacks } from '../lora/slot-stacks.js';
import type { BatchRunner, RowOutput, StepPlan, StepRow } from './batch-runner.js';

export interface RunnerOptions {
  maxBatch: number;
  maxSequenceLength: number;
  executionProviders: string[];
  intraOpThreads?: number;
  /** Bytes the KV cache may hold; 0 = unbounded. */
  kvBudgetBytes?: number;
}

/** A group's rows for one run: their first cache row, and each row's tokens and cached length. */
interface GroupRows {
  firstRow: number;
  rows: Array<{ tokens: number; pastLength: number; firstToken: number }>;
}

/** The step's flat token list: decode tokens first, then each prefill chunk; each token's row and position. */
function flatten(parts: StepRow[]) {
  const T = parts.reduce((n, r) => n + r.tokens.length, 0);
  const ids = new BigInt64Array(T);
  const positions = new BigInt64Array(T);
  const tokenRow = new Int32Array(T);
  const tokenPosition = new Int32Array(T);
  const firstToken: number[] = [];
  let t = 0;
  for (const r of parts) {
    firstToken.push(t);
    r.tokens.forEach((id, i) => {
      ids[t] = BigInt(id);
      positions[t] = BigInt(r.pastLength + i);
      tokenRow[t] = r.row;
      tokenPosition[t] = r.pastLength + i;
      t++;
    });
  }
  return { T, ids, positions, tokenRow, tokenPosition, firstToken };
}

/**
 * `logit_rows` (every logit position of the step), `logit_wanted` (those that come back whole: every row that
 * is not greedy-selected in the graph) and `logprob_rows` (the greedy rows whose chosen token's log-probability
 * is wanted; see addGreedySelection). `greedy[i]`: part i gets its token from the graph; `logprob[i]`: and its
 * log-probability, at that index of `next_logprob`.
 */
function logitSelection(
  parts: StepRow[],
  firstToken: number[],
  vocabSize: number,
): { greedy: boolean[]; logprob: number[]; feeds: Record<string, ort.Tensor> } {
  const logitRows: number[] = [];
  const wanted: number[] = [];
  const logprobRows: number[] = [];
  const greedy = parts.map((r) => r.logitPositions.length === 1 && r.sampling !== undefined && r.sampling.temperature === 0);
  const logprob = parts.map(() => -1);
  parts.forEach((r, i) =>
    r.logitPositions.forEach((p) => {
      if (!greedy[i]) wanted.push(logitRows.length);
      else if (r.sampling?.logprob) logprob[i] = logprobRows.push(logitRows.length) - 1;
      logitRows.push(firstToken[i] + p);
    }),
  );
  // At least one logits row: onnxruntime's reductions mis-shape an empty input (the extra row is never read).
  const rowsFed = logitRows.length ? logitRows : [0];
  const logprobFed = logprobRows.length ? logprobRows : [0];
  return {
    greedy,
    logprob,
    feeds: {
      logit_rows: new ort.Tensor('int64', BigInt64Array.from(rowsFed, BigInt), [rowsFed.length]),
      logit_wanted: new ort.Tensor('int64', BigInt64Array.from(wanted, BigInt), [wanted.length]),
      logprob_rows: new ort.Tensor('int64', BigInt64Array.from(logprobFed, BigInt), [logprobFed.length]),
      logprob_width: new ort.Tensor('int64', BigInt64Array.of(BigInt(logprobRows.length ? vocabSize : 1)), [1]),
    },
  };
}

export class ModelRunner implements BatchRunner {
  /** Greedy rows only: a row passing temperature-0 sampling gets its argmax from the graph, the others logits. */
  readonly selectsTokens = true;
  private readonly cache: HostKvCache;
  /** The graph's LoRA inputs for the last set of used slots (see addLoraFeeds). */
  private usedLora: { key: string; slots: number[]; feeds: Record<string, ort.Tensor> } | null = null;
  /** The LoRA inputs of a step without adapters (noAdapterFeeds). */
  private noAdapter: Record<string, ort.Tensor> | null = null;

  private constructor(
    readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
    readonly options: RunnerOptions,
    readonly provider: string,
    private readonly stacks: SlotStacks | null,
  ) {
    this.cache = new HostKvCache(spec, { maxRows: options.maxBatch, maxSequenceLength: options.maxSequenceLength, budgetBytes: options.kvBudgetBytes ?? 0 });
    // A rank change re-allocates the stacks; a slot rewrite changes what a copy holds.
    stacks?.onChange((change) => {
      if (change === 'all' || this.usedLora?.slots.includes(change)) this.usedLora = null;
    });
  }

  /** The host path's session options (bench/peer/session-resident.ts creates its sessions with them too). */
  static sessionOptions(executionProviders: string[], intraOpThreads?: number): ort.InferenceSession.SessionOptions {
    return {
      executionProviders,
      graphOptimizationLevel: 'all',
      intraOpNumThreads: intraOpThreadCount(intraOpThreads),
      interOpNumThreads: 1,
      executionMode: 'sequential',
    };
  }

  static async create(onnxPath: string, spec: ModelSpec, options: RunnerOptions, stacks: SlotStacks | null): Promise<ModelRunner> {
    const session = await ort.InferenceSession.create(onnxPath, ModelRunner.sessionOptions(options.executionProviders, options.intraOpThreads));
    if (!session.inputNames.includes('unpad')) throw new Error("ModelRunner needs a graph built with attention: 'packed'");
    return new ModelRunner(spec, session, options, options.executionProviders[0], stacks);
  }

  get kvCacheBytes(): number {
    return this.cache.bytes;
  }

  get kvBytesPerToken(): number {
    return HostKvCache.bytesPerToken(this.spec);
  }

  /** The cache's current capacity in positions (for stats and tests). */
  get kvCapacity(): number {
    return this.cache.capacity;
  }

  async step(plan: StepPlan): Promise<RowOutput[]> {
    const parts = [...plan.decode, ...plan.prefill];
    if (parts.length === 0) return [];
    const d = plan.decode.length;
    plan.decode.forEach((r, i) => {
      if (r.row !== i || r.tokens.length !== 1) throw new Error(`ModelRunner: decode rows must be rows 0..${d - 1} with one token each`);
    });
    plan.prefill.forEach((r, i) => {
      if (r.row !== d + i) throw new Error(`ModelRunner: prefill rows must follow the decode rows consecutively (row ${r.row} at ${d + i})`);
    });
    const rowsInStep = d + plan.prefill.length;
    const longest = Math.max(...parts.map((r) => r.pastLength + r.tokens.length));
    this.cache.reserve(rowsInStep, longest);

    const { T, ids, positions, tokenRow, tokenPosition, firstToken } = flatten(parts);
    const groups: Record<AttentionGroup, GroupRows> = {
      dec: { firstRow: 0, rows: plan.decode.map((r, i) => ({ tokens: 1, pastLength: r.pastLength, firstToken: firstToken[i] })) },
      pre: { firstRow: d, rows: plan.prefill.map((r, i) => ({ tokens: r.tokens.length, pastLength: r.pastLength, firstToken: firstToken[d + i] })) },
    };
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [T]),
      positions: new ort.Tensor('int64', positions, [T]),
    };
    const unpad = new BigInt64Array(T);
    let paddedBefore = 0;
    for (const group of ATTENTION_GROUPS) paddedBefore += this.groupFeeds(group, groups[group], feeds, unpad, paddedBefore);
    feeds.unpad = new ort.Tensor('int64', unpad, [T]);
    feeds[PRE_HAS_ROWS] = new ort.Tensor('bool', Uint8Array.of(plan.prefill.length > 0 ? 1 : 0), []);
    const { greedy, logprob: logprobAt, feeds: logitFeeds } = logitSelection(parts, firstToken, this.spec.vocabSize);
    Object.assign(feeds, logitFeeds);
    if (this.stacks) this.addLoraFeeds(feeds, parts, T);

    const fetches = ['next_token', 'next_logprob', 'wanted_logits'];
    for (let l = 0; l < this.spec.numLayers; l++) fetches.push(newKvName(l, 'key'), newKvName(l, 'value'));
    const out = await this.session.run(feeds, fetches);
    for (let l = 0; l < this.spec.numLayers; l++) {
      this.cache.write(l, out[newKvName(l, 'key')].data as Float32Array, out[newKvName(l, 'value')].data as Float32Array, tokenRow, tokenPosition);
    }
    for (const r of parts) this.cache.setLength(r.row, r.pastLength + r.tokens.length);

    const tokens = out.next_token.data as BigInt64Array;
    const logprobs = out.next_logprob.data as Float32Array;
    const logits = out.wanted_logits.data as Float32Array;
    const V = this.spec.vocabSize;
    let logitRow = 0;
    let wantedRow = 0;
    return parts.map((r, i): RowOutput => {
      const n = r.logitPositions.length;
      logitRow += n;
      if (greedy[i]) return { token: Number(tokens[logitRow - 1]), ...(logprobAt[i] >= 0 ? { logprob: logprobs[logprobAt[i]] } : {}) };
      wantedRow += n;
      return n ? { logits: logits.subarray((wantedRow - n) * V, wantedRow * V) } : {};
    });
  }

  /**
   * Feeds of one attention group; a group without rows gets one dummy row (one token, every position masked
   * but its own) whose results nothing reads. Fills `unpad` for the group's tokens; returns its padded size.
   */
  private groupFeeds(group: AttentionGroup, rows: GroupRows, feeds: Record<string, ort.Tensor>, unpad: BigInt64Array, paddedBefore: number): number {
    const { numKvHeads: KV, headDim: D, numLayers: L, numHeads } = this.spec;
    const queryGroups = numHeads / KV;
    const dummy = rows.rows.length === 0;
    const n = dummy ? 1 : rows.rows.length;
    const width = dummy ? 1 : Math.max(...rows.rows.map((r) => r.tokens));
    const capacity = dummy ? 1 : this.cache.capacity;
    const gather = new BigInt64Array(n * width);
    const pastMask = new Float32Array(n * capacity).fill(MASKED);
    const newMask = new Float32Array(n * queryGroups * width * width).fill(MASKED);
    rows.rows.forEach((r, j) => {
      for (let i = 0; i < width; i++) gather[j * width + i] = BigInt(r.firstToken + Math.min(i, r.tokens - 1));
      for (let i = 0; i < r.tokens; i++) unpad[r.firstToken + i] = BigInt(paddedBefore + j * width + i);
      pastMask.fill(0, j * capacity, j * capacity + r.pastLength);
      // Query i sees the step's tokens 0..i; a padding query (i >= tokens) sees token 0 only, to stay finite.
      for (let q = 0; q < queryGroups; q++) {
        for (let i = 0; i < width; i++) {
          const at = ((j * queryGroups + q) * width + i) * width;
          newMask.fill(0, at, at + (i < r.tokens ? i + 1 : 1));
        }
      }
    });
    if (dummy) newMask.fill(0);
    feeds[groupGatherName(group)] = new ort.Tensor('int64', gather, [n, width]);
    feeds[pastMaskName(group)] = new ort.Tensor('float32', pastMask, [n, 1, 1, capacity]);
    feeds[newMaskName(group)] = new ort.Tensor('float32', newMask, [n, 1, queryGroups * width, width]);
    feeds[scoreSplitName(group)] = new ort.Tensor('int64', BigInt64Array.of(BigInt(capacity), BigInt(width)), [2]);
    for (let l = 0; l < L; l++) {
      const view = dummy ? { keys: new Float32Array(KV * D), values: new Float32Array(KV * D) } : this.cache.view(l, rows.firstRow, n);
      feeds[packedPastName(group, l, 'key')] = new ort.Tensor('float32', view.keys, [n, KV, D, capacity]);
      feeds[packedPastName(group, l, 'value')] = new ort.Tensor('float32', view.values, [n, KV, capacity, D]);
    }
    return n * width;
  }

  /**
   * Adds to `feeds` the adapters this step uses, as the graph's `lora_used.*` inputs (laid out by layOutUsed, kept while the same
   * set is used), and each token's columns (`lora_mask` [T, used*rank]). Rows of the bare base model (slot 0)
   * are in no adapter's columns; a step without adapters gets width-1 zeros (noAdapterFeeds).
   */
  private addLoraFeeds(feeds: Record<string, ort.Tensor>, parts: StepRow[], T: number): void {
    const used = [...new Set(parts.map((r) => r.slot).filter((slot) => slot > 0))].sort((x, y) => x - y);
    if (used.length === 0) {
      Object.assign(feeds, this.noAdapterFeeds());
      feeds.lora_mask = new ort.Tensor('float32', new Float32Array(T), [T, 1]);
      return;
    }
    const key = used.join(',');
    if (this.usedLora?.key !== key) this.usedLora = { key, slots: used, feeds: this.layOutUsed(used) };
    const R = this.stacks!.rank;
    const width = used.length * R;
    const mask = new Float32Array(T * width);
    let t = 0;
    for (const r of parts) {
      const u = r.slot > 0 ? used.indexOf(r.slot) : -1;
      for (let i = 0; i < r.tokens.length; i++, t++) if (u >= 0) mask.fill(1, t * width + u * R, t * width + (u + 1) * R);
    }
    Object.assign(feeds, this.usedLora.feeds);
    feeds.lora_mask = new ort.Tensor('float32', mask, [T, width]);
  }

  /**
   * A step in which no row uses an adapter: every group's LoRA switched off (`lora.active.<group>` false) and
   * width-1 zero matrices for the inputs the graph then does not read (they never have an empty dimension).
   */
  private noAdapterFeeds(): Record<string, ort.Tensor> {
    if (!this.noAdapter) {
      this.noAdapter = {};
      for (const group of PROJECTION_GROUPS) this.noAdapter[loraActiveName(group)] = new ort.Tensor('bool', Uint8Array.of(0), []);
      for (let l = 0; l < this.spec.numLayers; l++) {
        for (const group of PROJECTION_GROUPS) {
          const inSize = projectionShape(this.spec, group[0])[0];
          this.noAdapter[usedLoraAName(l, group)] = new ort.Tensor('float32', new Float32Array(inSize * group.length), [inSize, group.length]);
          for (const p of group) {
            const outSize = projectionShape(this.spec, p)[1];
            this.noAdapter[usedLoraBName(l, p)] = new ort.Tensor('float32', new Float32Array(outSize), [1, outSize]);
          }
        }
      }
    }
    return this.noAdapter;
  }

  /**
   * The LoRA inputs for a set of used slots. A group of projections that none of their adapters changes is
   * switched off (`lora.active.<group>` false, the no-adapter placeholders fed). For the others, per layer the
   * used slots' A of the group side by side, [in, parts*used*rank] (part-major, then slot), and per projection
   * B stacked, [used*rank, out]. B of consecutive slots, and A of a single projection and slot, are views of the
   * stacks ([slots, rank, out] and [in, rank] blocks); other A are interleaved into a copy.
   */
  private layOutUsed(slots: number[]): Record<string, ort.Tensor> {
    const stacks = this.stacks!;
    const R = stacks.rank;
    const U = slots.length;
    const consecutive = slots.every((slot, i) => slot === slots[0] + i);
    const feeds: Record<string, ort.Tensor> = { ...this.noAdapterFeeds() };
    for (const group of PROJECTION_GROUPS) {
      if (!slots.some((slot) => group.some((p) => stacks.targets(slot).has(p)))) continue;
      feeds[loraActiveName(group)] = new ort.Tensor('bool', Uint8Array.of(1), []);
      const P = group.length;
      const inSize = projectionShape(this.spec, group[0])[0];
      for (let l = 0; l < this.spec.numLayers; l++) {
        let aUsed: Float32Array;
        if (U === 1 && P === 1) aUsed = stacks.layer(l, group[0]).a.subarray(slots[0] * inSize * R, (slots[0] + 1) * inSize * R);
        else {
          aUsed = new Float32Array(inSize * P * U * R);
          group.forEach((p, part) => {
            const { a } = stacks.layer(l, p);
            slots.forEach((slot, u) => {
              for (let i = 0; i < inSize; i++) aUsed.set(a.subarray((slot * inSize + i) * R, (slot * inSize + i + 1) * R), ((i * P + part) * U + u) * R);
            });
          });
        }
        feeds[usedLoraAName(l, group)] = new ort.Tensor('float32', aUsed, [inSize, P * U * R]);
        for (const p of group) {
          const { b, bDims } = stacks.layer(l, p);
          const outSize = bDims[2];
          let bUsed: Float32Array;
          if (consecutive) bUsed = b.subarray(slots[0] * R * outSize, (slots[0] + U) * R * outSize);
          else {
            bUsed = new Float32Array(U * R * outSize);
            slots.forEach((slot, u) => bUsed.set(b.subarray(slot * R * outSize, (slot + 1) * R * outSize), u * R * outSize));
          }
          feeds[usedLoraBName(l, p)] = new ort.Tensor('float32', bUsed, [U * R, outSize]);
        }
      }
    }
    return feeds;
  }

  moveRow(from: number, to: number, length: number): void {
    this.cache.move(from, to, length);
  }

  freeRowsFrom(count: number): void {
    this.cache.freeFrom(count);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
