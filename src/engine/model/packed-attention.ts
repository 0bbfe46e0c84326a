/**
 * The packed layout of the decoder graph (the host path): one forward run takes every decoding row's next
 * token and chunks of prompts in prefill together, as one flat list of tokens [T]. Projections, norms and the
 * MLP run on that flat list, so their cost follows the tokens of the step. Attention needs each token's row;
 * it runs in two groups, each a padded [rows, width] view gathered from the flat list:
 *
 * - `dec`: the decoding rows, one token each (width 1, no padding at all);
 * - `pre`: the rows with prompt chunks, right-padded to the longest chunk of the step.
 *
 * Splitting the two keeps a long prompt chunk from padding every decoding row to its width. A group with no
 * rows is fed one dummy row (the runner does that) whose results nothing reads.
 *
 * LoRA runs on the flat tokens over the adapters this step uses: per layer and projection `lora_used.<layer>.<p>.a`
 * [in, used*rank] and `.b` [used*rank, out], the used adapters side by side (the runner lays them out once per set
 * of used adapters and reuses them while the set stays, so a decode step copies no adapter weights), and
 * delta = ((x A) * lora_mask) B with `lora_mask` [T, used*rank] keeping each token's own adapter's columns. Each
 * used adapter's weights are read once per step, in two plain 2-D products, and no padding is involved.
 *
 * KV cache: owned by the caller in host memory, read-only inputs here (onnxruntime-node reads CPU inputs in
 * place, while every output comes back as a new copy). Per layer and group `past.<group>.<layer>.key`
 * [rows, kv_heads, head_dim, capacity] (keys stored transposed, so scores are a plain MatMul) and `.value`
 * [rows, kv_heads, capacity, head_dim]; the capacity follows the longest row (see host-kv-cache.ts). The step's
 * own keys (after rotary) and values come out as `new.<layer>.key|value` [T, kv_heads*head_dim], and the caller
 * writes them into its cache. Attention is softmax over [cached positions | the step's own positions]:
 * `<group>.past_mask` [rows, 1, 1, capacity] and `<group>.new_mask` [rows, 1, groups*width, width] are additive
 * masks (0 or a large negative) that hide unused cache positions, padding and future tokens.
 */
import type { ModelSpec } from './hf-config.js';
import type { Graph } from './graph.js';
import { DataType, type DataTypeCode, type OnnxModel } from './onnx-proto.js';

export const ATTENTION_GROUPS = ['dec', 'pre'] as const;
export type AttentionGroup = (typeof ATTENTION_GROUPS)[number];

export const packedPastName = (group: AttentionGroup, layer: number, kv: 'key' | 'value') => `past.${group}.${layer}.${kv}`;
export const newKvName = (layer: number, kv: 'key' | 'value') => `new.${layer}.${kv}`;
/** [rows, width] int64: the flat token index of each padded position of the group (padding: any valid index). */
export const groupGatherName = (group: AttentionGroup) => `${group}.gather`;
/** The used adapters' LoRA matrices of one layer and projection (packed layout). */
export const usedLoraName = (layer: number, projection: string, part: 'a' | 'b') => `lora_used.${layer}.${projection}.${part}`;
export const pastMaskName = (group: AttentionGroup) => `${group}.past_mask`;
export const newMaskName = (group: AttentionGroup) => `${group}.new_mask`;
/** A masked-out score: large enough to vanish in softmax, finite so a fully masked padding row stays NaN-free. */
export const MASKED = -1e30;

export function packedInputs(
  spec: ModelSpec,
  float: DataTypeCode,
  lora: Array<{ projection: string; inSize: number; outSize: number }> | null,
): OnnxModel['inputs'] {
  const { numKvHeads: KV, headDim: D, numLayers: L } = spec;
  const inputs: OnnxModel['inputs'] = [
    { name: 'input_ids', dataType: DataType.INT64, shape: ['tokens'] },
    { name: 'positions', dataType: DataType.INT64, shape: ['tokens'] },
    /** [tokens]: where each flat token sits in Concat(dec rows*width, pre rows*width). */
    { name: 'unpad', dataType: DataType.INT64, shape: ['tokens'] },
    { name: 'logit_rows', dataType: DataType.INT64, shape: ['rows'] },
    /** [wanted]: which of the logits rows come back whole (the others only as their argmax). */
    { name: 'logit_wanted', dataType: DataType.INT64, shape: ['wanted'] },
    /** [k]: the logits rows whose chosen token's log-probability comes back (addGreedySelection). */
    { name: 'logprob_rows', dataType: DataType.INT64, shape: ['logprob_rows'] },
    /** [1]: the vocabulary size, or 1 when no row wants a log-probability. */
    { name: 'logprob_width', dataType: DataType.INT64, shape: [1] },
  ];
  if (lora) {
    inputs.push({ name: 'lora_mask', dataType: float, shape: ['tokens', 'used_width'] });
    for (let layer = 0; layer < L; layer++) {
      for (const { projection, inSize, outSize } of lora) {
        inputs.push(
          { name: usedLoraName(layer, projection, 'a'), dataType: float, shape: [inSize, 'used_width'] },
          { name: usedLoraName(layer, projection, 'b'), dataType: float, shape: ['used_width', outSize] },
        );
      }
    }
  }
  for (const group of ATTENTION_GROUPS) {
    inputs.push(
      { name: groupGatherName(group), dataType: DataType.INT64, shape: [`${group}_rows`, `${group}_width`] },
      { name: pastMaskName(group), dataType: float, shape: [`${group}_rows`, 1, 1, `${group}_capacity`] },
      { name: newMaskName(group), dataType: float, shape: [`${group}_rows`, 1, `${group}_queries`, `${group}_width`] },
    );
    for (let layer = 0; layer < L; layer++) {
      inputs.push(
        { name: packedPastName(group, layer, 'key'), dataType: float, shape: [`${group}_rows`, KV, D, `${group}_capacity`] },
        { name: packedPastName(group, layer, 'value'), dataType: float, shape: [`${group}_rows`, KV, `${group}_capacity`, D] },
      );
    }
  }
  return inputs;
}

/**
 * Greedy selection in the graph, so rows that only need their argmax do not bring their logits back:
 * `next_token` [rows] for every logits row, `next_logprob` [k] the chosen token's log-probability for the logits
 * rows listed in `logprob_rows` [k] (the greedy rows whose request asked for log-probabilities), and
 * `wanted_logits` [wanted, vocab], the rows of `logit_wanted` [wanted] (rows sampled on the host, constrained, or
 * with top log-probabilities).
 *
 * A log-probability needs a log-sum-exp over the whole vocabulary (about 0.8 ms per row for 152k entries on the
 * 2-core VM, ~6% of an int4 batch-8 decode step), so only the rows that want one pay for it. The reduction runs
 * over the first `logprob_width` [1] columns: the vocabulary size, or 1 when no row wants a log-probability
 * (`logprob_rows` is then one unread row, because onnxruntime's reductions mis-shape an empty input).
 */
export function addGreedySelection(g: Graph, logits: string): void {
  const lastAxis = g.int64('packed.last_axis', [-1]);
  const best = g.one('ArgMax', [logits], { axis: -1, keepdims: 1 });
  const rows = g.one('Gather', [logits, 'logprob_rows'], { axis: 0 });
  const columns = g.one('Slice', [rows, g.int64('packed.slice_start', [0]), 'logprob_width', lastAxis]);
  const picked = g.one('GatherElements', [rows, g.one('Gather', [best, 'logprob_rows'], { axis: 0 })], { axis: -1 });
  const logprob = g.one('Sub', [picked, g.one('ReduceLogSumExp', [columns], { axes: [-1], keepdims: 1 })]);
  const named = (op: string, inputs: string[], name: string, attributes?: Record<string, number>) => {
    g.node(op, inputs, attributes);
    g.nodes[g.nodes.length - 1].outputs[0] = name;
  };
  named('Squeeze', [best, lastAxis], 'next_token');
  named('Squeeze', [logprob, lastAxis], 'next_logprob');
  named('Gather', [logits, 'logit_wanted'], 'wanted_logits', { axis: 0 });
}

export function packedOutputs(spec: ModelSpec, float: DataTypeCode): OnnxModel['outputs'] {
  const outputs: OnnxModel['outputs'] = [
    { name: 'next_token', dataType: DataType.INT64, shape: ['rows'] },
    { name: 'next_logprob', dataType: DataType.FLOAT, shape: ['logprob_rows'] },
    { name: 'wanted_logits', dataType: DataType.FLOAT, shape: ['wanted', spec.vocabSize] },
  ];
  for (let layer = 0; layer < spec.numLayers; layer++) {
    for (const kv of ['key', 'value'] as const)
      outputs.push({ name: newKvName(layer, kv), dataType: float, shape: ['tokens', spec.numKvHeads * spec.headDim] });
  }
  return outputs;
}

/** Graph pieces shared by every layer of a packed graph. */
export class PackedLayout {
  private readonly positions: string;
  private readonly scale: string;

  readonly heads: number;
  readonly kvHeads: number;

  constructor(
    private readonly g: Graph,
    private readonly spec: ModelSpec,
    private readonly cosTable: string,
    private readonly sinTable: string,
    private readonly float: DataTypeCode,
  ) {
    this.heads = spec.numHeads;
    this.kvHeads = spec.numKvHeads;
    this.positions = g.one('Unsqueeze', ['positions', g.int64('packed.axis1', [1])]); // [T, 1]
    const scaleValue = new Float32Array([1 / Math.sqrt(spec.headDim)]);
    this.scale = 'packed.scale';
    g.inline.push({ name: this.scale, dataType: DataType.FLOAT, dims: [], raw: new Uint8Array(scaleValue.buffer) });
  }

  /**
   * HF's rotate_half rotary on [T, heads*D] with each token's position: onnxruntime's fused RotaryEmbedding
   * (non-interleaved halves), each packed token a batch entry of one position (the op bounds a sequence's
   * length by its cos/sin tables, which a step's T tokens may exceed).
   */
  rotary(x: string, heads: number): string {
    const g = this.g;
    const width = heads * this.spec.headDim;
    const batched = g.one('Reshape', [x, g.int64(`packed.shape.batched.${width}`, [-1, 1, width])]);
    const rotated = g.one('RotaryEmbedding', [batched, this.positions, this.cosTable, this.sinTable], { interleaved: 0, num_heads: heads }, 'com.microsoft');
    return g.one('Reshape', [rotated, g.int64(`packed.shape.flat.${width}`, [-1, width])]);
  }

  /** x [T, width] viewed as the group's padded rows, [rows, group width, width]. */
  padded(x: string, group: AttentionGroup): string {
    return this.g.one('Gather', [x, groupGatherName(group)], { axis: 0 });
  }

  /** Per-group results [rows, width, size] back to the flat token order, [T, size]. */
  unpad(perGroup: Record<AttentionGroup, string>, size: number): string {
    const g = this.g;
    const flat = g.int64(`packed.shape.flat.${size}`, [-1, size]);
    const all = g.one(
      'Concat',
      ATTENTION_GROUPS.map((group) => g.one('Reshape', [perGroup[group], flat])),
      { axis: 0 },
    );
    return g.one('Gather', [all, 'unpad'], { axis: 0 });
  }

  /** Attention of one layer: q [T, heads*D] and k, v [T, kv*D] (q and k already rotated) -> [T, heads*D]. */
  attention(layer: number, q: string, k: string, v: string): string {
    const g = this.g;
    const { numHeads: NH, numKvHeads: KV, headDim: D } = this.spec;
    const groups = NH / KV;
    const qScaled = g.one('Mul', [q, this.float === DataType.FLOAT ? this.scale : g.one('Cast', [this.scale], { to: this.float })]);
    const perGroup = {} as Record<AttentionGroup, string>;
    for (const group of ATTENTION_GROUPS) {
      // [rows, w, NH*D] -> [rows, w, KV, groups, D] -> [rows, KV, groups, w, D] -> [rows, KV, groups*w, D]
      const q5 = g.one('Reshape', [this.padded(qScaled, group), g.int64('packed.shape.q5', [0, 0, KV, groups, D])]);
      const q4 = g.one('Reshape', [g.one('Transpose', [q5], { perm: [0, 2, 3, 1, 4] }), g.int64('packed.shape.q4', [0, 0, -1, D])]);
      const kvShape = g.int64('packed.shape.kv4', [0, 0, KV, D]);
      const kNewT = g.one('Transpose', [g.one('Reshape', [this.padded(k, group), kvShape])], { perm: [0, 2, 3, 1] }); // [rows, KV, D, w]
      const vNew = g.one('Transpose', [g.one('Reshape', [this.padded(v, group), kvShape])], { perm: [0, 2, 1, 3] }); // [rows, KV, w, D]
      const pastScores = g.one('Add', [g.one('MatMul', [q4, packedPastName(group, layer, 'key')]), pastMaskName(group)]);
      const newScores = g.one('Add', [g.one('MatMul', [q4, kNewT]), newMaskName(group)]);
      const probs = g.one('Softmax', [g.one('Concat', [pastScores, newScores], { axis: 3 })], { axis: -1 });
      const capacity = g.one('Shape', [pastScores], { start: 3, end: 4 });
      const [pastProbs, newProbs] = g.node(
        'Split',
        [probs, g.one('Concat', [capacity, g.one('Shape', [newScores], { start: 3, end: 4 })], { axis: 0 })],
        { axis: 3 },
        2,
      );
      const out = g.one('Add', [g.one('MatMul', [pastProbs, packedPastName(group, layer, 'value')]), g.one('MatMul', [newProbs, vNew])]);
      // [rows, KV, groups*w, D] -> [rows, KV, groups, w, D] -> [rows, w, KV, groups, D]
      const out5 = g.one('Reshape', [out, g.int64('packed.shape.o5', [0, 0, groups, -1, D])]);
      perGroup[group] = g.one('Transpose', [out5], { perm: [0, 3, 1, 2, 4] });
    }
    return this.unpad(perGroup, NH * D);
  }

  /** LoRA on the flat tokens over the step's used adapters (see the header); [T, in] -> [T, out]. */
  loraDelta(x: string, layer: number, projection: string): string {
    const g = this.g;
    const down = g.one('Mul', [g.one('MatMul', [x, usedLoraName(layer, projection, 'a')]), 'lora_mask']);
    return g.one('MatMul', [down, usedLoraName(layer, projection, 'b')]);
  }
}
