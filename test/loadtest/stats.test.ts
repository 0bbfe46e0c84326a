import t from 'tap';
import { binCounts, histogram, histogramEdges, niceStep, percentile, summarize, Timeline } from '../../tools/loadtest/stats.js';

const oneTo100 = Array.from({ length: 100 }, (_, i) => i + 1);

t.test('percentile interpolates linearly between the nearest ranks', async (t) => {
  t.equal(percentile(oneTo100, 50), 50.5);
  t.equal(Number(percentile(oneTo100, 90).toFixed(9)), 90.1);
  t.equal(Number(percentile(oneTo100, 99).toFixed(9)), 99.01);
  t.equal(percentile(oneTo100, 0), 1);
  t.equal(percentile(oneTo100, 100), 100);
  t.equal(percentile([7], 50), 7);
  t.equal(percentile([7], 99), 7);
  t.equal(percentile([10, 20], 50), 15);
  t.equal(percentile([10, 20], 90), 19);
  t.equal(percentile([1, 2, 3, 4, 5], 50), 3);
  // Same as numpy.percentile([1, 2, 3, 4, 10], [90, 99]).
  t.equal(Number(percentile([1, 2, 3, 4, 10], 90).toFixed(9)), 7.6);
  t.equal(Number(percentile([1, 2, 3, 4, 10], 99).toFixed(9)), 9.76);
});

t.test('percentile rejects empty input and p outside 0..100', async (t) => {
  t.throws(() => percentile([], 50), RangeError);
  t.throws(() => percentile([1], -1), RangeError);
  t.throws(() => percentile([1], 101), RangeError);
  t.throws(() => percentile([1], Number.NaN), RangeError);
});

t.test('summarize sorts a copy and reports count/min/max/mean/p50/p90/p99', async (t) => {
  const input = [...oneTo100].reverse();
  const s = summarize(input);
  t.ok(s);
  t.match(s, { count: 100, min: 1, max: 100, mean: 50.5, p50: 50.5 });
  t.equal(Number(s!.p99.toFixed(6)), 99.01);
  t.equal(input[0], 100, 'input not sorted in place');
  t.equal(summarize([]), null);
  t.match(summarize([3]), { count: 1, min: 3, max: 3, mean: 3, p50: 3, p90: 3, p99: 3 });
});

t.test('niceStep rounds up to 1, 2, 2.5, 5 × 10^k', async (t) => {
  t.equal(niceStep(0.7), 1);
  t.equal(niceStep(1), 1);
  t.equal(niceStep(1.2), 2);
  t.equal(niceStep(2.2), 2.5);
  t.equal(niceStep(3), 5);
  t.equal(niceStep(7), 10);
  t.equal(niceStep(23), 25);
  t.equal(niceStep(0.03), 0.05);
  t.equal(niceStep(0), 1);
});

t.test('histogram: nice edges covering every value, counts add up', async (t) => {
  const values = [12, 15, 17, 30, 44, 44, 99.5, 100];
  const h = histogram(values, 10);
  t.equal(h.counts.length, h.edges.length - 1);
  t.equal(
    h.counts.reduce((a, b) => a + b, 0),
    values.length,
  );
  t.ok(h.edges[0] <= 12 && h.edges[h.edges.length - 1] > 100, 'covers min and max');
  const step = h.edges[1] - h.edges[0];
  t.equal(step, 10);
  for (let i = 1; i < h.edges.length; i++) t.equal(Number((h.edges[i] - h.edges[i - 1]).toFixed(9)), step);
  t.same(h.edges, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]);
  t.same(h.counts, [3, 0, 1, 2, 0, 0, 0, 0, 1, 1]);
  t.same(histogram([], 10), { edges: [], counts: [] });
  const flat = histogram([5, 5, 5], 10);
  t.equal(flat.counts.length, 1);
  t.same(flat.counts, [3]);
  t.same(binCounts([1, 2, 3], []), []);
  t.same(binCounts([-5, 500], [0, 10, 20]), [1, 1], 'out-of-range values clamp to the end bins');
  t.ok(
    histogramEdges([0.1, 0.2, 0.3], 4).every((e) => String(e).length < 8),
    'no float noise in edges',
  );
});

t.test('Timeline buckets per second, fills gaps, marks the last partial second', async (t) => {
  const tl = new Timeline(['a', 'b']);
  tl.addTokens(100, 'a', 5);
  tl.addTokens(2500, 'b', 3);
  tl.addFinished(900, 'a', true);
  tl.addFinished(2600, 'b', false);
  tl.addTokens(2700, 'c', 1);
  const arr = tl.toArray(3250);
  t.equal(arr.length, 4);
  t.same(
    arr.map((b) => b.second),
    [0, 1, 2, 3],
  );
  t.match(arr[0], { tokens: 5, requests: 1, errors: 0, coveredS: 1, byAdapter: { a: { tokens: 5, requests: 1 }, b: { tokens: 0 } } });
  t.match(arr[1], { tokens: 0, requests: 0, errors: 0 });
  t.match(arr[2], { tokens: 4, requests: 0, errors: 1, byAdapter: { b: { tokens: 3, errors: 1 }, c: { tokens: 1 } } });
  t.equal(arr[3].coveredS, 0.25);
  t.same(new Timeline(['a']).toArray(), []);
});
