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

/** The tokens within the gap of the best, with their weights exp((logit - best) / T) and gaps (best - logit) / T. */
interface Pool {
  ids: Int32Array;
  weights: Float64Array;
  gaps: Float64Array;
}

/**
 * Members of the pool, largest weight first (ties: lower token id first), enough of them that `enough(count,
 * mass)` holds, or all. Sorting a 128k-token vocabulary costs tens of milliseconds per row, so this sorts only
 * the members above a cut: the gaps are bucketed by whole temperatures in one pass, and every member below the
 * cut has a smaller weight than every member above it, so the returned prefix is exactly the full sort's.
 */
function largestFirst(pool: Pool, enough: (count: number, mass: number) => boolean): number[] {
  const count = new Float64Array(NEGLIGIBLE_LOGIT_GAP + 1);
  const mass = new Float64Array(NEGLIGIBLE_LOGIT_GAP + 1);
  for (let i = 0; i < pool.ids.length; i++) {
    const b = Math.floor(pool.gaps[i]); // 0..NEGLIGIBLE_LOGIT_GAP: the pool holds only gaps within it
    count[b]++;
    mass[b] += pool.weights[i];
  }
  let cut = NEGLIGIBLE_LOGIT_GAP;
  for (let b = 0, n = 0, m = 0; b <= NEGLIGIBLE_LOGIT_GAP; b++) {
    n += count[b];
    m += mass[b];
    if (enough(n, m)) {
      cut = b;
      break;
    }
  }
  const chosen: number[] = [];
  for (let i = 0; i < pool.ids.length; i++) if (Math.floor(pool.gaps[i]) <= cut) chosen.push(i);
  return chosen.sort((x, y) => pool.weights[y] - pool.weights[x] || pool.ids[x] - pool.ids[y]);
}

const sum = (pool: Pool, members: number[]) => members.reduce((n, i) => n + pool.weights[i], 0);

/**
 * Greedy at temperature 0; otherwise: the candidates within the gap of the best, sorted by probability, cut to
 * top-k, then to the smallest prefix whose probability reaches top-p, and one draw walking that order.
 * (The graph's selection in model/sampling-graph.ts follows the same steps, so a draw gives the same token.)
 */
export function sampleToken(logits: Float32Array, params: SamplingParams, random: () => number): number {
  if (params.temperature <= 0) return argmax(logits);
  const T = params.temperature;
  const best = logits[argmax(logits)];
  const floor = best - NEGLIGIBLE_LOGIT_GAP * T;
  let size = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] >= floor) size++;
  const pool: Pool = { ids: new Int32Array(size), weights: new Float64Array(size), gaps: new Float64Array(size) };
  for (let i = 0, n = 0; i < logits.length; i++) {
    if (logits[i] < floor) continue;
    const gap = (best - logits[i]) / T;
    pool.ids[n] = i;
    pool.gaps[n] = gap;
    pool.weights[n++] = Math.exp(-gap);
  }
  // `ranked`: the candidates still in play, largest first; null while that is the whole (unsorted) pool.
  let ranked: number[] | null = null;
  if (params.topK > 0 && pool.ids.length > params.topK) ranked = largestFirst(pool, (n) => n >= params.topK).slice(0, params.topK);
  let total = ranked ? sum(pool, ranked) : pool.weights.reduce((a, b) => a + b, 0);
  if (params.topP < 1) {
    const target = params.topP * total;
    const order = ranked ?? largestFirst(pool, (_, m) => m >= target * (1 + 1e-9));
    let cumulative = 0;
    let keep = 0;
    while (keep < order.length) {
      cumulative += pool.weights[order[keep++]] / total;
      if (cumulative >= params.topP) break;
    }
    ranked = order.slice(0, keep);
    total = sum(pool, ranked);
  }
  let r = random() * total;
  const order = ranked ?? largestFirst(pool, (_, m) => m >= r * (1 + 1e-9));
  for (const i of order) {
    r -= pool.weights[i];
    if (r <= 0) return pool.ids[i];
  }
  return pool.ids[(ranked ?? largestFirst(pool, () => false)).at(-1)!];
}
