/**
 * onnxruntime-node as the engine imports it, with one fix made before any tensor exists.
 *
 * onnxruntime-common keeps float16 tensor data in a Float16Array where the JavaScript runtime has one (Node 24
 * does; Node 20 does not), but onnxruntime-node 1.30's native binding cannot read a Float16Array: it sees zero
 * bytes and every float16 run fails with "not enough space: expected N, got 0". onnxruntime-common makes that
 * choice once per process, at its first tensor, so a first tensor made while Float16Array is hidden keeps float16
 * data in a Uint16Array, which is how the engine writes and reads float16 on every Node version.
 */
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { cgroupCpuLimit } from './cpu-limit.js';

const float16ArrayProperty = Object.getOwnPropertyDescriptor(globalThis, 'Float16Array');
if (float16ArrayProperty?.configurable) {
  delete (globalThis as { Float16Array?: unknown }).Float16Array;
  try {
    new ort.Tensor('float32', new Float32Array(1), [1]);
  } finally {
    Object.defineProperty(globalThis, 'Float16Array', float16ArrayProperty);
  }
}

export { ort };

/**
 * onnxruntime's intra-op thread count for a configured value: 0 or unset means one per core the process may use
 * (the host's cores, capped by a container CPU limit: cpu-limit.ts), passed explicitly. Left at 0, onnxruntime
 * picks its own default, which measured 40-50% slower at batch-8 decode and ~6% at batch 1 than the same count
 * given explicitly on the 2-core VM (docs/benchmarks.md, "Quantized base").
 */
export function intraOpThreadCount(configured?: number, cpuLimit: number | null = cgroupCpuLimit()): number {
  return configured || Math.min(availableParallelism(), cpuLimit ?? Infinity);
}
