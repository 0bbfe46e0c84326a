/**
 * Percentiles, summaries, histograms and the per-second timeline. No I/O.
 */

export interface Summary {
  count: number;
  min: number;
  max: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
}

/**
 * The p-th percentile (0..100) of ascending-sorted values, interpolating linearly between the
 * two nearest ranks (the "linear" method of numpy.percentile, Excel PERCENTILE.INC):
 * rank = p/100 × (n − 1). Throws on an empty array.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError('percentile of an empty list');
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  if (lo === hi) return sorted[lo];
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** count/min/max/mean/p50/p90/p99, or null for no values. Doesn't modify its input. */
export function summarize(values: readonly number[]): Summary | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    min: sorted[0],
    max: sorted[sorted.length - 1],
    mean: sum / sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
  };
}

/** 1, 2, 2.5 or 5 × a power of ten, at least `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * mag >= raw * (1 - 1e-12)) return m * mag;
  }
  return 10 * mag;
}

export interface Histogram {
  /** Bin edges, ascending; bin i is [edges[i], edges[i+1]) and the last bin includes its right edge. */
  edges: number[];
  counts: number[];
}

/**
 * Bin edges with a "nice" width (1/2/2.5/5 × 10^k) covering [min, max] in about `targetBins`
 * bins. Pass all series that share the axis at once.
 */
export function histogramEdges(values: readonly number[], targetBins = 20): number[] {
  if (values.length === 0) return [];
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (min === max) {
    const step = niceStep(Math.max(Math.abs(min) / 10, 1e-9));
    const lo = Math.floor(min / step) * step;
    return [lo, lo + step];
  }
  const step = niceStep((max - min) / Math.max(1, targetBins));
  const lo = Math.floor(min / step) * step;
  const edges = [lo];
  while (edges[edges.length - 1] <= max) edges.push(roundTo(edges[edges.length - 1] + step, step));
  return edges;
}

function roundTo(x: number, step: number): number {
  // Avoid 0.30000000000000004-style edges.
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 2);
  return Number(x.toFixed(decimals));
}

/** Counts values into the bins given by `edges` (see histogramEdges). Values outside are clamped. */
export function binCounts(values: readonly number[], edges: readonly number[]): number[] {
  const bins = Math.max(0, edges.length - 1);
  const counts = new Array<number>(bins).fill(0);
  if (bins === 0) return counts;
  for (const v of values) {
    let i = upperBound(edges, v) - 1;
    if (i < 0) i = 0;
    if (i >= bins) i = bins - 1;
    counts[i]++;
  }
  return counts;
}

/** Index of the first edge greater than v. */
function upperBound(edges: readonly number[], v: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (edges[mid] <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function histogram(values: readonly number[], targetBins = 20): Histogram {
  const edges = histogramEdges(values, targetBins);
  return { edges, counts: binCounts(values, edges) };
}

export interface TimelineCell {
  requests: number;
  errors: number;
  tokens: number;
}

export interface TimelineBucket extends TimelineCell {
  /** Second since the start of the run: this bucket covers [second, second + 1). */
  second: number;
  /** How much of this second the run lasted: 1, except for the last bucket. */
  coveredS: number;
  byAdapter: Record<string, TimelineCell>;
}

/** Per-second counts of finished requests, errors and generated tokens, overall and per adapter. */
export class Timeline {
  private readonly buckets = new Map<number, TimelineBucket>();

  constructor(private readonly labels: readonly string[]) {}

  private bucket(ms: number): TimelineBucket {
    const second = Math.max(0, Math.floor(ms / 1000));
    let b = this.buckets.get(second);
    if (!b) {
      b = { second, coveredS: 1, requests: 0, errors: 0, tokens: 0, byAdapter: {} };
      for (const l of this.labels) b.byAdapter[l] = { requests: 0, errors: 0, tokens: 0 };
      this.buckets.set(second, b);
    }
    return b;
  }

  private cell(b: TimelineBucket, label: string): TimelineCell {
    return (b.byAdapter[label] ??= { requests: 0, errors: 0, tokens: 0 });
  }

  addTokens(ms: number, label: string, n: number): void {
    if (n === 0) return;
    const b = this.bucket(ms);
    b.tokens += n;
    this.cell(b, label).tokens += n;
  }

  addFinished(ms: number, label: string, ok: boolean): void {
    const b = this.bucket(ms);
    const c = this.cell(b, label);
    if (ok) {
      b.requests++;
      c.requests++;
    } else {
      b.errors++;
      c.errors++;
    }
  }

  /**
   * Every second from 0 to the end of the run (`endMs`, else the last second seen), empty
   * seconds included.
   */
  toArray(endMs?: number): TimelineBucket[] {
    if (this.buckets.size === 0 && endMs === undefined) return [];
    const lastSeen = this.buckets.size ? Math.max(...this.buckets.keys()) : 0;
    const last = endMs === undefined ? lastSeen : Math.max(lastSeen, Math.ceil(endMs / 1000) - 1);
    const out: TimelineBucket[] = [];
    for (let s = 0; s <= last; s++) {
      const b = this.buckets.get(s) ?? this.bucket(s * 1000);
      b.coveredS = endMs === undefined ? 1 : Math.min(1, Math.max(0, endMs / 1000 - s));
      out.push(b);
    }
    return out;
  }
}
