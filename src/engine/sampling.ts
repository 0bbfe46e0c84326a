/** Token selection from a row of logits: greedy, or temperature + top-k + top-p with a seeded generator. */

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  topP: number;
  /** 0 = no top-k cut. */
  topK: number;
}

/** A small, fast, seedable generator (mulberry32) so that a seed reproduces a sampled generation. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Indices of the k largest logits, largest first. */
export function topIndices(logits: Float32Array, k: number): number[] {
  const top: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    if (top.length === k && logits[i] <= logits[top[k - 1]]) continue;
    let pos = top.length === k ? k - 1 : top.length;
    if (top.length < k) top.push(i);
    while (pos > 0 && logits[top[pos - 1]] < logits[i]) {
      top[pos] = top[pos - 1];
      pos--;
    }
    top[pos] = i;
  }
  return top;
}

/** Candidates whose probability is within e^-40 of the best carry all the mass that float32 can see. */
const NEGLIGIBLE_LOGIT_GAP = 40;

export function sampleToken(logits: Float32Array, params: SamplingParams, random: () => number): number {
  if (params.temperature <= 0) return argmax(logits);
  const best = logits[argmax(logits)];
  const floor = best - NEGLIGIBLE_LOGIT_GAP * params.temperature;
  let candidates: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] >= floor) candidates.push(i);
  candidates.sort((x, y) => logits[y] - logits[x]);
  if (params.topK > 0 && candidates.length > params.topK) candidates = candidates.slice(0, params.topK);
  const weights = candidates.map((i) => Math.exp((logits[i] - best) / params.temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (params.topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < weights.length) {
      cumulative += weights[keep++] / total;
      if (cumulative >= params.topP) break;
    }
    candidates = candidates.slice(0, keep);
    weights.length = keep;
    total = weights.reduce((a, b) => a + b, 0);
  }
  let r = random() * total;
  for (let i = 0; i < candidates.length; i++) {
    r -= weights[i];
    if (r <= 0) return candidates[i];
  }
  return candidates[candidates.length - 1];
}
