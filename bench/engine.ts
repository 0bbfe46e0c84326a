/**
 * `npm run bench`: the engine alone (no HTTP) on a ~100M-parameter Llama-shaped model with random weights:
 * prefill and decode tokens/s at batch 1 and batch 8, for configurations measured in the same run, interleaved
 * round by round so machine noise hits all of them alike:
 *   base graph  - the graph built without LoRA inputs (the bare base model, the baseline)
 *   slot 0      - the LoRA graph serving the bare base model (slot 0 = zeros)
 *   rank-16     - the LoRA graph with rank-16 adapters on all seven projections (batch 8: 8 different ones)
 * Reports medians, the adapters' cost relative to the base graph, and decode speed as a fraction of the weights
 * bound (BENCH_BANDWIDTH_GBS, default 17 GB/s, this VM's 2-thread read bandwidth: a decode step reads every
 * weight once, so batch-1 tok/s cannot beat bandwidth / bytes of weights).
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { readModelSpec } from '../src/engine/model/hf-config.js';
import { CheckpointWeights } from '../src/engine/model/weights.js';
import { ensureOnnxModel } from '../src/engine/model/model-cache.js';
import { ModelRunner } from '../src/engine/model/model-runner.js';
import { SlotStacks } from '../src/engine/lora/slot-stacks.js';
import { loadPeftAdapter } from '../src/engine/lora/peft-adapter.js';
import type { RowSampling } from '../src/engine/model/batch-runner.js';
import { writeRandomAdapter, writeRandomModel, type RandomModelShape } from './random-checkpoint.js';

const SHAPE: RandomModelShape = { hidden: 768, intermediate: 2048, layers: 12, heads: 12, kvHeads: 4, vocab: 32000, maxPositions: 2048 };
const PROMPT = 128;
const NEW_TOKENS = Number(process.env.BENCH_NEW_TOKENS ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const BANDWIDTH = Number(process.env.BENCH_BANDWIDTH_GBS ?? 17) * 1e9;
const GREEDY: RowSampling = { temperature: 0, topK: 0, topP: 1, uniform: 0 };

const root = resolve('.cache/bench');
const modelDir = join(root, 'llama-100m');
mkdirSync(root, { recursive: true });
const params = writeRandomModel(modelDir, SHAPE);
for (let i = 0; i < 8; i++) writeRandomAdapter(join(root, `adapter-r16-${i}`), SHAPE, 16, undefined, 10 + i);
const spec = readModelSpec(modelDir);
const weights = new CheckpointWeights(modelDir);
const runnerOptions = { maxBatch: 8, maxSequenceLength: SHAPE.maxPositions, executionProviders: ['cpu'] };

const baseGraph = ensureOnnxModel(
  modelDir,
  spec,
  weights,
  { maxSequenceLength: runnerOptions.maxSequenceLength, lora: false, attention: 'packed' },
  join(root, 'onnx'),
);
const loraGraph = ensureOnnxModel(
  modelDir,
  spec,
  weights,
  { maxSequenceLength: runnerOptions.maxSequenceLength, lora: true, attention: 'packed' },
  join(root, 'onnx'),
);
const baseRunner = await ModelRunner.create(baseGraph.path, spec, runnerOptions, null);
const stacks = new SlotStacks(spec, 9);
for (let i = 0; i < 8; i++) stacks.write(i + 1, loadPeftAdapter(`r16-${i}`, join(root, `adapter-r16-${i}`), spec, 64));
const loraRunner = await ModelRunner.create(loraGraph.path, spec, runnerOptions, stacks);

const promptFor = (row: number) => Array.from({ length: PROMPT }, (_, i) => 2 + ((row * 977 + i * 7919) % (SHAPE.vocab - 2)));

/** `rows` sequences: their prompts in one step, then NEW_TOKENS greedy decode steps of all rows. */
async function measure(runner: ModelRunner, slots: number[]): Promise<{ prefill: number; decode: number }> {
  const rows = slots.length;
  let t0 = performance.now();
  const first = await runner.step({
    decode: [],
    prefill: slots.map((slot, row) => ({ row, tokens: promptFor(row), pastLength: 0, slot, logitPositions: [PROMPT - 1], sampling: GREEDY })),
  });
  const prefillMs = performance.now() - t0;
  let tokens = first.map((o) => o.token!);
  t0 = performance.now();
  for (let i = 0; i < NEW_TOKENS; i++) {
    const out = await runner.step({
      decode: slots.map((slot, row) => ({ row, tokens: [tokens[row]], pastLength: PROMPT + i, slot, logitPositions: [0], sampling: GREEDY })),
      prefill: [],
    });
    tokens = out.map((o) => o.token!);
  }
  const decodeMs = performance.now() - t0;
  runner.freeRowsFrom(0);
  return { prefill: ((rows * PROMPT) / prefillMs) * 1000, decode: ((rows * NEW_TOKENS) / decodeMs) * 1000 };
}

const configs = [
  { name: 'batch 1, base graph (no LoRA inputs)', rows: 1, run: () => measure(baseRunner, [0]) },
  { name: 'batch 1, LoRA graph, slot 0 (bare base)', rows: 1, run: () => measure(loraRunner, [0]) },
  { name: 'batch 1, LoRA graph, rank-16 all 7 projections', rows: 1, run: () => measure(loraRunner, [1]) },
  { name: 'batch 8, base graph', rows: 8, run: () => measure(baseRunner, [0, 0, 0, 0, 0, 0, 0, 0]) },
  { name: 'batch 8, LoRA graph, 8 different rank-16 adapters', rows: 8, run: () => measure(loraRunner, [1, 2, 3, 4, 5, 6, 7, 8]) },
];
const results = configs.map(() => ({ prefill: [] as number[], decode: [] as number[] }));
const loadBefore = loadavg()[0];
for (const c of configs) await c.run(); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const [i, c] of configs.entries()) {
    const r = await c.run();
    results[i].prefill.push(r.prefill);
    results[i].decode.push(r.decode);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
// Bytes a decode step reads: every weight once (a tied embedding once, by the LM head; the input embedding
// reads one row per token).
const weightBytes = (params - (spec.tieWordEmbeddings ? 0 : SHAPE.vocab * SHAPE.hidden)) * 4;
const bound1 = BANDWIDTH / weightBytes;

console.log(
  `machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, node ${process.version}, onnxruntime-node CPU EP; load average ${loadBefore.toFixed(2)} before, ${loadavg()[0].toFixed(2)} after`,
);
console.log(
  `model: Llama-shaped, ${(params / 1e6).toFixed(1)}M parameters (hidden ${SHAPE.hidden}, ${SHAPE.layers} layers, ${SHAPE.heads} heads / ${SHAPE.kvHeads} KV heads, vocab ${SHAPE.vocab}), float32, ${(weightBytes / 1e6).toFixed(0)} MB read per decode step`,
);
console.log(
  `workload: ${PROMPT}-token prompts, ${NEW_TOKENS} greedy tokens; ${ROUNDS} interleaved rounds, medians; weights bound at ${(BANDWIDTH / 1e9).toFixed(1)} GB/s: ${bound1.toFixed(1)} tok/s per row\n`,
);
console.log('| configuration | prefill tok/s | decode tok/s | decode time vs base graph (same batch) | fraction of the weights bound |');
console.log('| --- | ---: | ---: | ---: | ---: |');
configs.forEach((c, i) => {
  const decode = median(results[i].decode);
  const base = median(results[c.rows === 1 ? 0 : 3].decode);
  const bound = bound1 * c.rows;
  console.log(
    `| ${c.name} | ${median(results[i].prefill).toFixed(0)} | ${decode.toFixed(1)} | ${(base / decode).toFixed(3)} | ${(decode / bound).toFixed(2)} |`,
  );
});
const cost = median(results[0].decode) / median(results[2].decode) - 1;
console.log(`\nrank-16 adapter decode cost at batch 1: ${(cost * 100).toFixed(1)}% of base decode time (target < 10%)`);
await baseRunner.release();
await loraRunner.release();
