/**
 * The in-graph token selection (src/engine/model/sampling-graph.ts) against the host's sampleToken, fed the
 * same uniform draw: greedy, temperature, top-k, top-p and their mixes in one batch must pick the same token.
 * float32 in the graph against float64 on the host can only disagree when the draw lands on a boundary
 * between two candidates' cumulative weights; such a disagreement is allowed only when moving the draw by 1e-5
 * makes the host agree.
 */
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { encodeSamplingModel, samplingFeeds } from '../../src/engine/model/sampling-graph.js';
import type { RowSampling } from '../../src/engine/model/batch-runner.js';
import { logSumExp, sampleToken, seededRandom, type SamplingParams } from '../../src/engine/sampling.js';

const V = 300;

function samplingSession(): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(encodeSamplingModel(V), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
}

/** Chosen token ids and log-probabilities for rows of logits [rows, V], fed as the device path feeds them. */
async function select(session: ort.InferenceSession, logits: Float32Array, rows: RowSampling[]): Promise<[BigInt64Array, Float32Array]> {
  const out = await session.run({ logits: new ort.Tensor('float32', logits, [rows.length, V]), ...samplingFeeds(rows, V) });
  return Object.values(out).map((x) => x.data) as [BigInt64Array, Float32Array];
}

/** A disagreement is a boundary case when nudging the draw by 1e-5 makes the host pick the graph's token. */
function onBoundary(logits: Float32Array, p: SamplingParams, u: number, graphToken: number): boolean {
  return [u - 1e-5, u + 1e-5].some((v) => sampleToken(logits, p, () => Math.min(Math.max(v, 0), 0.9999999)) === graphToken);
}

t.test('in-graph selection picks the host sampler token for the same draw', async (t) => {
  const session = await samplingSession();
  t.teardown(() => session.release());
  const rng = seededRandom(7);
  const paramSets: SamplingParams[] = [
    { temperature: 0, topK: 0, topP: 1 },
    { temperature: 1, topK: 0, topP: 1 },
    { temperature: 0.7, topK: 5, topP: 1 },
    { temperature: 1.3, topK: 0, topP: 0.9 },
    { temperature: 0.5, topK: 40, topP: 0.5 },
    { temperature: 2, topK: 1, topP: 1 },
    { temperature: 1, topK: 0, topP: 0.01 },
  ];
  let compared = 0;
  let boundary = 0;
  for (let round = 0; round < 60; round++) {
    const R = paramSets.length;
    const logits = new Float32Array(R * V);
    // peaked and flat rows alike, with ties now and then
    const spread = 1 + (round % 4) * 3;
    for (let i = 0; i < logits.length; i++) logits[i] = Math.round((rng() * 2 - 1) * spread * 8) / 8;
    const uniform = Float32Array.from({ length: R }, () => rng());
    const [tokens, logprobs] = await select(
      session,
      logits,
      paramSets.map((p, r) => ({ ...p, uniform: uniform[r] })),
    );
    paramSets.forEach((p, r) => {
      const row = logits.subarray(r * V, (r + 1) * V);
      const host = sampleToken(row, p, () => uniform[r]);
      const graph = Number(tokens[r]);
      compared++;
      if (graph !== host) {
        boundary++;
        t.ok(onBoundary(row, p, uniform[r], graph), `round ${round} row ${r}: graph ${graph} vs host ${host} only on a boundary`);
      }
      const expected = row[graph] - logSumExp(row);
      if (Math.abs(logprobs[r] - expected) > 1e-4) t.fail(`round ${round} row ${r}: logprob ${logprobs[r]} vs ${expected}`);
    });
  }
  t.ok(boundary <= compared / 100, `${compared - boundary} of ${compared} draws equal the host's; ${boundary} boundary cases`);
});

t.test('greedy rows take the first of tied maxima, like the host', async (t) => {
  const session = await samplingSession();
  t.teardown(() => session.release());
  const logits = new Float32Array(V);
  logits[17] = 3;
  logits[42] = 3;
  const [tokens] = await select(session, logits, [{ temperature: 0, topK: 0, topP: 1, uniform: 0.99 }]);
  t.equal(Number(tokens[0]), 17);
});

t.test('a draw follows the distribution: 4000 draws over three tokens', async (t) => {
  const session = await samplingSession();
  t.teardown(() => session.release());
  const logits = new Float32Array(V).fill(-100);
  logits[3] = Math.log(0.5);
  logits[9] = Math.log(0.3);
  logits[200] = Math.log(0.2);
  const N = 4000;
  const rng = seededRandom(11);
  const rows = Array.from({ length: N }, () => ({ temperature: 1, topK: 0, topP: 1, uniform: rng() }));
  const [tokens] = await select(
    session,
    new Float32Array(N * V).map((_, i) => logits[i % V]),
    rows,
  );
  const counts = new Map<number, number>();
  for (const id of tokens) counts.set(Number(id), (counts.get(Number(id)) ?? 0) + 1);
  t.same(
    [...counts.keys()].sort((a, b) => a - b),
    [3, 9, 200],
    'only the three likely tokens',
  );
  for (const [id, p] of [
    [3, 0.5],
    [9, 0.3],
    [200, 0.2],
  ] as const) {
    const share = counts.get(id)! / N;
    // 4 standard deviations of a binomial share
    t.ok(Math.abs(share - p) < 4 * Math.sqrt((p * (1 - p)) / N), `token ${id}: ${share.toFixed(3)} vs ${p}`);
  }
});
