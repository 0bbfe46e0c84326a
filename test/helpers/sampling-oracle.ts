/**
 * Token selection by its plain definition: sort every candidate within 40 temperatures of the best, cut to
 * top-k, cut to the top-p prefix, walk the order with the draw. The oracle for src/engine/sampling.ts (which
 * sorts only what it needs) and the baseline of bench/sampling.ts.
 */
import { argmax, type SamplingParams } from '../../src/engine/sampling.js';

export function sampleTokenFullSort(logits: Float32Array, p: SamplingParams, u: number): number {
  if (p.temperature <= 0) return argmax(logits);
  const best = logits[argmax(logits)];
  let ids = [...logits.keys()].filter((i) => logits[i] >= best - 40 * p.temperature);
  ids.sort((x, y) => logits[y] - logits[x] || x - y);
  if (p.topK > 0) ids = ids.slice(0, p.topK);
  let w = ids.map((i) => Math.exp((logits[i] - best) / p.temperature));
  let total = w.reduce((a, b) => a + b, 0);
  if (p.topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < w.length) {
      cumulative += w[keep++] / total;
      if (cumulative >= p.topP) break;
    }
    ids = ids.slice(0, keep);
    w = w.slice(0, keep);
    total = w.reduce((a, b) => a + b, 0);
  }
  let r = u * total;
  for (let i = 0; i < ids.length; i++) if ((r -= w[i]) <= 0) return ids[i];
  return ids[ids.length - 1];
}
