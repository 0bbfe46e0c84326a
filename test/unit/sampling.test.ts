/**
 * sampleToken sorts only the candidates it needs (largestFirst). The oracle here is the plain definition: sort
 * every candidate within the gap, cut to top-k, cut to the top-p prefix, walk the order with the draw. Both must
 * pick the same token for the same draw; float sums in another order may only move a draw that sits within
 * 1e-9 of a boundary.
 */
import t from 'tap';
import { sampleToken, seededRandom, type SamplingParams } from '../../src/engine/sampling.js';
import { sampleTokenFullSort as oracle } from '../helpers/sampling-oracle.js';

t.test('same token as the full-sort definition over random logits, parameters and draws', async (t) => {
  const rng = seededRandom(5);
  let cases = 0;
  let mismatches = 0;
  for (let round = 0; round < 1500; round++) {
    const V = [5, 64, 1000, 5000][round % 4];
    const scale = [0.5, 3, 10, 40][(round >> 2) % 4];
    // quantized values give ties now and then
    const logits = Float32Array.from({ length: V }, () => Math.round((rng() * 2 - 1) * scale * 4) / 4);
    const p: SamplingParams = {
      temperature: [0, 0.05, 0.7, 1, 1.8][round % 5],
      topK: [0, 1, 3, 50, 10_000][(round >> 1) % 5],
      topP: [1, 0.95, 0.5, 0.1, 1e-6][(round >> 3) % 5],
    };
    const u = rng();
    const expected = oracle(logits, p, u);
    const actual = sampleToken(logits, p, () => u);
    cases++;
    if (actual !== expected) {
      mismatches++;
      const nudged = [u - 1e-9, u + 1e-9].map((v) => oracle(logits, p, v));
      t.ok(nudged.includes(actual), `round ${round}: ${actual} vs ${expected} only on a boundary`);
    }
  }
  t.ok(mismatches <= cases / 1000, `${cases - mismatches} of ${cases} equal`);
});

t.test('distribution of draws: temperature reshapes it, top-k and top-p cut it', async (t) => {
  const logits = Float32Array.from([2, 1, 0, -1, -30]);
  const draw = (p: SamplingParams, n = 20_000) => {
    const rng = seededRandom(9);
    const counts = new Array(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[sampleToken(logits, p, rng)]++;
    return counts.map((c) => c / n);
  };
  const softmax = (T: number) => {
    const e = [...logits].map((l) => Math.exp(l / T));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / s);
  };
  const plain = draw({ temperature: 1, topK: 0, topP: 1 });
  softmax(1).forEach((q, i) => t.ok(Math.abs(plain[i] - q) < 0.015, `T=1 token ${i}: ${plain[i].toFixed(3)} vs ${q.toFixed(3)}`));
  const topK2 = draw({ temperature: 1, topK: 2, topP: 1 });
  t.same(topK2.slice(2), [0, 0, 0], 'top-k 2 never draws the third token');
  const topP = draw({ temperature: 1, topK: 0, topP: 0.7 });
  t.ok(topP[0] > 0 && topP[1] > 0 && topP[2] === 0, 'top-p 0.7 keeps the two tokens that reach 0.7');
  t.equal(
    sampleToken(logits, { temperature: 0, topK: 0, topP: 1 }, () => 0.99),
    0,
    'temperature 0 is greedy',
  );
});
