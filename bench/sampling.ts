/**
 * `npm run bench:sampling`: the host's sampleToken (what the host path runs) against its plain definition (a full
 * sort of the candidates, test/helpers/sampling-oracle.ts), and token selection inside the graph
 * (src/engine/model/sampling-graph.ts, what the device-resident path runs), on the same logits:
 * a batch of 32 rows over a 128,256-token vocabulary (Llama 3), for greedy, temperature + top-k 50, temperature +
 * top-p 0.9, and pure temperature. Both on this machine's CPU; the graph time includes feeding the logits in.
 * What the GPU gains (no logits read back) is not measured here: see docs/gpu.md.
 */
import { availableParallelism, cpus } from 'node:os';
import * as ort from 'onnxruntime-node';
import { encodeSamplingModel, samplingFeeds } from '../src/engine/model/sampling-graph.js';
import { sampleToken, seededRandom, type SamplingParams } from '../src/engine/sampling.js';
import { sampleTokenFullSort } from '../test/helpers/sampling-oracle.js';

const V = 128_256;
const B = 32;
const ROUNDS = 10;

const rng = seededRandom(3);
// Peaked like a language model's logits: a few likely tokens over a broad tail.
const logits = new Float32Array(B * V);
for (let i = 0; i < logits.length; i++) logits[i] = (rng() + rng() + rng() - 1.5) * 4 + (rng() < 0.0005 ? 12 : 0);

const session = await ort.InferenceSession.create(encodeSamplingModel(V), { executionProviders: ['cpu'] });
const cases: Array<[string, SamplingParams]> = [
  ['greedy', { temperature: 0, topK: 0, topP: 1 }],
  ['temperature 0.8, top-k 50', { temperature: 0.8, topK: 50, topP: 1 }],
  ['temperature 0.8, top-p 0.9', { temperature: 0.8, topK: 0, topP: 0.9 }],
  ['temperature 1.0', { temperature: 1, topK: 0, topP: 1 }],
];

function inGraph(p: SamplingParams, uniform: Float32Array): Promise<unknown> {
  const rows = Array.from(uniform, (u) => ({ ...p, uniform: u }));
  return session.run({ logits: new ort.Tensor('float32', logits, [B, V]), ...samplingFeeds(rows, V) });
}

function onHost(p: SamplingParams, uniform: Float32Array): void {
  for (let r = 0; r < B; r++) sampleToken(logits.subarray(r * V, (r + 1) * V), p, () => uniform[r]);
}

function fullSort(p: SamplingParams, uniform: Float32Array): void {
  for (let r = 0; r < B; r++) sampleTokenFullSort(logits.subarray(r * V, (r + 1) * V), p, uniform[r]);
}

async function time(f: () => unknown): Promise<number> {
  await f();
  const t0 = performance.now();
  for (let i = 0; i < ROUNDS; i++) await f();
  return (performance.now() - t0) / ROUNDS;
}

console.log(
  `bench:sampling on ${cpus()[0]?.model ?? '?'} x${availableParallelism()}, node ${process.version}: batch ${B}, vocabulary ${V}, mean of ${ROUNDS} runs`,
);
console.log('| selection | full sort (definition) ms | host sampleToken ms | host / full sort | in-graph ms | in-graph / host |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const [name, p] of cases) {
  const uniform = Float32Array.from({ length: B }, () => rng());
  const sorted = await time(() => fullSort(p, uniform));
  const host = await time(() => onHost(p, uniform));
  const graph = await time(() => inGraph(p, uniform));
  console.log(`| ${name} | ${sorted.toFixed(1)} | ${host.toFixed(1)} | ${(host / sorted).toFixed(3)} | ${graph.toFixed(1)} | ${(graph / host).toFixed(2)} |`);
}
await session.release();
