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
 * rows is fed one dummy row (the runner does that) whose results nothing reads. Most steps have no prompt chunk:
 * an If on `pre.has_rows` then runs only the decoding rows, whose tokens are the whole flat list, so the step
 * pays for no gather, transpose or dummy row (onnxruntime runs every node of a graph, each costing 1-3 us of
 * dispatch even on a one-element tensor; a batch-1 decode step of Qwen2.5-0.5B's shape had ~2,300 of them).
 *
 * LoRA runs on the flat tokens over the adapters this step uses, per layer and group of projections that read
 * the same input (q, k, v; o; gate, up; down): `lora_used.<layer>.<group>.a` [in, parts*used*rank] (each
 * projection's used A side by side, e.g. `q_proj+k_proj+v_proj`) and per projection `lora_used.<layer>.<p>.b`
 * [used*rank, out] (the runner lays them out once per set of used adapters and reuses them while the set
 * stays). delta_p = ((x A) * lora_mask)_p B_p, with `lora_mask` [T, used*rank] (repeated once per part) keeping
 * each token's own adapter's columns: one down product per group, each used adapter's weights read once per
 * step, no padding.
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
/** The used adapters' LoRA A of one layer for a group of projections that read the same input, side by side (packed layout). */
export const usedLoraAName = (layer: number, projections: readonly string[]) => `lora_used.${layer}.${projections.join('+')}.a`;
/** The used adapters' LoRA B of one layer and projection (packed layout). */
export const usedLoraBName = (layer: number, projection: string) => `lora_used.${layer}.${projection}.b`;
export const pastMaskName = (group: AttentionGroup) => `${group}.past_mask`;
export const newMaskName = (group: AttentionGroup) => `${group}.new_mask`;
/** [2] int64: the group's cache capacity and width, where its softmax splits into cached and new positions. */
export const scoreSplitName = (group: AttentionGroup) => `${group}.score_split`;
/** [] bool: whether the step has prompt chunks (the `pre` group has rows); without, the decoding rows are all its tokens. */
export const PRE_HAS_ROWS = 'pre.has_rows';
/**
 * [] bool per group of projections that read the same input: whether an adapter of the step changes any of them
 * (a PEFT adapter often targets only q and v, or the attention projections); without, their LoRA is skipped.
 */
export const loraActiveName = (projections: readonly string[]) => `lora.active.${projections.join('+')}`;
/** A masked-out score: large enough to vanish in softmax, finite so a fully masked padding row stays NaN-free. */
export const MASKED = -1e30;

export function packedInputs(
  spec: ModelSpec,
  float: DataTypeCode,
  /** LoRA inputs per group of projections that read the same input (graph-builder.ts PROJECTION_GROUPS). */
  lora: Array<Array<{ projection: string; inSize: number; outSize: number }>> | null,
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
    { name: PRE_HAS_ROWS, dataType: DataType.BOOL, shape: [] },
  ];
  if (lora) {
    inputs.push({ name: 'lora_mask', dataType: float, shape: ['tokens', 'used_width'] });
    for (const group of lora) inputs.push({ name: loraActiveName(group.map((p) => p.projection)), dataType: DataType.BOOL, shape: [] });
    for (let layer = 0; layer < L; layer++) {
      for (const group of lora) {
        const groupWidth = group.length === 1 ? 'used_width' : `used_width_x${group.length}`;
        inputs.push({
          name: usedLoraAName(
            layer,
            group.map((p) => p.projection),
          ),
          dataType: float,
          shape: [group[0].inSize, groupWidth],
        });
        for (const { projection, outSize } of group) inputs.push({ name: usedLoraBName(layer, projection), dataType: float, shape: ['used_width', outSize] });
      }
    }
  }
  for (const group of ATTENTION_GROUPS) {
    inputs.push(
      { name: groupGatherName(group), dataType: DataType.INT64, shape: [`${group}_rows`, `${group}_width`] },
      { name: pastMaskName(group), dataType: float, shape: [`${group}_rows`, 1, 1, `${group}_capacity`] },
      { name: newMaskName(group), dataType: float, shape: [`${group}_rows`, 1, `${group}_queries`, `${group}_width`] },
      { name: scoreSplitName(group), dataType: DataType.INT64, shape: [2] },
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

  /** `lora_mask` tiled for each LoRA group size above 1 (main graph values: the If branches read them). */
  private readonly tiledLoraMasks = new Map<number, string>();

  constructor(
    private readonly g: Graph,
    private readonly spec: ModelSpec,
    private readonly cosTable: string,
    private readonly sinTable: string,
    private readonly float: DataTypeCode,
    /** Sizes of the groups of projections that share a LoRA down product; null without LoRA inputs. */
    loraGroupSizes: number[] | null,
  ) {
    for (const parts of new Set(loraGroupSizes ?? [])) {
      if (parts > 1) this.tiledLoraMasks.set(parts, g.one('Concat', Array<string>(parts).fill('lora_mask'), { axis: 1 }));
    }
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
   * length by its cos/sin tables, which a step's T tokens may exceed). Returns [T, 1, heads*D]; `flatName`
   * names a reshape back to [T, heads*D] (the keys, which are also a graph output).
   */
  rotary(x: string, heads: number, flatName?: string): string {
    const g = this.g;
    const width = heads * this.spec.headDim;
    const batched = g.one('Reshape', [x, g.int64(`packed.shape.batched.${width}`, [-1, 1, width])]);
    const rotated = g.one('RotaryEmbedding', [batched, this.positions, this.cosTable, this.sinTable], { interleaved: 0, num_heads: heads }, 'com.microsoft');
    if (!flatName) return rotated;
    g.node('Reshape', [rotated, g.int64(`packed.shape.flat.${width}`, [-1, width])]);
    g.nodes[g.nodes.length - 1].outputs[0] = flatName;
    return flatName;
  }

  /** x [T, ...] viewed as the group's padded rows, [rows, group width, ...]. */
  padded(x: string, group: AttentionGroup): string {
    return this.g.one('Gather', [x, groupGatherName(group)], { axis: 0 });
  }

  /** Per-group results (each [rows*width, size], padded) back to the flat token order, [T, size]. */
  unpad(perGroup: Record<AttentionGroup, string>): string {
    const all = this.g.one(
      'Concat',
      ATTENTION_GROUPS.map((group) => perGroup[group]),
      { axis: 0 },
    );
    return this.g.one('Gather', [all, 'unpad'], { axis: 0 });
  }

  /**
   * Attention of one layer: q [T, 1, heads*D] (rotated), k [T, kv*D] (rotated) and v [T, kv*D] -> [T, heads*D].
   * Each group's queries are [rows, KV, groups*w, D] (w its width), keys [rows, KV, D, w], values [rows, KV, w, D].
   * An If on `pre.has_rows` picks the graph: a step without prompt chunks (most steps) runs only the decoding
   * rows, whose tokens are then the flat list itself, without the prompt group's ~20 kernels on a dummy row or
   * the gathers in and out (together about 10% of a batch-1 int4 decode step of Qwen2.5-0.5B's shape).
   */
  attention(layer: number, q: string, k: string, v: string): string {
    const g = this.g;
    const size = this.heads * this.spec.headDim;
    const flat = g.int64(`packed.shape.flat.${size}`, [-1, size]);
    const qScaled = g.one('Mul', [q, this.float === DataType.FLOAT ? this.scale : g.one('Cast', [this.scale], { to: this.float })]);
    const decode = (views: ReturnType<PackedLayout['decodeViews']>) =>
      // [rows, KV, groups, D] is each row's [heads*D] already (width 1).
      g.one('Reshape', [this.groupAttention('dec', layer, views.q4, views.kNewT, views.vNew), flat]);
    const withPrompts = () => {
      const gathered = (x: string) => this.padded(x, 'dec');
      const decOut = decode(this.decodeViews(gathered(qScaled), gathered(k), gathered(v)));
      const pre = this.paddedViews('pre', qScaled, k, v);
      // [rows, KV, groups*w, D] -> [rows, KV, groups, w, D] -> [rows, w, KV, groups, D]
      const out5 = g.one('Reshape', [
        this.groupAttention('pre', layer, pre.q4, pre.kNewT, pre.vNew),
        g.int64('packed.shape.o5', [0, 0, this.heads / this.kvHeads, -1, this.spec.headDim]),
      ]);
      return [this.unpad({ dec: decOut, pre: g.one('Reshape', [g.one('Transpose', [out5], { perm: [0, 3, 1, 2, 4] }), flat]) })];
    };
    const decodeOnly = () => [decode(this.decodeViews(qScaled, k, v))];
    return g.ifElse(PRE_HAS_ROWS, [{ dataType: this.float, shape: ['tokens', size] }], withPrompts, decodeOnly)[0];
  }

  /**
   * The decoding rows' views from their tokens q [rows, ..., NH*D], k and v [rows, ..., KV*D]: with one token
   * each (width 1) they need no transposes, [rows, NH*D] being [rows, KV, groups, D] in memory already.
   */
  private decodeViews(q: string, k: string, v: string) {
    const g = this.g;
    const { headDim: D } = this.spec;
    const KV = this.kvHeads;
    return {
      q4: g.one('Reshape', [q, g.int64('packed.shape.dec.q4', [-1, KV, this.heads / KV, D])]),
      kNewT: g.one('Reshape', [k, g.int64('packed.shape.dec.k', [-1, KV, D, 1])]),
      vNew: g.one('Reshape', [v, g.int64('packed.shape.dec.v', [-1, KV, 1, D])]),
    };
  }

  private paddedViews(group: AttentionGroup, q: string, k: string, v: string) {
    const g = this.g;
    const { headDim: D } = this.spec;
    const KV = this.kvHeads;
    // [rows, w, 1, NH*D] -> [rows, w, KV, groups, D] -> [rows, KV, groups, w, D] -> [rows, KV, groups*w, D]
    const q5 = g.one('Reshape', [this.padded(q, group), g.int64('packed.shape.q5', [0, 0, KV, this.heads / KV, D])]);
    const kvShape = g.int64('packed.shape.kv4', [0, 0, KV, D]);
    return {
      q4: g.one('Reshape', [g.one('Transpose', [q5], { perm: [0, 2, 3, 1, 4] }), g.int64('packed.shape.q4', [0, 0, -1, D])]),
      kNewT: g.one('Transpose', [g.one('Reshape', [this.padded(k, group), kvShape])], { perm: [0, 2, 3, 1] }),
      vNew: g.one('Transpose', [g.one('Reshape', [this.padded(v, group), kvShape])], { perm: [0, 2, 1, 3] }),
    };
  }

  /** Softmax over [cached positions | the step's own positions] and the values they weigh: [rows, KV, groups*w, D]. */
  private groupAttention(group: AttentionGroup, layer: number, q4: string, kNewT: string, vNew: string): string {
    const g = this.g;
    const pastScores = g.one('Add', [g.one('MatMul', [q4, packedPastName(group, layer, 'key')]), pastMaskName(group)]);
    const newScores = g.one('Add', [g.one('MatMul', [q4, kNewT]), newMaskName(group)]);
    const probs = g.one('Softmax', [g.one('Concat', [pastScores, newScores], { axis: 3 })], { axis: -1 });
    const [pastProbs, newProbs] = g.node('Split', [probs, scoreSplitName(group)], { axis: 3 }, 2);
    return g.one('Add', [g.one('MatMul', [pastProbs, packedPastName(group, layer, 'value')]), g.one('MatMul', [newProbs, vNew])]);
  }

  /**
   * LoRA on the flat tokens over the step's used adapters (see the header) for projections that read the same
   * input: one down product x [T, in] times their A side by side [in, parts*used*rank], masked, split per
   * projection and multiplied by each B; [T, in] -> one [T, out] delta per projection.
   */
  loraDeltas(x: string, layer: number, projections: readonly string[]): string[] {
    const g = this.g;
    const down = g.one('Mul', [g.one('MatMul', [x, usedLoraAName(layer, projections)]), this.loraMask(projections.length)]);
    const parts = projections.length === 1 ? [down] : g.node('Split', [down], { axis: -1 }, projections.length);
    return parts.map((part, i) => g.one('MatMul', [part, usedLoraBName(layer, projections[i])]));
  }

  /** `lora_mask` repeated side by side `parts` times, for a group's down product (made once, in the constructor). */
  private loraMask(parts: number): string {
    if (parts === 1) return 'lora_mask';
    const mask = this.tiledLoraMasks.get(parts);
    if (!mask) throw new Error(`PackedLayout: no LoRA mask for groups of ${parts}`);
    return mask;
  }
}
