/**
 * A device-resident decode loop for a fixed batch: the KV cache, the LoRA slot stacks and the logits stay
 * where the execution provider keeps them (GPU memory with WebGPU) between steps; each step sends token ids
 * and small index tensors, and reads back only the argmax token ids. On the CPU provider the same loop runs
 * with host tensors, which is how it is tested here.
 *
 * Not yet wired into the scheduler: rows are not compacted or refilled, every row of a batch starts together
 * with prompts of the same length, and selection is greedy (argmax inside the graph).
 */
import * as ort from 'onnxruntime-node';
import type { ModelSpec } from './hf-config.js';
import { PROJECTIONS, loraStackInput, pastName, presentName } from './graph-builder.js';
import type { SlotStacks } from '../lora/slot-stacks.js';
import { DataType, encodeModel, type OnnxModel } from './onnx-proto.js';

type Location = 'cpu' | 'gpu-buffer';

export interface ResidentOptions {
  provider: string;
  maxSequenceLength: number;
  intraOpThreads?: number;
}

export class ResidentRunner {
  private stackFeeds: Record<string, ort.Tensor> = {};

  private constructor(
    readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
    private readonly options: ResidentOptions,
    private readonly location: Location,
    private readonly stacks: SlotStacks | null,
  ) {}

  /** `onnxPath` must be a graph built with `argmax: true`. */
  static async create(onnxPath: string, spec: ModelSpec, options: ResidentOptions, stacks: SlotStacks | null): Promise<ResidentRunner> {
    const location: Location = options.provider === 'cpu' ? 'cpu' : 'gpu-buffer';
    const preferredOutputLocation: Record<string, Location> = { next_token: 'cpu', logits: 'cpu' };
    for (let l = 0; l < spec.numLayers; l++) for (const kv of ['key', 'value'] as const) preferredOutputLocation[presentName(l, kv)] = location;
    const session = await ort.InferenceSession.create(onnxPath, {
      executionProviders: [options.provider],
      graphOptimizationLevel: 'all',
      ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
      preferredOutputLocation,
    });
    const runner = new ResidentRunner(spec, session, options, location, stacks);
    if (stacks) await runner.uploadStacks();
    return runner;
  }

  /**
   * Puts the slot stacks where the provider reads them: an Identity session whose outputs stay on the
   * device. Call again after writing a slot; the previous device copies are released.
   */
  async uploadStacks(): Promise<void> {
    const stacks = this.stacks!;
    const host: Record<string, ort.Tensor> = {};
    for (const p of PROJECTIONS) {
      const s = stacks.stack(p);
      host[loraStackInput(p, 'a')] = new ort.Tensor('float32', s.a, [stacks.entries, s.inSize, stacks.rank]);
      host[loraStackInput(p, 'b')] = new ort.Tensor('float32', s.b, [stacks.entries, stacks.rank, s.outSize]);
    }
    if (this.location === 'cpu') {
      this.stackFeeds = host;
      return;
    }
    const names = Object.keys(host);
    const model: OnnxModel = {
      graphName: 'upload',
      nodes: names.map((n, i) => ({ opType: 'Identity', inputs: [n], outputs: [`${n}.device`], name: `identity_${i}` })),
      inputs: names.map((n) => ({ name: n, dataType: DataType.FLOAT, shape: host[n].dims.map((_, d) => `d${i(n)}_${d}`) })),
      outputs: names.map((n) => ({ name: `${n}.device`, dataType: DataType.FLOAT, shape: host[n].dims.map((_, d) => `o${i(n)}_${d}`) })),
      externalInitializers: [],
      inlineInitializers: [],
      opsets: [{ domain: '', version: 17 }],
    };
    function i(n: string): number {
      return names.indexOf(n);
    }
    const uploader = await ort.InferenceSession.create(encodeModel(model), {
      executionProviders: [this.options.provider],
      preferredOutputLocation: Object.fromEntries(names.map((n) => [`${n}.device`, 'gpu-buffer' as const])),
    });
    const out = await uploader.run(host);
    for (const t of Object.values(this.stackFeeds)) t.dispose();
    this.stackFeeds = Object.fromEntries(names.map((n) => [n, out[`${n}.device`]]));
  }

  /**
   * Greedy generation for a batch of prompts of equal length, each row with its slot. Returns the new
   * token ids per row and, when `withLogits`, each chosen token's log-probability (reads logits back: slow).
   */
  async generate(prompts: number[][], slots: number[], newTokens: number, withLogits = false): Promise<{ tokens: number[][]; logprobs: number[][] }> {
    const B = prompts.length;
    const T = prompts[0].length;
    if (prompts.some((p) => p.length !== T)) throw new Error('ResidentRunner: prompts of one batch must have the same length');
    if (T + newTokens > this.options.maxSequenceLength) throw new Error('ResidentRunner: prompt + new tokens exceed maxSequenceLength');
    const { numKvHeads, headDim, numLayers, vocabSize } = this.spec;
    const S = this.options.maxSequenceLength;
    let past: Record<string, ort.Tensor> = {};
    for (let l = 0; l < numLayers; l++) for (const kv of ['key', 'value'] as const) past[pastName(l, kv)] = new ort.Tensor('float32', new Float32Array(B * numKvHeads * S * headDim), [B, numKvHeads, S, headDim]);
    const loraIndex = this.stacks ? new ort.Tensor('int64', BigInt64Array.from({ length: numLayers * B }, (_, k) => BigInt(Math.floor(k / B) * this.stacks!.slotCount + slots[k % B])), [numLayers, B]) : null;
    const tokens: number[][] = prompts.map(() => []);
    const logprobs: number[][] = prompts.map(() => []);
    let inputIds = prompts.flat();
    let stepLength = T;
    let cached = 0;
    for (let step = 0; step < newTokens; step++) {
      const feeds: Record<string, ort.Tensor> = {
        ...past,
        ...this.stackFeeds,
        ...(loraIndex ? { lora_index: loraIndex } : {}),
        input_ids: new ort.Tensor('int64', BigInt64Array.from(inputIds, BigInt), [B, stepLength]),
        logit_rows: new ort.Tensor('int64', BigInt64Array.from({ length: B }, (_, r) => BigInt(r * stepLength + stepLength - 1)), [B]),
        seqlens_k: new ort.Tensor('int32', new Int32Array(B).fill(cached + stepLength - 1), [B]),
        total_sequence_length: new ort.Tensor('int32', Int32Array.of(cached + stepLength), []),
      };
      const fetches = ['next_token', ...(withLogits ? ['logits'] : []), ...Object.keys(past).map((n) => n.replace('past.', 'present.'))];
      const out = await this.session.run(feeds, fetches);
      if (step > 0) for (const t of Object.values(past)) t.dispose();
      past = {};
      for (let l = 0; l < numLayers; l++) for (const kv of ['key', 'value'] as const) past[pastName(l, kv)] = out[presentName(l, kv)];
      const next = out.next_token.data as BigInt64Array;
      for (let r = 0; r < B; r++) tokens[r].push(Number(next[r]));
      if (withLogits) {
        const logits = out.logits.data as Float32Array;
        for (let r = 0; r < B; r++) {
          const row = logits.subarray(r * vocabSize, (r + 1) * vocabSize);
          let max = -Infinity;
          for (const v of row) max = Math.max(max, v);
          let sum = 0;
          for (const v of row) sum += Math.exp(v - max);
          logprobs[r].push(row[Number(next[r])] - max - Math.log(sum));
        }
      }
      cached += stepLength;
      stepLength = 1;
      inputIds = Array.from(next, Number);
    }
    for (const t of Object.values(past)) t.dispose();
    return { tokens, logprobs };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
