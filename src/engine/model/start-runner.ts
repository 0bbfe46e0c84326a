/**
 * Starts the model runner: tries the configured execution providers in order, falls back to CPU with a log
 * line, and picks where the decoding state lives for the provider that serves (see batch-runner.ts):
 * `host` (ModelRunner) or `device` (DeviceRunner, whose graph also selects tokens). `auto` means device on a
 * GPU provider and host on the CPU, where host memory is the device's and in-place KV updates are cheapest.
 * The element type: `auto` means float16 on the device path, float32 on the host path (float16 is served by
 * the device path only, which also runs on the CPU provider).
 */
import type { ModelSpec } from './hf-config.js';
import type { CheckpointWeights } from './weights.js';
import type { GraphOptions } from './graph-builder.js';
import { ensureOnnxModel } from './model-cache.js';
import { pruneCache, touchEntry } from './graph-cache.js';
import { checkNoForeignTensors } from './checkpoint-tensors.js';
import { basename, dirname } from 'node:path';
import { ModelRunner } from './model-runner.js';
import { DeviceRunner } from './device-runner.js';
import type { BatchRunner, ModelDtype, StateResidency } from './batch-runner.js';
import type { SlotStacks } from '../lora/slot-stacks.js';
import { Float16RangeError } from './float16.js';
import { checkpointQuantization, weightFormatLabel } from './quantized-weights.js';

export interface StartRunnerOptions {
  modelDir: string;
  spec: ModelSpec;
  weights: CheckpointWeights;
  cacheDir: string;
  /** The graph every provider shares (sampling is added for a device-resident runner). */
  graph: GraphOptions;
  executionProviders: string[];
  residency: StateResidency;
  dtype: ModelDtype;
  maxBatch: number;
  intraOpThreads?: number;
  /** Bytes the KV cache may hold (host path); 0 = unbounded. */
  kvBudgetBytes?: number;
  stacks: SlotStacks;
  /** Called once the ONNX graph is on disk (built or reused), before the session is created. */
  onGraphReady?: (built: boolean) => void;
  /** The graph cache's bound in bytes (graph-cache.ts); undefined = unbounded. */
  cacheMaxBytes?: number;
}

export interface StartLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface StartedRunner {
  runner: BatchRunner;
  provider: string;
  residency: 'host' | 'device';
  dtype: 'float32' | 'float16';
  /** The base's weight format (`float32`, `float16`, `int8`, `int4`, `gptq-int4 (group 128); ...`; quantized-weights.ts). */
  weightFormat: string;
  /** Bytes of the base's weights in the graph (quantized ones packed, with their scales and zero points). */
  weightBytes: number;
}

/** Marks the entry served as used and evicts least recently used others beyond the bound. */
function boundGraphCache(options: StartRunnerOptions, entry: string, log?: StartLog): void {
  touchEntry(entry);
  if (options.cacheMaxBytes === undefined) return;
  const { removed, keptBytes } = pruneCache(options.cacheDir, options.cacheMaxBytes, [entry]);
  if (removed.length) {
    log?.info(
      { removed: removed.map((e) => ({ entry: basename(e.dir), bytes: e.bytes })), keptBytes, boundBytes: options.cacheMaxBytes },
      'graph cache over its bound (--cache-max-mb): least recently used entries removed',
    );
  }
}

export function residencyFor(provider: string, requested: StateResidency, dtype: ModelDtype = 'auto'): 'host' | 'device' {
  if (requested !== 'auto') return requested;
  return provider === 'cpu' && dtype !== 'float16' ? 'host' : 'device';
}

export function dtypeFor(residency: 'host' | 'device', requested: ModelDtype): 'float32' | 'float16' {
  if (requested !== 'auto') return requested;
  return residency === 'device' ? 'float16' : 'float32';
}

/** Said when float16 is asked for on the CPU provider without asking for the device path too. */
export const CPU_FLOAT16_WARNING =
  "dtype float16 on the CPU provider: onnxruntime's CPU kernels have no fast float16 path (decoding measured 4-5x slower than float32, with more memory); serving float32 on the host path. Set --state-residency device to run float16 on the CPU anyway";

async function start(provider: string, options: StartRunnerOptions, log?: StartLog): Promise<StartedRunner> {
  if (provider === 'cpu' && options.dtype === 'float16' && options.residency === 'auto') {
    log?.warn({ provider, requested: 'float16', serving: 'float32' }, CPU_FLOAT16_WARNING);
    return startAs(provider, 'host', 'float32', options, log);
  }
  const residency = residencyFor(provider, options.residency, options.dtype);
  try {
    return await startAs(provider, residency, dtypeFor(residency, options.dtype), options, log);
  } catch (e) {
    // auto chose float16 for the device path, but the checkpoint does not fit it: float32 on the same device.
    if (!(e instanceof Float16RangeError) || options.dtype !== 'auto') throw e;
    log?.warn({ provider, reason: e.message }, 'the model does not fit float16; serving float32');
    return startAs(provider, residency, 'float32', options, log);
  }
}

async function startAs(
  provider: string,
  residency: 'host' | 'device',
  dtype: 'float32' | 'float16',
  options: StartRunnerOptions,
  log?: StartLog,
): Promise<StartedRunner> {
  if (residency === 'device' && options.spec.headDim % 16 !== 0) {
    throw new Error(
      `head_dim ${options.spec.headDim} is not a multiple of 16, which the device path's fused attention (GroupQueryAttention) needs; serve it with --state-residency host`,
    );
  }
  const graph: GraphOptions =
    residency === 'device' ? { ...options.graph, sampling: true, loraFormulation: 'masked' } : { ...options.graph, attention: 'packed' };
  if (dtype === 'float16') graph.dtype = 'float16';
  checkNoForeignTensors(options.spec, options.weights);
  const started = performance.now();
  const onnx = ensureOnnxModel(options.modelDir, options.spec, options.weights, graph, options.cacheDir);
  log?.info({ path: onnx.path, built: onnx.built, ms: Math.round(performance.now() - started) }, onnx.built ? 'built ONNX graph' : 'reused cached ONNX graph');
  if (onnx.dataLayout)
    log?.info({ dtype, ...onnx.dataLayout }, 'graph weights: checkpoint bytes referenced in place (F32) and copied (converted), by stored dtype');
  if (onnx.skippedTensors?.length)
    log?.info({ tensors: onnx.skippedTensors }, 'checkpoint tensors not used by the graph, as transformers does not use them either');
  boundGraphCache(options, dirname(onnx.path), log);
  options.onGraphReady?.(onnx.built);
  const { spec, stacks, maxBatch, intraOpThreads } = options;
  const maxSequenceLength = graph.maxSequenceLength;
  const runner: BatchRunner =
    residency === 'device'
      ? await DeviceRunner.create(onnx.path, spec, { maxBatch, maxSequenceLength, provider, intraOpThreads, dtype }, stacks)
      : await ModelRunner.create(
          onnx.path,
          spec,
          { maxBatch, maxSequenceLength, executionProviders: [provider], intraOpThreads, kvBudgetBytes: options.kvBudgetBytes },
          stacks,
        );
  const weightFormat = weightFormatLabel(checkpointQuantization(options.modelDir), graph.quantize ?? 'none', dtype, graph.quantizeBlockSize);
  log?.info(
    { provider, residency, dtype, weightFormat, weightBytes: onnx.weightBytes },
    `serving on ${provider}, ${dtype}, decoding state in ${residency} memory; base weights ${weightFormat}, ${(onnx.weightBytes / 2 ** 20).toFixed(1)} MiB`,
  );
  return { runner, provider, residency, dtype, weightFormat, weightBytes: onnx.weightBytes };
}

export async function startRunner(options: StartRunnerOptions, log?: StartLog): Promise<StartedRunner> {
  if (options.dtype === 'float16' && options.residency === 'host') {
    throw new Error('dtype float16 is served by the device-resident path: set state residency to device or auto (any provider), or dtype to float32');
  }
  for (const provider of options.executionProviders) {
    try {
      return await start(provider, options, log);
    } catch (e) {
      if (provider === 'cpu') throw e;
      log?.warn({ provider, error: (e as Error).message }, `execution provider ${provider} is unavailable, trying the next`);
    }
  }
  log?.warn({ requested: options.executionProviders }, 'no requested execution provider is available; falling back to cpu');
  return start('cpu', options, log);
}
