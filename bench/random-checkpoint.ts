/** Writes Llama-shaped checkpoints and PEFT adapters with random weights in HF format, for benchmarks. */
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSafetensors } from '../src/engine/model/safetensors.js';
import { seededRandom } from '../src/engine/sampling.js';
import { PROJECTIONS, hfWeightName, projectionShape } from '../src/engine/model/graph-builder.js';
import { parseModelSpec } from '../src/engine/model/hf-config.js';

export interface RandomModelShape {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  maxPositions: number;
}

function randomTensor(n: number, scale: number, random: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (random() * 2 - 1) * scale;
  return out;
}

export function modelConfig(shape: RandomModelShape): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    hidden_size: shape.hidden,
    intermediate_size: shape.intermediate,
    num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.kvHeads,
    vocab_size: shape.vocab,
    max_position_embeddings: shape.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    tie_word_embeddings: true,
    hidden_act: 'silu',
    bos_token_id: 0,
    eos_token_id: 1,
  };
}

/**
 * Writes config.json + model.safetensors (F32) unless the directory already holds them, streaming tensor by
 * tensor (a 1B-parameter checkpoint is larger than one Node buffer). Returns the parameter count.
 * Every tensor holds its own random values. (A checkpoint tiled from one random block, quicker to write, is not
 * as good for timing: onnxruntime held its identical tensors once, and on m100 our float32 decode ran ~1.9x and
 * int8/int4 ~1.2-1.4x faster on it than on random weights, while llama.cpp read every byte; docs/benchmarks.md.)
 */
export function writeRandomModel(dir: string, shape: RandomModelShape, seed = 1): number {
  const config = modelConfig(shape);
  const spec = parseModelSpec(config);
  const entries: Array<{ name: string; dims: number[]; scale: number }> = [
    { name: 'model.embed_tokens.weight', dims: [shape.vocab, shape.hidden], scale: 0.02 },
  ];
  for (let l = 0; l < shape.layers; l++) {
    entries.push({ name: `model.layers.${l}.input_layernorm.weight`, dims: [shape.hidden], scale: 1 });
    entries.push({ name: `model.layers.${l}.post_attention_layernorm.weight`, dims: [shape.hidden], scale: 1 });
    for (const p of PROJECTIONS) {
      const [inSize, outSize] = projectionShape(spec, p);
      entries.push({ name: hfWeightName(l, p), dims: [outSize, inSize], scale: 1 / Math.sqrt(inSize) });
    }
  }
  entries.push({ name: 'model.norm.weight', dims: [shape.hidden], scale: 1 });
  const params = entries.reduce((n, e) => n + e.dims.reduce((a, b) => a * b, 1), 0);
  if (existsSync(join(dir, 'model.safetensors'))) return params;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const e of entries) {
    const bytes = e.dims.reduce((a, b) => a * b, 1) * 4;
    header[e.name] = { dtype: 'F32', shape: e.dims, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let headerJson = Buffer.from(JSON.stringify(header));
  headerJson = Buffer.concat([headerJson, Buffer.alloc((8 - (headerJson.length % 8)) % 8, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerJson.length));
  const fd = openSync(join(dir, 'model.safetensors'), 'w');
  writeSync(fd, length);
  writeSync(fd, headerJson);
  const random = seededRandom(seed);
  for (const e of entries) {
    const n = e.dims.reduce((a, b) => a * b, 1);
    const data = e.scale === 1 ? new Float32Array(n).fill(1) : randomTensor(n, e.scale, random);
    writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  closeSync(fd);
  return params;
}

/** Writes a PEFT LoRA adapter of the given rank on the given projections of every layer. */
export function writeRandomAdapter(dir: string, shape: RandomModelShape, rank: number, targets: readonly string[] = PROJECTIONS, seed = 2): void {
  const spec = parseModelSpec(modelConfig(shape));
  const random = seededRandom(seed);
  const tensors: Array<{ name: string; dtype: 'F32'; shape: number[]; data: Float32Array }> = [];
  for (let l = 0; l < shape.layers; l++) {
    for (const p of PROJECTIONS.filter((x) => targets.includes(x))) {
      const [inSize, outSize] = projectionShape(spec, p);
      const prefix = `base_model.model.${hfWeightName(l, p).replace(/\.weight$/, '')}`;
      tensors.push({ name: `${prefix}.lora_A.weight`, dtype: 'F32', shape: [rank, inSize], data: randomTensor(rank * inSize, 1 / Math.sqrt(inSize), random) });
      tensors.push({ name: `${prefix}.lora_B.weight`, dtype: 'F32', shape: [outSize, rank], data: randomTensor(outSize * rank, 0.01, random) });
    }
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'adapter_config.json'),
    JSON.stringify(
      { peft_type: 'LORA', r: rank, lora_alpha: 2 * rank, target_modules: targets, bias: 'none', use_dora: false, use_rslora: false, modules_to_save: null },
      null,
      2,
    ),
  );
  writeFileSync(join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors));
}

/** A tokenizer.json whose token i is the word `w<i>`: enough for benchmarks that send token ids and decode text. */
export function writeWordTokenizer(dir: string, vocabSize: number): void {
  const vocab: Record<string, number> = {};
  for (let i = 0; i < vocabSize; i++) vocab[`w${i}`] = i;
  const special = (id: number, content: string) => ({ id, content, special: true, single_word: false, lstrip: false, rstrip: false, normalized: false });
  writeFileSync(
    join(dir, 'tokenizer.json'),
    JSON.stringify({
      version: '1.0',
      added_tokens: [special(0, 'w0'), special(1, 'w1')],
      normalizer: null,
      pre_tokenizer: { type: 'WhitespaceSplit' },
      post_processor: null,
      decoder: null,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        vocab,
        merges: [],
      },
    }),
  );
}
