/**
 * `npm run bench`: prefill and decode tokens/s of a ~100M-parameter Llama-shaped model with random weights,
 * for three configurations measured in the same run, interleaved round by round so machine noise hits all
 * of them alike:
 *   base graph  - the graph built without LoRA inputs (the bare base model, the baseline)
 *   slot 0      - the LoRA graph serving the bare base model (slot 0 = zeros)
 *   rank-16     - the LoRA graph with a rank-16 adapter on all seven projections
 * Reports medians and the adapter's cost relative to the base graph.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { availableParallelism, cpus } from 'node:os';
import { readModelSpec } from '../src/engine/model/hf-config.js';
import { CheckpointWeights } from '../src/engine/model/weights.js';
import { ensureOnnxModel } from '../src/engine/model/model-cache.js';
import { ModelRunner } from '../src/engine/model/model-runner.js';
import { SlotStacks } from '../src/engine/lora/slot-stacks.js';
import { loadPeftAdapter } from '../src/engine/lora/peft-adapter.js';
import { argmax } from '../src/engine/sampling.js';
import { writeRandomAdapter, writeRandomModel, type RandomModelShape } from './random-checkpoint.js';

const SHAPE: RandomModelShape = { hidden: 768, intermediate: 2048, layers: 12, heads: 12, kvHeads: 4, vocab: 32000, maxPositions: 2048 };
const PROMPT = 128;
const NEW_TOKENS = Number(process.env.BENCH_NEW_TOKENS ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

const root = resolve('.cache/bench');
const modelDir = join(root, 'llama-100m');
mkdirSync(root, { recursive: true });
const params = writeRandomModel(modelDir, SHAPE);
writeRandomAdapter(join(root, 'adapter-r16'), SHAPE, 16);
const spec = readModelSpec(modelDir);
const weights = new CheckpointWeights(modelDir);
const runnerOptions = { maxBatch: 1, maxSequenceLength: PROMPT + NEW_TOKENS + 1, executionProviders: ['cpu'] };

const baseGraph = ensureOnnxModel(modelDir, spec, weights, { maxSequenceLength: runnerOptions.maxSequenceLength, lora: false, attention: 'packed' }, join(root, 'onnx'));
const loraGraph = ensureOnnxModel(modelDir, spec, weights, { maxSequenceLength: runnerOptions.maxSequenceLength, lora: true, attention: 'packed' }, join(root, 'onnx'));
const baseRunner = await ModelRunner.create(baseGraph.path, spec, runnerOptions, null);
const stacks = new SlotStacks(spec, 2);
stacks.write(1, loadPeftAdapter('r16', join(root, 'adapter-r16'), spec, 64));
const loraRunner = await ModelRunner.create(loraGraph.path, spec, runnerOptions, stacks);

const prompt = Array.from({ length: PROMPT }, (_, i) => 2 + ((i * 7919) % (SHAPE.vocab - 2)));

async function measure(runner: ModelRunner, slot: number): Promise<{ prefill: number; decode: number }> {
  let t0 = performance.now();
  const [first] = await runner.step({ decode: [], prefill: [{ row: 0, tokens: prompt, pastLength: 0, slot, logitPositions: [PROMPT - 1] }] });
  const prefillMs = performance.now() - t0;
  let token = argmax(first.logits!);
  t0 = performance.now();
  for (let i = 0; i < NEW_TOKENS; i++) {
    const [out] = await runner.step({ decode: [{ row: 0, tokens: [token], pastLength: PROMPT + i, slot, logitPositions: [0] }], prefill: [] });
    token = argmax(out.logits!);
  }
  const decodeMs = performance.now() - t0;
  runner.freeRowsFrom(0);
  return { prefill: (PROMPT / prefillMs) * 1000, decode: (NEW_TOKENS / decodeMs) * 1000 };
}

const configs = [
  { name: 'base graph (no LoRA inputs)', run: () => measure(baseRunner, 0) },
  { name: 'LoRA graph, slot 0 (bare base)', run: () => measure(loraRunner, 0) },
  { name: 'LoRA graph, rank-16 all 7 projections', run: () => measure(loraRunner, 1) },
];
const results = configs.map(() => ({ prefill: [] as number[], decode: [] as number[] }));
for (const c of configs) await c.run(); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const [i, c] of configs.entries()) {
    const r = await c.run();
    results[i].prefill.push(r.prefill);
    results[i].decode.push(r.decode);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, node ${process.version}, onnxruntime-node CPU EP`);
console.log(`model: Llama-shaped, ${(params / 1e6).toFixed(1)}M parameters (hidden ${SHAPE.hidden}, ${SHAPE.layers} layers, ${SHAPE.heads} heads / ${SHAPE.kvHeads} KV heads, vocab ${SHAPE.vocab}), float32`);
console.log(`workload: batch 1, ${PROMPT}-token prompt, ${NEW_TOKENS} greedy tokens; ${ROUNDS} interleaved rounds, medians\n`);
console.log('| configuration | prefill tok/s | decode tok/s | decode time vs base graph |');
console.log('| --- | ---: | ---: | ---: |');
const baseDecode = median(results[0].decode);
configs.forEach((c, i) => {
  const decode = median(results[i].decode);
  console.log(`| ${c.name} | ${median(results[i].prefill).toFixed(0)} | ${decode.toFixed(1)} | ${i === 0 ? '1.00' : (baseDecode / decode).toFixed(3)} |`);
});
const cost = baseDecode / median(results[2].decode) - 1;
console.log(`\nrank-16 adapter decode cost: ${(cost * 100).toFixed(1)}% of base decode time (target < 10%)`);
await baseRunner.release();
await loraRunner.release();
