/**
 * Starts the model runner: tries the configured execution providers in order, falls back to CPU with a log
 * line, and picks where the decoding state lives for the provider that serves (see batch-runner.ts):
 * `host` (ModelRunner) or `device` (DeviceRunner, whose graph also selects tokens). `auto` means device on a
 * GPU provider and host on the CPU, where host memory is the device's and in-place KV updates are cheapest.
 */
import type { ModelSpec } from './hf-config.js';
import type { CheckpointWeights } from './weights.js';
import type { GraphOptions } from './graph-builder.js';
import { ensureOnnxModel } from './model-cache.js';
import { ModelRunner } from './model-runner.js';
import { DeviceRunner } from './device-runner.js';
import type { BatchRunner, StateResidency } from './batch-runner.js';
import type { SlotStacks } from '../lora/slot-stacks.js';

export interface StartRunnerOptions {
  modelDir: string;
  spec: ModelSpec;
  weights: CheckpointWeights;
  cacheDir: string;
  /** The graph every provider shares (sampling is added for a device-resident runner). */
  graph: GraphOptions;
  executionProviders: string[];
  residency: StateResidency;
  maxBatch: number;
  intraOpThreads?: number;
  stacks: SlotStacks;
}

export interface StartLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface StartedRunner {
  runner: BatchRunner;
  provider: string;
  residency: 'host' | 'device';
}

export function residencyFor(provider: string, requested: StateResidency): 'host' | 'device' {
  if (requested !== 'auto') return requested;
  return provider === 'cpu' ? 'host' : 'device';
}

async function start(provider: string, options: StartRunnerOptions, log?: StartLog): Promise<StartedRunner> {
  const residency = residencyFor(provider, options.residency);
  const graph: GraphOptions = residency === 'device' ? { ...options.graph, sampling: true, loraFormulation: 'masked' } : options.graph;
  const started = performance.now();
  const onnx = ensureOnnxModel(options.modelDir, options.spec, options.weights, graph, options.cacheDir);
  log?.info({ path: onnx.path, built: onnx.built, ms: Math.round(performance.now() - started) }, onnx.built ? 'built ONNX graph' : 'reused cached ONNX graph');
  const { spec, stacks, maxBatch, intraOpThreads } = options;
  const maxSequenceLength = graph.maxSequenceLength;
  const runner: BatchRunner =
    residency === 'device'
      ? await DeviceRunner.create(onnx.path, spec, { maxBatch, maxSequenceLength, provider, intraOpThreads, dtype: (graph as { dtype?: "float32" | "float16" }).dtype }, stacks)
      : await ModelRunner.create(onnx.path, spec, { maxBatch, maxSequenceLength, executionProviders: [provider], intraOpThreads }, stacks);
  log?.info({ provider, residency }, `serving on ${provider}, decoding state in ${residency} memory`);
  return { runner, provider, residency };
}

export async function startRunner(options: StartRunnerOptions, log?: StartLog): Promise<StartedRunner> {
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
