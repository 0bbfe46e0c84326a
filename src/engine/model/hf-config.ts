/**
 * Reads a Hugging Face config.json into the shape the graph builder needs. Supports the Llama family
 * (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM); anything else is refused
 * with a reason that names the architecture and what is supported.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM'] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

export interface RopeScaling {
  type: 'default' | 'linear' | 'llama3';
  factor: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositions?: number;
}

export interface ModelSpec {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  tieWordEmbeddings: boolean;
  /** Qwen2 has biases on q/k/v projections. */
  qkvBias: boolean;
  /** Qwen3: an RMSNorm over each head of q and of k (`q_norm`, `k_norm`, weight [head_dim]) before rotary. */
  qkNorm: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

export class ModelConfigError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'ModelConfigError';
  }
}

export function readModelSpec(modelDir: string): ModelSpec {
  const file = join(modelDir, 'config.json');
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ModelConfigError(file, `cannot read or parse: ${(e as Error).message}`);
  }
  return parseModelSpec(raw, file);
}

export function parseModelSpec(raw: Record<string, unknown>, file = 'config.json'): ModelSpec {
  const architectures = raw.architectures as string[] | undefined;
  const architecture = architectures?.find((a): a is Architecture => (SUPPORTED_ARCHITECTURES as readonly string[]).includes(a));
  if (!architecture) {
    throw new ModelConfigError(
      file,
      `architecture ${architectures?.length ? architectures.join(', ') : '(none: config.json has no "architectures")'} is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`,
    );
  }
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (!Number.isInteger(v) || (v as number) <= 0) throw new ModelConfigError(file, `${key} must be a positive integer, got ${JSON.stringify(raw[key])}`);
    return v as number;
  };
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  const headDim = raw.head_dim == null ? hiddenSize / numHeads : int('head_dim');
  if (!Number.isInteger(headDim))
    throw new ModelConfigError(file, `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}; set head_dim`);
  if (numHeads % numKvHeads !== 0) throw new ModelConfigError(file, `num_attention_heads ${numHeads} must be a multiple of num_key_value_heads ${numKvHeads}`);
  // Rotary splits each head in halves. (The device path's fused attention also needs a multiple of 16: start-runner.ts.)
  if (headDim % 2 !== 0) throw new ModelConfigError(file, `head_dim ${headDim} is odd; rotary embeddings need an even head_dim`);
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') throw new ModelConfigError(file, `hidden_act ${JSON.stringify(act)} is not supported (only silu)`);
  if (raw.mlp_bias === true) throw new ModelConfigError(file, 'mlp_bias true is not supported');
  if (architecture !== 'Qwen2ForCausalLM' && raw.attention_bias === true)
    throw new ModelConfigError(file, `attention_bias true is not supported for ${architecture}`);
  if (raw.sliding_window != null && raw.use_sliding_window === true) {
    throw new ModelConfigError(file, 'sliding-window attention is not supported');
  }
  const layerTypes = Array.isArray(raw.layer_types) ? (raw.layer_types as unknown[]) : [];
  const otherLayer = layerTypes.find((type) => type !== 'full_attention');
  if (otherLayer !== undefined) throw new ModelConfigError(file, `layer_types ${JSON.stringify(otherLayer)} is not supported (only full_attention)`);
  const ropeParameters = (raw.rope_parameters ?? {}) as Record<string, unknown>;
  const ropeTheta = Number(raw.rope_theta ?? ropeParameters.rope_theta ?? 10000);
  if (!(ropeTheta > 0)) throw new ModelConfigError(file, `rope_theta must be positive, got ${ropeTheta}`);
  const eps = Number(raw.rms_norm_eps ?? 1e-6);
  if (!(eps > 0)) throw new ModelConfigError(file, `rms_norm_eps must be positive, got ${raw.rms_norm_eps}`);
  const eos = raw.eos_token_id;
  const eosTokenIds = Array.isArray(eos) ? (eos as number[]) : typeof eos === 'number' ? [eos] : [];
  return {
    architecture,
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: int('vocab_size'),
    maxPositions: int('max_position_embeddings', 2048),
    rmsNormEps: eps,
    ropeTheta,
    ropeScaling: parseRopeScaling(file, (raw.rope_scaling ?? raw.rope_parameters) as Record<string, unknown> | undefined),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    qkvBias: architecture === 'Qwen2ForCausalLM' ? raw.attention_bias !== false : false,
    qkNorm: architecture === 'Qwen3ForCausalLM',
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : null,
    eosTokenIds,
  };
}

function parseRopeScaling(file: string, raw: Record<string, unknown> | undefined): RopeScaling {
  const type = (raw?.rope_type ?? raw?.type ?? 'default') as string;
  if (type === 'default') return { type: 'default', factor: 1 };
  const factor = Number(raw?.factor);
  if (!(factor > 0)) throw new ModelConfigError(file, `rope scaling factor must be positive, got ${raw?.factor}`);
  if (type === 'linear') return { type, factor };
  if (type === 'llama3') {
    return {
      type,
      factor,
      lowFreqFactor: Number(raw?.low_freq_factor ?? 1),
      highFreqFactor: Number(raw?.high_freq_factor ?? 4),
      originalMaxPositions: Number(raw?.original_max_position_embeddings ?? 8192),
    };
  }
  throw new ModelConfigError(file, `rope scaling type ${JSON.stringify(type)} is not supported (default, linear, llama3)`);
}

/** The rotary inverse frequencies, computed in float32 steps the way transformers does. */
export function ropeInverseFrequencies(spec: ModelSpec): Float32Array {
  const dim = spec.headDim;
  const f = Math.fround;
  const inv = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = f(1 / f(Math.pow(spec.ropeTheta, f((2 * i) / dim))));
  const s = spec.ropeScaling;
  if (s.type === 'linear') for (let i = 0; i < inv.length; i++) inv[i] = f(inv[i] / s.factor);
  if (s.type === 'llama3') {
    const lowWavelen = s.originalMaxPositions! / s.lowFreqFactor!;
    const highWavelen = s.originalMaxPositions! / s.highFreqFactor!;
    for (let i = 0; i < inv.length; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] = f(inv[i] / s.factor);
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositions! / wavelen - s.lowFreqFactor!) / (s.highFreqFactor! - s.lowFreqFactor!);
        inv[i] = f((1 - smooth) * (inv[i] / s.factor) + smooth * inv[i]);
      }
    }
  }
  return inv;
}
