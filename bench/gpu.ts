/**
 * `npm run bench:gpu` (on the device machine, see docs/gpu.md): the device-resident loop on onnxruntime-node's
 * WebGPU provider (or whichever BENCH_PROVIDER names).
 *  1. correctness: the fixture model and its adapters against the HF reference, greedy, float32 on the device;
 *  2. the device's effective weight-read bandwidth (a batch-1 GEMV over a 512 MiB weight, memory bound);
 *  3. a Llama-3.2-1B-shaped random model (hidden 2048, 16 layers, 32/8 heads, vocab 128256), 128-token prompts,
 *     64 new tokens, batch 1, 8 and 32: base graph vs 8 rank-16 q/k/v/o adapters mixed, generated tokens/s,
 *     and the bandwidth bound (weight bytes per step / measured bandwidth).
 * BENCH_SHAPE=small runs the same on a small shape (for a dry run on CPU).
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { availableParallelism, cpus } from 'node:os';
import * as ort from 'onnxruntime-node';
import { readModelSpec } from '../src/engine/model/hf-config.js';
import { CheckpointWeights } from '../src/engine/model/weights.js';
import { ensureOnnxModel } from '../src/engine/model/model-cache.js';
import { ResidentRunner } from '../src/engine/model/resident-runner.js';
import { SlotStacks } from '../src/engine/lora/slot-stacks.js';
import { loadPeftAdapter } from '../src/engine/lora/peft-adapter.js';
import { DataType, encodeModel } from '../src/engine/model/onnx-proto.js';
import { writeRandomAdapter, writeRandomModel, type RandomModelShape } from './random-checkpoint.js';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL, reference } from '../test/helpers/engine.js';

const provider = process.env.BENCH_PROVIDER ?? 'webgpu';
const small = process.env.BENCH_SHAPE === 'small';
const SHAPE: RandomModelShape = small
  ? { hidden: 256, intermediate: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 4096, maxPositions: 512 }
  : { hidden: 2048, intermediate: 8192, layers: 16, heads: 32, kvHeads: 8, vocab: 128256, maxPositions: 4096 };
const PROMPT = 128;
const NEW_TOKENS = 64;
const BATCHES = (process.env.BENCH_BATCHES ?? '1,8,32').split(',').map(Number);
const root = resolve(process.env.BENCH_DIR ?? '.cache/bench-gpu');
const log = (...args: unknown[]) => console.log(...args);

async function correctness(): Promise<void> {
  const spec = readModelSpec(FIXTURE_MODEL);
  const onnx = ensureOnnxModel(FIXTURE_MODEL, spec, new CheckpointWeights(FIXTURE_MODEL), { maxSequenceLength: 256, lora: true, argmax: true }, join(root, 'onnx'));
  const stacks = new SlotStacks(spec, 4);
  const slotOf: Record<string, number> = { support: 1, sales: 2, code: 3 };
  for (const [name, slot] of Object.entries(slotOf)) stacks.write(slot, loadPeftAdapter(name, join(FIXTURE_ADAPTERS, name), spec, 64));
  const runner = await ResidentRunner.create(onnx.path, spec, { provider, maxSequenceLength: 256 }, stacks);
  let tokensEqual = 0;
  let worst = 0;
  for (const c of reference.cases) {
    const { tokens, logprobs } = await runner.generate([c.prompt_token_ids], [c.adapter ? slotOf[c.adapter] : 0], 24, true);
    if (tokens[0].join() === c.greedy_token_ids.join()) tokensEqual++;
    for (let i = 0; i < 24; i++) worst = Math.max(worst, Math.abs(logprobs[0][i] - c.greedy_logprobs[i]));
  }
  log(`correctness (${provider}, float32): ${tokensEqual}/${reference.cases.length} cases with all 24 greedy tokens equal to HF; max |logprob - HF| = ${worst.toExponential(2)}`);
  await runner.release();
}

/** Batch-1 GEMV over a 512 MiB float32 weight: time per run ~ weight bytes / read bandwidth. */
async function bandwidth(): Promise<number> {
  const rows = 2048;
  const cols = small ? 4096 : 65536;
  const weight = new Float32Array(rows * cols).fill(0.001);
  const model = encodeModel({
    graphName: 'gemv',
    nodes: [{ opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'], name: 'mm' }],
    inputs: [{ name: 'x', dataType: DataType.FLOAT, shape: [1, rows] }],
    outputs: [{ name: 'y', dataType: DataType.FLOAT, shape: [1, cols] }],
    externalInitializers: [],
    inlineInitializers: [{ name: 'w', dataType: DataType.FLOAT, dims: [rows, cols], raw: new Uint8Array(weight.buffer) }],
    opsets: [{ domain: '', version: 17 }],
  });
  const session = await ort.InferenceSession.create(model, { executionProviders: [provider] });
  const x = new ort.Tensor('float32', new Float32Array(rows).fill(1), [1, rows]);
  for (let i = 0; i < 5; i++) await session.run({ x });
  const runs = 50;
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await session.run({ x });
  const seconds = (performance.now() - t0) / 1000 / runs;
  await session.release();
  const gbps = (weight.byteLength / seconds) / 1e9;
  log(`effective weight-read bandwidth (${provider}, GEMV over ${(weight.byteLength / 2 ** 20).toFixed(0)} MiB, incl. one host round trip per run): ${gbps.toFixed(0)} GB/s`);
  return gbps;
}

async function throughput(gbps: number): Promise<void> {
  const modelDir = join(root, small ? 'llama-small' : 'llama-1b');
  const t0 = performance.now();
  const params = writeRandomModel(modelDir, SHAPE, 1, true);
  for (let i = 0; i < 8; i++) writeRandomAdapter(join(root, 'adapters', `a${i}`), SHAPE, 16, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], 50 + i);
  const spec = readModelSpec(modelDir);
  const weights = new CheckpointWeights(modelDir);
  const maxSequenceLength = PROMPT + NEW_TOKENS + 8;
  const baseGraph = ensureOnnxModel(modelDir, spec, weights, { maxSequenceLength, lora: false, argmax: true }, join(root, 'onnx'));
  const loraGraph = ensureOnnxModel(modelDir, spec, weights, { maxSequenceLength, lora: true, argmax: true }, join(root, 'onnx'));
  log(`model: ${(params / 1e9).toFixed(2)}B parameters, float32 weights (${((params * 4) / 2 ** 30).toFixed(2)} GiB); prepared in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const stacks = new SlotStacks(spec, 9);
  for (let i = 0; i < 8; i++) stacks.write(i + 1, loadPeftAdapter(`a${i}`, join(root, 'adapters', `a${i}`), spec, 64));
  const base = await ResidentRunner.create(baseGraph.path, spec, { provider, maxSequenceLength }, null);
  const mixed = await ResidentRunner.create(loraGraph.path, spec, { provider, maxSequenceLength }, stacks);
  const stepBytes = params * 4;
  log(`\n| batch | base graph tok/s | 8 adapters mixed tok/s | mixed / base | bandwidth bound tok/s |`);
  log('| ---: | ---: | ---: | ---: | ---: |');
  for (const B of BATCHES) {
    const prompts = Array.from({ length: B }, (_, r) => Array.from({ length: PROMPT }, (_, k) => 2 + ((r * 977 + k * 7919) % (SHAPE.vocab - 2))));
    const slots = Array.from({ length: B }, (_, r) => (r % 8) + 1);
    const measure = async (runner: ResidentRunner, s: number[]) => {
      await runner.generate(prompts, s, 4);
      const t = performance.now();
      await runner.generate(prompts, s, NEW_TOKENS);
      return (B * NEW_TOKENS) / ((performance.now() - t) / 1000);
    };
    const b1 = await measure(base, slots.map(() => 0));
    const m1 = await measure(mixed, slots);
    const b2 = await measure(base, slots.map(() => 0));
    const m2 = await measure(mixed, slots);
    const bTps = Math.max(b1, b2);
    const mTps = Math.max(m1, m2);
    const bound = (B / (stepBytes / (gbps * 1e9)));
    log(`| ${B} | ${bTps.toFixed(1)} | ${mTps.toFixed(1)} | ${(mTps / bTps).toFixed(3)} | ${bound.toFixed(0)} |`);
  }
  log('\n(tok/s = generated tokens / wall time of prefill + 64 decode steps, best of two interleaved runs; the bound counts only decode weight reads.)');
  await base.release();
  await mixed.release();
}

mkdirSync(root, { recursive: true });
log(`provider ${provider}; host ${cpus()[0]?.model ?? '?'} x${availableParallelism()}; node ${process.version}`);
const phases: Array<[string, () => Promise<unknown>]> = [['correctness', correctness]];
let gbps = 0;
phases.push(['bandwidth', async () => (gbps = await bandwidth())]);
phases.push(['throughput', () => throughput(gbps || 1000)]);
for (const [name, phase] of phases) {
  const t = performance.now();
  try {
    await phase();
  } catch (e) {
    log(`${name} FAILED: ${(e as Error).stack ?? e}`);
  }
  log(`[${name}: ${((performance.now() - t) / 1000).toFixed(1)} s]`);
}
