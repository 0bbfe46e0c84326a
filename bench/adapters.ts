/**
 * `npm run bench:adapters`: multi-adapter serving on the ~100M-parameter bench model, all in one run.
 *  1. generated tokens/s with 16 concurrent clients: base only; one adapter; 3 adapters mixed; 64 adapters
 *     mixed with 8 device slots (swapping);
 *  2. the same 16 requests concurrently vs one after another;
 *  3. the naive alternative (one onnxruntime session per adapter, LoRA merged into the weights): resident
 *     memory with 3 and 16 adapters and the time to switch adapter, against this server's engine;
 *  4. cold-load latency (disk to usable in a device slot) for ranks 8, 16 and 64.
 * Memory is measured in child processes (one per figure) so that each starts from a clean heap.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { availableParallelism, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { Engine } from '../src/engine/engine.js';
import { readModelSpec } from '../src/engine/model/hf-config.js';
import { CheckpointWeights } from '../src/engine/model/weights.js';
import { ensureOnnxModel } from '../src/engine/model/model-cache.js';
import { encodeSafetensors, readSafetensorsHeader, readTensorAsFloat32 } from '../src/engine/model/safetensors.js';
import { PROJECTIONS, hfWeightName, projectionShape } from '../src/engine/model/graph-builder.js';
import { loadPeftAdapter, loadPeftAdapterAsync, moduleKey } from '../src/engine/lora/peft-adapter.js';
import { SlotStacks } from '../src/engine/lora/slot-stacks.js';
import { writeRandomAdapter, writeRandomModel, writeWordTokenizer, type RandomModelShape } from './random-checkpoint.js';
import type { GenerateRequest } from '../src/engine/types.js';

const SHAPE: RandomModelShape = { hidden: 768, intermediate: 2048, layers: 12, heads: 12, kvHeads: 4, vocab: 32000, maxPositions: 2048 };
const CLIENTS = 16;
const PROMPT_TOKENS = 32;
const NEW_TOKENS = Number(process.env.BENCH_NEW_TOKENS ?? 32);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 48);
const ADAPTER_RANK = 16;

const root = resolve('.cache/bench');
const modelDir = join(root, 'llama-100m');
const adaptersDir = join(root, 'adapters-64');

function prepare(): void {
  mkdirSync(adaptersDir, { recursive: true });
  writeRandomModel(modelDir, SHAPE);
  if (!existsSync(join(modelDir, 'tokenizer.json'))) writeWordTokenizer(modelDir, SHAPE.vocab);
  for (let i = 0; i < 64; i++) {
    const dir = join(adaptersDir, `a${i}`);
    if (!existsSync(join(dir, 'adapter_model.safetensors'))) writeRandomAdapter(dir, SHAPE, ADAPTER_RANK, PROJECTIONS, 100 + i);
  }
  for (const rank of [8, 16, 64]) {
    const dir = join(root, `cold-r${rank}`);
    if (!existsSync(join(dir, 'adapter_model.safetensors'))) writeRandomAdapter(dir, SHAPE, rank, PROJECTIONS, 7 + rank);
  }
}

function engineOptions(adapterSlots: number) {
  return {
    modelDir,
    adaptersDir,
    cacheDir: join(root, 'onnx'),
    executionProviders: ['cpu'],
    maxBatch: CLIENTS,
    maxBatchTokens: CLIENTS * 256,
    maxQueue: 1024,
    adapterSlots,
    maxLoraRank: 64,
    hostCacheBytes: 2 * 2 ** 30,
    maxSequenceLength: 256,
    prefillChunk: 256,
    requestTimeoutMs: 600_000,
  };
}

function request(i: number, adapter: string | null): GenerateRequest {
  const promptTokenIds = Array.from({ length: PROMPT_TOKENS }, (_, k) => 2 + ((i * 131 + k * 7919) % (SHAPE.vocab - 2)));
  return { adapter, promptTokenIds, maxTokens: NEW_TOKENS, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true, logprobs: false };
}

/** CLIENTS concurrent clients share REQUESTS requests; returns generated tokens per second. */
async function throughput(engine: Engine, adapterFor: (i: number) => string | null, requests = REQUESTS, clients = CLIENTS): Promise<number> {
  let next = 0;
  let tokens = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < requests) {
        const i = next++;
        // Not `tokens += await ...`: that reads `tokens` before the await and loses the other clients' counts.
        const result = await engine.generate(request(i, adapterFor(i)));
        tokens += result.usage.completionTokens;
      }
    }),
  );
  return (tokens / (performance.now() - started)) * 1000;
}

/** Writes an HF checkpoint with the adapter merged into the base weights (the naive alternative). */
function writeMergedCheckpoint(adapterDir: string, outDir: string): void {
  if (existsSync(join(outDir, 'model.safetensors'))) return;
  const spec = readModelSpec(modelDir);
  const adapter = loadPeftAdapter('m', adapterDir, spec, 64);
  const header = readSafetensorsHeader(join(modelDir, 'model.safetensors'));
  const tensors = [...header.tensors.values()].map((info) => ({
    name: info.name,
    dtype: 'F32' as const,
    shape: info.shape,
    data: readTensorAsFloat32(header, info.name),
  }));
  for (let l = 0; l < spec.numLayers; l++) {
    for (const p of PROJECTIONS) {
      const m = adapter.modules.get(moduleKey(l, p));
      if (!m) continue;
      const [inSize, outSize] = projectionShape(spec, p);
      const w = tensors.find((x) => x.name === hfWeightName(l, p))!.data; // [out, in]
      for (let o = 0; o < outSize; o++)
        for (let i = 0; i < inSize; i++) {
          let delta = 0;
          for (let r = 0; r < m.rank; r++) delta += m.a[i * m.rank + r] * m.b[r * outSize + o];
          w[o * inSize + i] += delta;
        }
    }
  }
  mkdirSync(outDir, { recursive: true });
  execFileSync('cp', [join(modelDir, 'config.json'), join(outDir, 'config.json')]);
  writeFileSync(join(outDir, 'model.safetensors'), encodeSafetensors(tensors));
}

function rssMb(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

/** Child-process mode: prints the RSS growth of holding `count` adapters one way or the other. */
async function memoryProbe(mode: 'ours' | 'naive', count: number): Promise<void> {
  const before = rssMb();
  if (mode === 'ours') {
    const engine = await Engine.load({ ...engineOptions(8), adaptersDir: join(root, `only-${count}`) });
    for (let i = 0; i < count; i++) await engine.generate({ ...request(i, `a${i}`), maxTokens: 1 });
    console.log(JSON.stringify({ rssMb: rssMb() - before }));
    return;
  }
  const sessions = [];
  const switchMs: number[] = [];
  for (let i = 0; i < count; i++) {
    const dir = join(root, 'merged', `a${i}`);
    const onnx = ensureOnnxModel(dir, readModelSpec(dir), new CheckpointWeights(dir), { maxSequenceLength: 256, lora: false }, join(root, 'onnx-merged'));
    const t0 = performance.now();
    sessions.push(await ort.InferenceSession.create(onnx.path, { graphOptimizationLevel: 'all', intraOpNumThreads: availableParallelism() }));
    switchMs.push(performance.now() - t0);
  }
  console.log(JSON.stringify({ rssMb: rssMb() - before, switchMs }));
}

function probe(mode: 'ours' | 'naive', count: number): { rssMb: number; switchMs?: number[] } {
  const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--probe', mode, String(count)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

async function coldLoad(rank: number): Promise<number> {
  const spec = readModelSpec(modelDir);
  const stacks = new SlotStacks(spec, 2);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    stacks.write(1, await loadPeftAdapterAsync(`r${rank}`, join(root, `cold-r${rank}`), spec, 64));
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[1];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  prepare();
  const engine = await Engine.load(engineOptions(8));
  const warm = () => throughput(engine, () => null, CLIENTS);
  await warm();
  const scenarios: Array<[string, (i: number) => string | null]> = [
    ['base only', () => null],
    ['one adapter', () => 'a0'],
    ['3 adapters mixed', (i) => `a${i % 3}`],
    ['64 adapters mixed, 8 device slots', (i) => `a${(i * 37) % 64}`],
  ];
  const tps = new Map<string, number>();
  for (const [name, adapterFor] of scenarios) tps.set(name, await throughput(engine, adapterFor));
  const evictions = engine.adapters.counters.deviceEvictions;
  const sequential = await throughput(engine, (i) => `a${i % 3}`, CLIENTS, 1);
  const concurrent = await throughput(engine, (i) => `a${i % 3}`, CLIENTS, CLIENTS);
  await engine.close();

  const cold = new Map<number, number>();
  for (const rank of [8, 16, 64]) cold.set(rank, await coldLoad(rank));

  for (const count of [3, 16]) {
    const dir = join(root, `only-${count}`);
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < count; i++) if (!existsSync(join(dir, `a${i}`))) cpSync(join(adaptersDir, `a${i}`), join(dir, `a${i}`), { recursive: true });
  }
  for (let i = 0; i < 16; i++) writeMergedCheckpoint(join(adaptersDir, `a${i}`), join(root, 'merged', `a${i}`));
  const memory = { ours3: probe('ours', 3), ours16: probe('ours', 16), naive3: probe('naive', 3), naive16: probe('naive', 16) };

  const base = tps.get('base only')!;
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, node ${process.version}, onnxruntime-node CPU EP`);
  console.log(`model: ~100M-parameter random Llama (hidden 768, 12 layers, vocab 32000), float32; adapters rank ${ADAPTER_RANK} on all 7 projections`);
  console.log(`workload: ${CLIENTS} concurrent clients, ${REQUESTS} requests of ${PROMPT_TOKENS} prompt + ${NEW_TOKENS} generated tokens (greedy)\n`);
  console.log('| scenario | generated tok/s | vs base only | target |');
  console.log('| --- | ---: | ---: | --- |');
  const targets: Record<string, string> = { '3 adapters mixed': '>= 0.90', '64 adapters mixed, 8 device slots': '>= 0.75' };
  for (const [name] of scenarios) console.log(`| ${name} | ${tps.get(name)!.toFixed(1)} | ${(tps.get(name)! / base).toFixed(3)} | ${targets[name] ?? ''} |`);
  console.log(`\n64-adapter run: ${evictions} device-slot replacements.`);
  console.log(
    `\n| ${CLIENTS} requests, 3 adapters mixed | generated tok/s |\n| --- | ---: |\n| one after another | ${sequential.toFixed(1)} |\n| ${CLIENTS} concurrent | ${concurrent.toFixed(1)} |\n| ratio (target >= 3x) | ${(concurrent / sequential).toFixed(2)}x |`,
  );
  console.log('\n| serving N adapters | this server: RSS growth | naive (one merged session per adapter): RSS growth |\n| --- | ---: | ---: |');
  console.log(`| 3 | ${memory.ours3.rssMb.toFixed(0)} MiB | ${memory.naive3.rssMb.toFixed(0)} MiB |`);
  console.log(`| 16 | ${memory.ours16.rssMb.toFixed(0)} MiB | ${memory.naive16.rssMb.toFixed(0)} MiB |`);
  console.log(
    `\ntime to switch adapter: naive = create its session from disk, median ${median(memory.naive16.switchMs!).toFixed(0)} ms; this server = host tier to device slot (below, rank ${ADAPTER_RANK}: ${cold.get(16)!.toFixed(1)} ms from disk), or 0 when resident.`,
  );
  console.log('\n| cold load (disk to usable in a slot) | ms (median of 3) |\n| --- | ---: |');
  for (const [rank, ms] of cold) console.log(`| rank ${rank}, all 7 projections | ${ms.toFixed(1)} |`);
}

const probeAt = process.argv.indexOf('--probe');
if (probeAt >= 0) await memoryProbe(process.argv[probeAt + 1] as 'ours' | 'naive', Number(process.argv[probeAt + 2]));
else await main();
