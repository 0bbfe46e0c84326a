/**
 * Builds the ONNX graph of a Llama-family decoder from its HF config and weights.
 *
 * Shapes: the residual stream is kept 2-D [batch*seq, hidden]; attention uses onnxruntime's fused
 * com.microsoft GroupQueryAttention (rotary inside, per-row seqlens_k, KV buffers of a fixed max length
 * that the caller passes in as past and gets back as present, so one buffer serves as the cache).
 *
 * LoRA (see lora/slot-stacks.ts): for each layer and projection two inputs hold every resident adapter side
 * by side, A [in, width] and B [width, out] (scale folded into B); each row reads its own adapter's block,
 * per row or masked (GraphOptions.loraFormulation). Slot 0 is zeros: the bare base model. Rows of one batch
 * may therefore use different adapters.
 */
import type { ModelSpec } from './hf-config.js';
import { ropeInverseFrequencies } from './hf-config.js';
import { DataType, type OnnxModel } from './onnx-proto.js';
import type { CheckpointWeights } from './weights.js';
import { Float16RangeError, firstOverflow, toFloat16 } from './float16.js';
import { addSamplingNodes, samplingInputs } from './sampling-graph.js';
import { Graph } from './graph.js';
import { PackedLayout, loraActiveName, addGreedySelection, newKvName, packedInputs, packedOutputs } from './packed-attention.js';
import { QuantizedWeights } from './quantized-weights.js';
import type { QuantizeMode } from './quantize.js';

export const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type Projection = (typeof PROJECTIONS)[number];
const QKV: readonly Projection[] = ['q_proj', 'k_proj', 'v_proj'];
const GATE_UP: readonly Projection[] = ['gate_proj', 'up_proj'];
/**
 * The projections that read the same input: quantized, one MatMulNBits each group; on the host path (packed
 * layout) their LoRA down products are one MatMul (packed-attention.ts, loraDeltas).
 */
export const PROJECTION_GROUPS: ReadonlyArray<readonly Projection[]> = [QKV, ['o_proj'], GATE_UP, ['down_proj']];

export interface GraphOptions {
  /** Longest sequence (prompt + generated) a row can hold; sizes the rotary tables. */
  maxSequenceLength: number;
  /**
   * `cache-in-out` (default; the device path): rows [batch, seq], fused GroupQueryAttention with KV buffers of
   * the full length passed in as past and returned as present. `packed` (the host path, packed-attention.ts):
   * one flat list of tokens per step (decoding rows and prompt chunks together), the KV cache a read-only input
   * whose capacity follows the longest row, only the step's new keys and values returned.
   */
  attention?: 'cache-in-out' | 'packed';
  /** Build the LoRA slot inputs. Without them the graph is the bare base model (benchmark baseline). */
  lora: boolean;
  /**
   * How rows read their adapter (lora/slot-stacks.ts). `per-row` (default): per projection, stacks
   * A [layers*slots, in, rank] and B [layers*slots, rank, out], each row's entry gathered by `lora_index`
   * [layers, batch] (= layer*slots + slot); the least arithmetic and few inputs, best on a CPU.
   * `masked`: A [in, slots*rank] and B [slots*rank, out], ((x A) * lora_mask) B over every slot with
   * `lora_mask` [batch, slots*rank]; each adapter's weights are read once per step instead of once per row,
   * best on a GPU where a step is bound by memory traffic.
   */
  loraFormulation?: 'per-row' | 'masked';
  /** Also output `next_token` = argmax of each logits row, so a device-resident loop only reads ids back. */
  argmax?: boolean;
  /**
   * Also choose each row's token inside the graph (greedy, temperature, top-k, top-p; see sampling-graph.ts):
   * outputs `next_token` and `next_logprob`. Excludes `argmax`.
   */
  sampling?: boolean;
  /**
   * Element type of the weights, the activations, the KV cache and the LoRA inputs (default float32). float16
   * halves the bytes a step reads; layer norms keep float32 statistics and `logits` stays float32.
   */
  dtype?: 'float32' | 'float16';
  /**
   * Weight-only quantization of the base's float weights as MatMulNBits / GatherBlockQuantized
   * (quantized-weights.ts; default none). A GPTQ/AWQ checkpoint's packed projections are read as they are.
   */
  quantize?: QuantizeMode;
  /** Weights per quantization block instead of the mode's (quantize.ts MODE_FORMAT). */
  quantizeBlockSize?: number;
}

/** Input and output sizes of each projection, as [in, out]. */
export function projectionShape(spec: ModelSpec, p: Projection): [number, number] {
  const q = spec.numHeads * spec.headDim;
  const kv = spec.numKvHeads * spec.headDim;
  switch (p) {
    case 'q_proj':
      return [spec.hiddenSize, q];
    case 'k_proj':
    case 'v_proj':
      return [spec.hiddenSize, kv];
    case 'o_proj':
      return [q, spec.hiddenSize];
    case 'gate_proj':
    case 'up_proj':
      return [spec.hiddenSize, spec.intermediateSize];
    case 'down_proj':
      return [spec.intermediateSize, spec.hiddenSize];
  }
}

export function hfWeightName(layer: number, p: Projection, kind: 'weight' | 'bias' = 'weight'): string {
  const block = p === 'gate_proj' || p === 'up_proj' || p === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${p}.${kind}`;
}

/** Per-row formulation: one stack per projection holding every layer's slots, [layers*slots, ...]. */
export const loraStackInput = (p: Projection, part: 'a' | 'b') => `lora.${p}.${part}`;
/** Masked formulation: one matrix per layer and projection. */
export const loraInput = (layer: number, p: Projection, part: 'a' | 'b') => `lora.${layer}.${p}.${part}`;
export const pastName = (layer: number, kv: 'key' | 'value') => `past.${layer}.${kv}`;
export const presentName = (layer: number, kv: 'key' | 'value') => `present.${layer}.${kv}`;

/** Receives weight tensors in graph order (float16 as its bit patterns); the caller writes them to external data. */
/**
 * `source`: the checkpoint tensor whose stored bytes are exactly `data` (a float32 graph's unconverted weight), so the
 * caller may reference the checkpoint's bytes instead of writing a copy (model-cache.ts).
 */
export type WeightSink = (name: string, data: Float32Array | Uint16Array | Uint8Array, dims: number[], source?: string) => void;

/**
 * The packed layout's attention; the step's rotated keys and values are outputs for the caller's cache (the nodes
 * that compute them write the outputs directly: an Identity would copy them).
 */
function packedAttention(g: Graph, layout: PackedLayout, layer: number, q: string, k: string, v: string): string {
  const kRotated = layout.rotary(k, layout.kvHeads, newKvName(layer, 'key'));
  const values = g.rename(v, newKvName(layer, 'value'));
  return layout.attention(layer, layout.rotary(q, layout.heads), kRotated, values);
}

/** onnxruntime's GroupQueryAttention: rotary inside, the KV buffers passed in as past and out as present. */
function fusedAttention(
  g: Graph,
  spec: ModelSpec,
  layer: number,
  q: string,
  k: string,
  v: string,
  shapeBT: string,
  flat: (x: string, width: number) => string,
): string {
  const [attn] = g.node(
    'GroupQueryAttention',
    [
      g.one('Reshape', [q, shapeBT]),
      g.one('Reshape', [k, shapeBT]),
      g.one('Reshape', [v, shapeBT]),
      pastName(layer, 'key'),
      pastName(layer, 'value'),
      'seqlens_k',
      'total_sequence_length',
      'rotary.cos',
      'rotary.sin',
    ],
    { num_heads: spec.numHeads, kv_num_heads: spec.numKvHeads, do_rotary: 1, rotary_interleaved: 0 },
    3,
    'com.microsoft',
  );
  const gqa = g.nodes[g.nodes.length - 1];
  gqa.outputs[1] = presentName(layer, 'key');
  gqa.outputs[2] = presentName(layer, 'value');
  return flat(attn, spec.numHeads * spec.headDim);
}

export function buildDecoderGraph(spec: ModelSpec, weights: CheckpointWeights, options: GraphOptions, sink: WeightSink): OnnxModel {
  const g = new Graph();
  const half = options.dtype === 'float16';
  const float = half ? DataType.FLOAT16 : DataType.FLOAT;
  const store = (name: string, data: Float32Array, dims: number[], source?: string) => {
    if (half) {
      const at = firstOverflow(data);
      if (at >= 0) throw new Float16RangeError(weights.modelDir, name, data[at]);
    }
    sink(name, half ? toFloat16(data) : data, dims, half ? undefined : source);
  };
  const weight = (name: string, dims: number[]): string => {
    store(name, weights.read(name, dims), dims, name);
    return name;
  };
  const { hiddenSize: H, numLayers: L, vocabSize: V, headDim: D } = spec;
  const eps = { float: spec.rmsNormEps };

  // Rotary tables, computed as transformers does (float32), stored as external data too.
  const inv = ropeInverseFrequencies(spec);
  const maxSeq = options.maxSequenceLength;
  const cos = new Float32Array(maxSeq * (D / 2));
  const sin = new Float32Array(maxSeq * (D / 2));
  for (let pos = 0; pos < maxSeq; pos++) {
    for (let i = 0; i < D / 2; i++) {
      const angle = Math.fround(pos * inv[i]);
      cos[pos * (D / 2) + i] = Math.cos(angle);
      sin[pos * (D / 2) + i] = Math.sin(angle);
    }
  }
  store('rotary.cos', cos, [maxSeq, D / 2]);
  store('rotary.sin', sin, [maxSeq, D / 2]);

  const batchSeq = g.one('Shape', ['input_ids']);
  const shapeBT = g.one('Concat', [batchSeq, g.int64('const.minus1', [-1])], { axis: 0 });
  const flatShapes = new Map<number, string>();
  const flat = (x: string, width: number) => {
    if (!flatShapes.has(width)) flatShapes.set(width, g.int64(`shape.flat.${width}`, [-1, width]));
    return g.one('Reshape', [x, flatShapes.get(width)!]);
  };

  const quantized = QuantizedWeights.create(g, weights, options.quantize ?? 'none', half, sink, options.quantizeBlockSize);
  const embeddings =
    quantized?.embedding('input_ids', 'model.embed_tokens.weight', V, H) ??
    g.one('Gather', [weight('model.embed_tokens.weight', [V, H]), 'input_ids'], { axis: 0 });
  let hidden = flat(embeddings, H);

  const packed = options.attention === 'packed';
  if (packed && (options.loraFormulation || options.sampling || options.argmax))
    throw new Error('GraphOptions: the packed layout has its own LoRA formulation and greedy selection only');
  const layout = packed ? new PackedLayout(g, spec, 'rotary.cos', 'rotary.sin', float, options.lora ? PROJECTION_GROUPS.map((ps) => ps.length) : null) : null;
  const masked = options.loraFormulation === 'masked';
  // Masked: each token's row of lora_mask, [batch, width] -> [batch*seq, width], once for the whole graph.
  let loraMask: string | null = null;
  if (options.lora && masked) {
    const width = g.one('Slice', [g.one('Shape', ['lora_mask']), g.int64('const.one', [1]), g.int64('const.two', [2])]);
    const perToken = g.one('Expand', [g.one('Unsqueeze', ['lora_mask', g.int64('const.axis1', [1])]), g.one('Concat', [batchSeq, width], { axis: 0 })]);
    loraMask = g.one('Reshape', [perToken, g.one('Concat', ['const.minus1', width], { axis: 0 })]);
  }
  // Per row: each row's A [in, rank] and B [rank, out], gathered from the stacks by lora_index[layer].
  const layerIndex = new Map<number, string>();
  const perRowDelta = (x: string, layer: number, p: Projection): string => {
    if (!layerIndex.has(layer)) layerIndex.set(layer, g.one('Gather', ['lora_index', g.int64(`const.layer.${layer}`, [layer], [])], { axis: 0 }));
    const outSize = projectionShape(spec, p)[1];
    const a = g.one('Gather', [loraStackInput(p, 'a'), layerIndex.get(layer)!], { axis: 0 });
    const b = g.one('Gather', [loraStackInput(p, 'b'), layerIndex.get(layer)!], { axis: 0 });
    return flat(g.one('MatMul', [g.one('MatMul', [g.one('Reshape', [x, shapeBT]), a]), b]), outSize);
  };

  /** Each projection's LoRA delta for the step (the packed layout computes a group's down products as one). */
  const loraDeltas = (x: string, layer: number, ps: readonly Projection[]): string[] => {
    if (layout) return layout.loraDeltas(x, layer, ps);
    return ps.map((p) => {
      if (!loraMask) return perRowDelta(x, layer, p);
      const down = g.one('Mul', [g.one('MatMul', [x, loraInput(layer, p, 'a')]), loraMask]);
      return g.one('MatMul', [down, loraInput(layer, p, 'b')]);
    });
  };
  const bias = (layer: number, p: Projection): string | undefined =>
    spec.qkvBias && (p === 'q_proj' || p === 'k_proj' || p === 'v_proj') ? weight(hfWeightName(layer, p, 'bias'), [projectionShape(spec, p)[1]]) : undefined;
  /**
   * x times the base projections `ps` (which read the same input: q, k, v; gate, up), plus their biases, as a
   * function that splits them apart (so an If branch can run the split). Quantized, one MatMulNBits over their
   * rows stacked, split after (fewer, larger kernels: 3-11% faster batch-1 decode of the served m100 int8 graph,
   * docs/benchmarks.md); float, one Gemm each (the float weights stay where the checkpoint has them).
   */
  const stackedBase = (x: string, layer: number, ps: readonly Projection[]): (() => string[]) => {
    const inSize = projectionShape(spec, ps[0])[0];
    const rows = ps.map((p) => projectionShape(spec, p)[1]);
    const biases = ps.map((p) => bias(layer, p));
    if (ps.length === 1) {
      const base =
        quantized?.linear(x, [hfWeightName(layer, ps[0])], rows, inSize, biases[0]) ??
        g.one('Gemm', [x, weight(hfWeightName(layer, ps[0]), [rows[0], inSize]), ...(biases[0] ? [biases[0]] : [])], { transB: 1 });
      return () => [base];
    }
    const fused = quantized?.linear(
      x,
      ps.map((p) => hfWeightName(layer, p)),
      rows,
      inSize,
    );
    if (!fused) {
      const each = ps.map((p) => stackedBase(x, layer, [p])()[0]);
      return () => each;
    }
    const sizes = g.int64(`split.${rows.join('.')}`, rows);
    return () =>
      g.node('Split', [fused, sizes], { axis: -1 }, ps.length).map((part, i) => {
        const b = biases[i];
        return b ? g.one('Add', [part, b]) : part;
      });
  };
  /**
   * The projections `ps` of x plus the step's LoRA deltas, then `finish` on them (the ops that read them: the
   * activation, the residual norm). On the host path an If on `lora.active.<group>` runs the LoRA products only
   * in steps where an adapter in use changes one of these projections; the split and `finish` run in both
   * branches, so neither branch only copies an outer value (onnxruntime wants a node between the two).
   * `widths`: of finish's results.
   */
  const projections = (x: string, layer: number, ps: readonly Projection[], widths: number[], finish: (ys: string[]) => string[] = (ys) => ys): string[] => {
    const bases = stackedBase(x, layer, ps);
    const plain = () => finish(bases());
    if (!options.lora) return plain();
    const withDeltas = () => {
      const deltas = loraDeltas(x, layer, ps);
      return finish(bases().map((base, i) => g.one('Add', [base, deltas[i]])));
    };
    if (!layout) return withDeltas();
    const outputs = widths.map((width) => ({ dataType: float, shape: ['tokens', width] }));
    return g.ifElse(loraActiveName(ps), outputs, withDeltas, plain);
  };
  /** SkipSimplifiedLayerNormalization: [norm(x + skip) * weight, x + skip]. */
  const skipNorm = (x: string, skip: string, normWeight: string): string[] => {
    const [out, , , sum] = g.node('SkipSimplifiedLayerNormalization', [x, skip, normWeight], { epsilon: eps }, 4, 'com.microsoft');
    return [out, sum];
  };

  // Qwen3's q_norm / k_norm: an RMSNorm over each head ([tokens, heads*D] viewed as [tokens, heads, D]), before rotary.
  const headNorm = (x: string, layer: number, which: 'q_norm' | 'k_norm', heads: number): string => {
    if (!spec.qkNorm) return x;
    const perHead = g.one('Reshape', [x, g.int64('shape.heads', [0, -1, D])]);
    const normedHeads = g.one('SimplifiedLayerNormalization', [perHead, weight(`model.layers.${layer}.self_attn.${which}.weight`, [D])], {
      axis: -1,
      epsilon: eps,
      stash_type: 1,
    });
    return flat(normedHeads, heads * D);
  };

  let normed = g.one('SimplifiedLayerNormalization', [hidden, weight('model.layers.0.input_layernorm.weight', [H])], { axis: -1, epsilon: eps, stash_type: 1 });
  for (let layer = 0; layer < L; layer++) {
    const [qProj, kProj, v] = projections(
      normed,
      layer,
      QKV,
      QKV.map((p) => projectionShape(spec, p)[1]),
    );
    const q = headNorm(qProj, layer, 'q_norm', spec.numHeads);
    const k = headNorm(kProj, layer, 'k_norm', spec.numKvHeads);
    const attn2 = layout ? packedAttention(g, layout, layer, q, k, v) : fusedAttention(g, spec, layer, q, k, v, shapeBT, flat);
    const postNorm = weight(`model.layers.${layer}.post_attention_layernorm.weight`, [H]);
    const residual = hidden;
    const [mlpIn, attnSum] = projections(attn2, layer, ['o_proj'], [H, H], ([o]) => skipNorm(o, residual, postNorm));
    const [act] = projections(mlpIn, layer, GATE_UP, [spec.intermediateSize], ([gate, up]) => [
      g.one('Mul', [g.one('Mul', [gate, g.one('Sigmoid', [gate])]), up]),
    ]);
    const nextNorm = weight(layer + 1 < L ? `model.layers.${layer + 1}.input_layernorm.weight` : 'model.norm.weight', [H]);
    [normed, hidden] = projections(act, layer, ['down_proj'], [H, H], ([down]) => skipNorm(down, attnSum, nextNorm));
  }
  const rows = g.one('Gather', [normed, 'logit_rows'], { axis: 0 });
  const lmHeadName = spec.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  if (!quantized?.lmHead(rows, lmHeadName, V, H)) g.node('Gemm', [rows, spec.tieWordEmbeddings ? lmHeadName : weight(lmHeadName, [V, H])], { transB: 1 });
  if (half) g.node('Cast', [g.nodes[g.nodes.length - 1].outputs[0]], { to: DataType.FLOAT });
  g.nodes[g.nodes.length - 1].outputs[0] = 'logits';

  const kvShape = ['batch', spec.numKvHeads, 'max_seq', D];
  const inputs: OnnxModel['inputs'] = packed
    ? packedInputs(
        spec,
        float,
        options.lora
          ? PROJECTION_GROUPS.map((ps) => ps.map((p) => ({ projection: p, inSize: projectionShape(spec, p)[0], outSize: projectionShape(spec, p)[1] })))
          : null,
      )
    : [
        { name: 'input_ids', dataType: DataType.INT64, shape: ['batch', 'seq'] },
        { name: 'logit_rows', dataType: DataType.INT64, shape: ['rows'] },
        { name: 'seqlens_k', dataType: DataType.INT32, shape: ['batch'] },
        { name: 'total_sequence_length', dataType: DataType.INT32, shape: [] },
      ];
  const outputs: OnnxModel['outputs'] = [{ name: 'logits', dataType: DataType.FLOAT, shape: ['rows', V] }];
  if (packed) {
    addGreedySelection(g, 'logits');
    outputs.push(...packedOutputs(spec, float));
  }
  if (options.argmax && options.sampling) throw new Error('GraphOptions: argmax and sampling exclude each other');
  if (options.sampling) {
    const { token, logprob } = addSamplingNodes(g, 'logits');
    g.node('Identity', [token]);
    g.nodes[g.nodes.length - 1].outputs[0] = 'next_token';
    g.node('Identity', [logprob]);
    g.nodes[g.nodes.length - 1].outputs[0] = 'next_logprob';
    inputs.push(...samplingInputs());
    outputs.push({ name: 'next_token', dataType: DataType.INT64, shape: ['rows'] }, { name: 'next_logprob', dataType: DataType.FLOAT, shape: ['rows'] });
  }
  if (options.argmax) {
    g.node('ArgMax', ['logits'], { axis: -1, keepdims: 0 });
    g.nodes[g.nodes.length - 1].outputs[0] = 'next_token';
    outputs.push({ name: 'next_token', dataType: DataType.INT64, shape: ['rows'] });
  }
  for (let layer = 0; layer < L && !packed; layer++) {
    for (const kv of ['key', 'value'] as const) {
      inputs.push({ name: pastName(layer, kv), dataType: float, shape: kvShape });
      outputs.push({ name: presentName(layer, kv), dataType: float, shape: kvShape });
    }
  }
  if (options.lora) {
    if (masked) inputs.push({ name: 'lora_mask', dataType: float, shape: ['batch', 'lora_width'] });
    else if (!packed) inputs.push({ name: 'lora_index', dataType: DataType.INT64, shape: [L, 'batch'] });
    for (const p of PROJECTIONS) {
      const [inSize, outSize] = projectionShape(spec, p);
      if (packed) continue; // packedInputs declared them
      if (!masked) {
        inputs.push({ name: loraStackInput(p, 'a'), dataType: float, shape: ['lora_entries', inSize, 'lora_rank'] });
        inputs.push({ name: loraStackInput(p, 'b'), dataType: float, shape: ['lora_entries', 'lora_rank', outSize] });
        continue;
      }
      for (let layer = 0; layer < L; layer++) {
        inputs.push({ name: loraInput(layer, p, 'a'), dataType: float, shape: [inSize, 'lora_width'] });
        inputs.push({ name: loraInput(layer, p, 'b'), dataType: float, shape: ['lora_width', outSize] });
      }
    }
  }
  return {
    graphName: `${spec.architecture}-decoder`,
    nodes: g.nodes,
    inputs,
    outputs,
    externalInitializers: [],
    inlineInitializers: g.inline,
    opsets: [
      { domain: '', version: 17 },
      { domain: 'com.microsoft', version: 1 },
    ],
  };
}
