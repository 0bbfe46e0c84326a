/**
 * Reads and validates a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors)
 * against the base model, and returns its weights ready for a device slot: A transposed to [in, r],
 * B transposed to [r, out] with the PEFT scale folded in. Adapter files are untrusted: every problem is
 * refused with a reason that names the file.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelSpec } from '../model/hf-config.js';
import { PROJECTIONS, projectionShape, type Projection } from '../model/graph-builder.js';
import { readSafetensorsHeader, readTensorAsFloat32 } from '../model/safetensors.js';
import { MAX_LORA_ALPHA, patternMapProblem, readUntrustedJson, UntrustedInputError } from './untrusted-input.js';

export interface LoraLayerWeights {
  rank: number;
  /** [in, rank], row-major. */
  a: Float32Array;
  /** [rank, out], row-major, scale folded in. */
  b: Float32Array;
}

export interface LoadedAdapter {
  name: string;
  dir: string;
  /** Largest rank over its modules. */
  rank: number;
  targets: Projection[];
  /** Key `${layer}.${projection}`. */
  modules: Map<string, LoraLayerWeights>;
  /** Bytes of float32 weights held in host memory. */
  bytes: number;
}

export class AdapterError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'AdapterError';
  }
}

export const moduleKey = (layer: number, p: Projection) => `${layer}.${p}`;

interface AdapterConfig {
  r: number;
  lora_alpha: number;
  use_rslora?: boolean;
  target_modules: string[] | string;
  rank_pattern?: Record<string, number>;
  alpha_pattern?: Record<string, number>;
}

export function readAdapterConfig(dir: string, maxRank: number): AdapterConfig {
  const file = join(dir, 'adapter_config.json');
  if (!existsSync(file)) throw new AdapterError(file, 'is missing (an adapter directory needs adapter_config.json and adapter_model.safetensors)');
  let raw: Record<string, unknown>;
  try {
    raw = readUntrustedJson(file) as Record<string, unknown>; // size and nesting bounded before parsing
  } catch (e) {
    throw new AdapterError(file, e instanceof UntrustedInputError ? e.message : `is not valid JSON: ${(e as Error).message}`);
  }
  const refuse = (problem: string): never => {
    throw new AdapterError(file, problem);
  };
  if (typeof raw !== 'object' || raw === null) refuse('is not a JSON object');
  if ((raw.peft_type ?? 'LORA') !== 'LORA') refuse(`peft_type ${JSON.stringify(raw.peft_type)} is not supported (only LORA)`);
  if (raw.use_dora === true) refuse('use_dora is true: DoRA adapters are not supported');
  if (raw.bias != null && raw.bias !== 'none') refuse(`bias ${JSON.stringify(raw.bias)}: adapters with trained biases are not supported (bias must be "none")`);
  if (raw.lora_bias === true) refuse('lora_bias is true: adapters with trained biases are not supported');
  if (Array.isArray(raw.modules_to_save) && raw.modules_to_save.length > 0)
    refuse(`modules_to_save ${JSON.stringify(raw.modules_to_save)}: fully trained modules are not supported, only LoRA deltas`);
  if (raw.fan_in_fan_out === true) refuse('fan_in_fan_out is true: not supported for Llama-family models');
  if (raw.layers_to_transform != null) refuse('layers_to_transform is not supported yet');
  for (const key of ['use_qalora', 'use_bdlora'] as const) if (raw[key] === true) refuse(`${key} is not supported`);
  if (raw.target_parameters != null) refuse('target_parameters is not supported');
  if (!Number.isInteger(raw.r) || (raw.r as number) < 1) refuse(`r must be a positive integer, got ${JSON.stringify(raw.r)}`);
  if (typeof raw.lora_alpha !== 'number' || !Number.isFinite(raw.lora_alpha)) refuse(`lora_alpha must be a number, got ${JSON.stringify(raw.lora_alpha)}`);
  if (Math.abs(raw.lora_alpha as number) > MAX_LORA_ALPHA)
    refuse(`lora_alpha must be a finite number of magnitude at most ${MAX_LORA_ALPHA}, got ${raw.lora_alpha}`);
  const targets = raw.target_modules;
  if (targets !== 'all-linear' && !(Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === 'string'))) {
    refuse(`target_modules must be a non-empty list of module names or "all-linear", got ${JSON.stringify(targets)}`);
  }
  if (Array.isArray(targets)) {
    const unknown = (targets as string[]).filter((t) => !(PROJECTIONS as readonly string[]).includes(t));
    if (unknown.length) refuse(`target_modules ${JSON.stringify(unknown)} are not supported; supported: ${PROJECTIONS.join(', ')}`);
  }
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    const problem = patternMapProblem(key, raw[key]); // e.g. a key like "(.*)*x" would hang the event loop in patternValue
    if (problem) refuse(problem);
  }
  const config = raw as unknown as AdapterConfig;
  const ranks = [config.r, ...Object.values(config.rank_pattern ?? {})];
  if (!ranks.every((r) => Number.isInteger(r) && r >= 1)) refuse('rank_pattern values must be positive integers');
  const tooBig = Math.max(...ranks);
  if (tooBig > maxRank) refuse(`rank ${tooBig} is above this server's maximum of ${maxRank} (config engine.maxLoraRank)`);
  return config;
}

/** PEFT's rule: a pattern key matches a module name when the name ends with it at a dot boundary (regex allowed). */
function patternValue(patterns: Record<string, number> | undefined, moduleName: string): number | undefined {
  for (const [pattern, value] of Object.entries(patterns ?? {})) {
    let re: RegExp;
    try {
      re = new RegExp(`^(.*\\.)?(${pattern})$`);
    } catch {
      continue;
    }
    if (re.test(moduleName)) return value;
  }
  return undefined;
}

const TENSOR_NAME = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight$/;

/** Loads an adapter synchronously (tests, tools). */
export function loadPeftAdapter(name: string, dir: string, spec: ModelSpec, maxRank: number): LoadedAdapter {
  const steps = parseAdapterSteps(name, dir, spec, maxRank);
  for (let step = steps.next(); ; step = steps.next()) if (step.done) return step.value;
}

/**
 * Loads an adapter in small steps, yielding to the event loop after each module, so that loading a large
 * adapter never holds up the scheduler's step loop (the forward pass itself runs on onnxruntime's threads).
 */
export async function loadPeftAdapterAsync(name: string, dir: string, spec: ModelSpec, maxRank: number): Promise<LoadedAdapter> {
  const steps = parseAdapterSteps(name, dir, spec, maxRank);
  for (let step = steps.next(); ; step = steps.next()) {
    if (step.done) return step.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function* parseAdapterSteps(name: string, dir: string, spec: ModelSpec, maxRank: number): Generator<void, LoadedAdapter> {
  const config = readAdapterConfig(dir, maxRank);
  const file = join(dir, 'adapter_model.safetensors');
  if (!existsSync(file)) {
    const bin = join(dir, 'adapter_model.bin');
    throw new AdapterError(file, existsSync(bin) ? 'is missing; adapter_model.bin (pickle) is not loaded for safety, convert it to safetensors' : 'is missing');
  }
  const header = readSafetensorsHeader(file);
  const found = new Map<string, { a?: string; b?: string }>();
  for (const tensorName of header.tensors.keys()) {
    const m = TENSOR_NAME.exec(tensorName);
    if (!m) {
      if (/bias$/.test(tensorName)) throw new AdapterError(file, `holds ${tensorName}: adapters with trained biases are not supported`);
      throw new AdapterError(file, `holds ${tensorName}, which is not a LoRA weight of a Llama-family layer this server knows`);
    }
    const [, layerText, , projection, part] = m;
    const layer = Number(layerText);
    if (!(PROJECTIONS as readonly string[]).includes(projection))
      throw new AdapterError(file, `targets ${projection}, which is not one of ${PROJECTIONS.join(', ')}`);
    if (layer >= spec.numLayers) throw new AdapterError(file, `${tensorName}: layer ${layer} does not exist, the base model has ${spec.numLayers} layers`);
    const key = moduleKey(layer, projection as Projection);
    const entry = found.get(key) ?? {};
    entry[part === 'A' ? 'a' : 'b'] = tensorName;
    found.set(key, entry);
  }
  if (found.size === 0) throw new AdapterError(file, 'holds no LoRA weights');

  const modules = new Map<string, LoraLayerWeights>();
  const targets = new Set<Projection>();
  let bytes = 0;
  let maxFoundRank = 0;
  for (const [key, names] of found) {
    const [layerText, projection] = key.split('.') as [string, Projection];
    if (!names.a || !names.b) throw new AdapterError(file, `layer ${layerText} ${projection} has lora_${names.a ? 'B' : 'A'} missing`);
    const [inSize, outSize] = projectionShape(spec, projection);
    const aInfo = header.tensors.get(names.a)!;
    const bInfo = header.tensors.get(names.b)!;
    const rank = aInfo.shape[0];
    if (aInfo.shape.length !== 2 || aInfo.shape[1] !== inSize)
      throw new AdapterError(file, `${names.a} has shape [${aInfo.shape}], the base model needs [r, ${inSize}]`);
    if (bInfo.shape.length !== 2 || bInfo.shape[0] !== outSize || bInfo.shape[1] !== rank)
      throw new AdapterError(file, `${names.b} has shape [${bInfo.shape}], the base model needs [${outSize}, ${rank}]`);
    const moduleName = `model.layers.${layerText}.${projection === 'gate_proj' || projection === 'up_proj' || projection === 'down_proj' ? 'mlp' : 'self_attn'}.${projection}`;
    const expectedRank = patternValue(config.rank_pattern, moduleName) ?? config.r;
    if (rank !== expectedRank) throw new AdapterError(file, `${names.a} has rank ${rank}, adapter_config.json says ${expectedRank}`);
    if (rank > maxRank) throw new AdapterError(file, `${names.a} has rank ${rank}, above this server's maximum of ${maxRank}`);
    const alpha = patternValue(config.alpha_pattern, moduleName) ?? config.lora_alpha;
    const scale = config.use_rslora ? alpha / Math.sqrt(rank) : alpha / rank;
    const a = readTensorAsFloat32(header, names.a);
    const b = readTensorAsFloat32(header, names.b);
    for (const [tensor, tensorName] of [
      [a, names.a],
      [b, names.b],
    ] as const) {
      for (let i = 0; i < tensor.length; i++) if (!Number.isFinite(tensor[i])) throw new AdapterError(file, `${tensorName} holds NaN or Inf values`);
    }
    modules.set(key, { rank, a: transpose(a, rank, inSize), b: transposeScaled(b, outSize, rank, scale) });
    targets.add(projection);
    bytes += (a.length + b.length) * 4;
    maxFoundRank = Math.max(maxFoundRank, rank);
    yield;
  }
  return {
    name,
    dir,
    rank: maxFoundRank,
    targets: PROJECTIONS.filter((p) => targets.has(p)),
    modules,
    bytes,
  };
}

/** [rows, cols] -> [cols, rows] */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c];
  return out;
}

function transposeScaled(m: Float32Array, rows: number, cols: number, scale: number): Float32Array {
  const out = transpose(m, rows, cols);
  for (let i = 0; i < out.length; i++) out[i] *= scale;
  return out;
}
