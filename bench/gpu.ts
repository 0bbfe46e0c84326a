/**
 * `npm run bench:gpu` (on the device machine, see docs/gpu.md): the engine as the server runs it, with its decoding
 * state resident on onnxruntime-node's WebGPU provider (or whichever BENCH_PROVIDER names).
 *  1. correctness: the fixture model and its adapters against the HF reference, greedy, all cases in one batch;
 *  2. the device's effective weight-read bandwidth (a batch-1 GEMV over a 512 MiB weight, memory bound);
 *  3. a Llama-3.2-1B-shaped random model (hidden 2048, 16 layers, 32/8 heads, vocab 128256), 128-token prompts,
 *     64 new tokens, batch 1, 8 and 32: no adapter vs 8 rank-16 q/k/v/o adapters mixed, generated tokens/s,
 *     and the bandwidth bound (weight bytes per step / measured bandwidth);
 *  4. onnxruntime's per-op profile of the same model's decode steps (batch 8, mixed adapters).
 * BENCH_SHAPE=small runs the same on a small shape (for a dry run on CPU). `--quantize int8|int4` serves the base
 * quantized (MatMulNBits / GatherBlockQuantized; the bound then counts the graph's packed bytes).
 */
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { availableParallelism, cpus } from 'node:os';
import * as ort from 'onnxruntime-node';
import { Engine } from '../src/engine/engine.js';
import { QUANTIZE_MODES, type QuantizeMode } from '../src/config.js';
import { readModelSpec } from '../src/engine/model/hf-config.js';
import { CheckpointWeights } from '../src/engine/model/weights.js';
import { ensureOnnxModel } from '../src/engine/model/model-cache.js';
import { DeviceRunner } from '../src/engine/model/device-runner.js';
import { SlotStacks } from '../src/engine/lora/slot-stacks.js';
import { loadPeftAdapter } from '../src/engine/lora/peft-adapter.js';
import type { GenerateRequest } from '../src/engine/types.js';
import { DataType, encodeModel } from '../src/engine/model/onnx-proto.js';
import { writeRandomAdapter, writeRandomModel, writeWordTokenizer, type RandomModelShape } from './random-checkpoint.js';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL, reference } from '../test/helpers/engine.js';

const provider = process.env.BENCH_PROVIDER ?? 'webgpu';
const dtypeFlag = process.argv.indexOf('--dtype');
const dtype = (dtypeFlag >= 0 ? process.argv[dtypeFlag + 1] : 'float16') as 'float16' | 'float32';
if (dtype !== 'float16' && dtype !== 'float32') throw new Error(`--dtype must be float16 or float32, got ${dtype}`);
const bytesPerWeight = dtype === 'float16' ? 2 : 4;
const quantizeFlag = process.argv.indexOf('--quantize');
const quantize = (quantizeFlag >= 0 ? process.argv[quantizeFlag + 1] : 'none') as QuantizeMode;
if (!QUANTIZE_MODES.includes(quantize)) throw new Error(`--quantize must be one of ${QUANTIZE_MODES.join(', ')}, got ${quantize}`);
const small = process.env.BENCH_SHAPE === 'small';
const SHAPE: RandomModelShape = small
  ? { hidden: 256, intermediate: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 4096, maxPositions: 512 }
  : { hidden: 2048, intermediate: 8192, layers: 16, heads: 32, kvHeads: 8, vocab: 128256, maxPositions: 4096 };
const PROMPT = 128;
const NEW_TOKENS = 64;
const BATCHES = (process.env.BENCH_BATCHES ?? '1,8,32').split(',').map(Number);
const root = resolve(process.env.BENCH_DIR ?? '.cache/bench-gpu');
const log = (...args: unknown[]) => console.log(...args);

/** Engine options for a device-resident engine on `provider` (the serving path of a GPU server). */
function deviceEngine(modelDir: string, adaptersDir: string, maxBatch: number, maxSequenceLength: number): Promise<Engine> {
  return Engine.load({
    modelDir,
    adaptersDir,
    cacheDir: join(root, 'onnx'),
    executionProviders: [provider],
    stateResidency: 'device',
    dtype,
    quantize,
    maxBatch,
    maxBatchTokens: maxBatch * maxSequenceLength,
    maxQueue: 1024,
    adapterSlots: 8,
    maxLoraRank: 64,
    hostCacheBytes: 1 << 30,
    maxSequenceLength,
    prefillChunk: 4096,
    requestTimeoutMs: 600_000,
  });
}

const greedy = (adapter: string | null, promptTokenIds: number[], maxTokens: number): GenerateRequest => ({
  adapter,
  promptTokenIds,
  maxTokens,
  temperature: 0,
  topP: 1,
  topK: 0,
  stop: [],
  ignoreEos: true,
  logprobs: false,
});

async function correctness(): Promise<void> {
  const engine = await deviceEngine(FIXTURE_MODEL, FIXTURE_ADAPTERS, 8, 256);
  if (engine.provider !== provider) log(`WARNING: ${provider} unavailable, the engine serves on ${engine.provider}`);
  const results = await Promise.all(reference.cases.map((c) => engine.generate({ ...greedy(c.adapter, c.prompt_token_ids, 24), logprobs: true })));
  let tokensEqual = 0;
  let wideMarginEqual = 0;
  let worst = 0;
  results.forEach((r, i) => {
    const c = reference.cases[i];
    const diverge = r.tokenIds.findIndex((id, k) => id !== c.greedy_token_ids[k]);
    const prefix = diverge < 0 ? 24 : diverge;
    if (prefix === 24) tokensEqual++;
    if (prefix === 24 && c.greedy_min_margin >= 0.05) wideMarginEqual++;
    for (let k = 0; k < prefix; k++) worst = Math.max(worst, Math.abs(r.logprobs![k] - c.greedy_logprobs[k]));
  });
  const wide = reference.cases.filter((c) => c.greedy_min_margin >= 0.05).length;
  log(
    `correctness (${engine.provider}, ${engine.dtype}, device-resident engine, all cases in one mixed batch): ${tokensEqual}/${reference.cases.length} cases with all 24 greedy tokens equal to HF (${wideMarginEqual}/${wide} of those whose reference margin is >= 0.05); max |logprob - HF| where the tokens agree = ${worst.toExponential(2)} (test bounds: float32 1e-4, 2e-4 for one case; float16 0.3)`,
  );
  await engine.close();
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
  const gbps = weight.byteLength / seconds / 1e9;
  log(
    `effective weight-read bandwidth (${provider}, GEMV over ${(weight.byteLength / 2 ** 20).toFixed(0)} MiB, incl. one host round trip per run): ${gbps.toFixed(0)} GB/s`,
  );
  return gbps;
}

async function throughput(gbps: number): Promise<void> {
  const modelDir = join(root, small ? 'llama-small' : 'llama-1b');
  const adaptersDir = join(root, 'adapters');
  const t0 = performance.now();
  const params = writeRandomModel(modelDir, SHAPE, 1);
  writeWordTokenizer(modelDir, SHAPE.vocab);
  for (let i = 0; i < 8; i++) writeRandomAdapter(join(adaptersDir, `a${i}`), SHAPE, 16, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], 50 + i);
  const maxSequenceLength = PROMPT + NEW_TOKENS + 8;
  log(
    `model: ${(params / 1e9).toFixed(2)}B parameters, ${dtype} weights (${((params * bytesPerWeight) / 2 ** 30).toFixed(2)} GiB); prepared in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  let stepBytes = params * bytesPerWeight;
  log(`\n| batch | base (no adapter) tok/s | 8 adapters mixed tok/s | mixed / base | bandwidth bound tok/s |`);
  log('| ---: | ---: | ---: | ---: | ---: |');
  for (const B of BATCHES) {
    const engine = await deviceEngine(modelDir, adaptersDir, B, maxSequenceLength);
    if (engine.provider !== provider) throw new Error(`${provider} did not start (the engine fell back to ${engine.provider}); see the log above`);
    if (quantize !== 'none') {
      stepBytes = engine.baseWeights.bytes; // packed weights, scales and zero points, as the graph holds them
      log(`(base weights ${engine.baseWeights.format}: ${(stepBytes / 2 ** 30).toFixed(2)} GiB in the graph)`);
    }
    const prompts = Array.from({ length: B }, (_, r) => Array.from({ length: PROMPT }, (_, k) => 2 + ((r * 977 + k * 7919) % (SHAPE.vocab - 2))));
    const measure = async (adapterOf: (row: number) => string | null) => {
      await Promise.all(prompts.map((p, r) => engine.generate(greedy(adapterOf(r), p, 4))));
      const t = performance.now();
      await Promise.all(prompts.map((p, r) => engine.generate(greedy(adapterOf(r), p, NEW_TOKENS))));
      return (B * NEW_TOKENS) / ((performance.now() - t) / 1000);
    };
    const base = () => measure(() => null);
    const mixed = () => measure((r) => `a${r % 8}`);
    const b1 = await base();
    const m1 = await mixed();
    const b2 = await base();
    const m2 = await mixed();
    const bTps = Math.max(b1, b2);
    const mTps = Math.max(m1, m2);
    const bound = B / (stepBytes / (gbps * 1e9));
    log(`| ${B} | ${bTps.toFixed(1)} | ${mTps.toFixed(1)} | ${(mTps / bTps).toFixed(3)} | ${bound.toFixed(0)} |`);
    await engine.close();
  }
  log(
    '\n(tok/s = generated tokens / wall time from submitting B concurrent requests to the last token: one prefill per sequence interleaved with decode steps, as the server runs them; best of two interleaved runs; the bound counts only decode weight reads.)',
  );
}

/**
 * onnxruntime's profiler on the serving path's runner: batch 8 with 8 mixed adapters, one prefill per row and
 * 16 decode steps; prints where the time goes per op type and provider, and each run's wall time against the
 * sum of its kernels' times (the difference is per-run overhead: dispatch, synchronization, copies).
 */
async function profile(): Promise<void> {
  const modelDir = join(root, small ? 'llama-small' : 'llama-1b');
  const spec = readModelSpec(modelDir);
  const maxSequenceLength = PROMPT + NEW_TOKENS + 8;
  const onnx = ensureOnnxModel(
    modelDir,
    spec,
    new CheckpointWeights(modelDir),
    { maxSequenceLength, lora: true, sampling: true, loraFormulation: 'masked', quantize, ...(dtype === 'float16' ? { dtype } : {}) },
    join(root, 'onnx'),
  );
  const stacks = new SlotStacks(spec, 9);
  for (let i = 0; i < 8; i++) stacks.write(i + 1, loadPeftAdapter(`a${i}`, join(root, 'adapters', `a${i}`), spec, 64));
  const prefix = join(root, 'profile');
  const B = 8;
  const runner = await DeviceRunner.create(onnx.path, spec, { maxBatch: B, maxSequenceLength, provider, dtype, profileFilePrefix: prefix }, stacks);
  const greedyRow = { temperature: 0, topK: 0, topP: 1, uniform: 0 };
  const tokens: number[] = [];
  for (let r = 0; r < B; r++) {
    const prompt = Array.from({ length: PROMPT }, (_, k) => 2 + ((r * 977 + k * 7919) % (SHAPE.vocab - 2)));
    tokens.push((await runner.prefill(r, prompt, 0, r + 1, [PROMPT - 1], greedyRow)).tokens![0]);
  }
  for (let step = 0; step < 16; step++) {
    const out = await runner.decode(
      tokens.map((token, r) => ({ token, pastLength: PROMPT + step, slot: r + 1 })),
      tokens.map(() => greedyRow),
    );
    out.tokens!.forEach((t, r) => (tokens[r] = t));
  }
  runner.endProfiling();
  await runner.release();
  const file = readdirSync(root)
    .filter((f) => f.startsWith('profile') && f.endsWith('.json'))
    .map((f) => join(root, f))
    .sort()
    .pop();
  if (!file) throw new Error('no profile file was written');
  type Event = { cat: string; name: string; dur: number; args?: { op_name?: string; provider?: string } };
  const events = JSON.parse(readFileSync(file, 'utf8')) as Event[];
  const byOp = new Map<string, { us: number; count: number }>();
  const byProvider = new Map<string, number>();
  let kernelUs = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const key = `${e.args?.op_name ?? '?'} on ${e.args?.provider ?? '?'}`;
    const entry = byOp.get(key) ?? { us: 0, count: 0 };
    entry.us += e.dur;
    entry.count++;
    byOp.set(key, entry);
    byProvider.set(e.args?.provider ?? '?', (byProvider.get(e.args?.provider ?? '?') ?? 0) + 1);
    kernelUs += e.dur;
  }
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const runUs = runs.reduce((n, e) => n + e.dur, 0);
  log(`profile (${provider}, batch ${B}, 8 mixed adapters, ${B} prefills + 16 decode steps; ${file}):`);
  log(
    `  ${runs.length} runs, ${(runUs / 1000).toFixed(1)} ms in run(), ${(kernelUs / 1000).toFixed(1)} ms in kernels as timed by onnxruntime (${((100 * kernelUs) / Math.max(1, runUs)).toFixed(0)}%)`,
  );
  log(`  kernel launches per provider: ${[...byProvider].map(([p, n]) => `${p} ${n}`).join(', ')}`);
  log('  | op on provider | ms | launches | µs per launch |');
  log('  | --- | ---: | ---: | ---: |');
  for (const [key, { us, count }] of [...byOp].sort((a, b) => b[1].us - a[1].us).slice(0, 20)) {
    log(`  | ${key} | ${(us / 1000).toFixed(2)} | ${count} | ${(us / count).toFixed(1)} |`);
  }
}

mkdirSync(root, { recursive: true });
log(
  `provider ${provider}, ${dtype}${quantize === 'none' ? '' : `, --quantize ${quantize}`}; host ${cpus()[0]?.model ?? '?'} x${availableParallelism()}; node ${process.version}`,
);
const phases: Array<[string, () => Promise<unknown>]> = [['correctness', correctness]];
let gbps = 0;
phases.push(['bandwidth', async () => (gbps = await bandwidth())]);
phases.push(['throughput', () => throughput(gbps || 1000)]);
phases.push(['profile', profile]);
for (const [name, phase] of phases) {
  const t = performance.now();
  try {
    await phase();
  } catch (e) {
    log(`${name} FAILED: ${(e as Error).stack ?? e}`);
  }
  log(`[${name}: ${((performance.now() - t) / 1000).toFixed(1)} s]`);
}
