import t from 'tap';
import { createRng, generatePrompt, pickWeighted, RequestPlanner, WORDS } from '../../tools/loadtest/prompts.js';
import { parseAdapterMix } from '../../tools/loadtest/args.js';

t.test('the rng is seeded and in [0, 1)', async (t) => {
  const a = createRng(7);
  const b = createRng(7);
  const xs = Array.from({ length: 1000 }, () => a());
  t.same(
    xs,
    Array.from({ length: 1000 }, () => b()),
  );
  t.ok(xs.every((x) => x >= 0 && x < 1));
  t.not(createRng(8)(), createRng(7)());
});

t.test('prompts have the requested number of words', async (t) => {
  const rng = createRng(1);
  for (const n of [1, 2, 17, 128, 1000]) {
    const p = generatePrompt(rng, n);
    t.equal(p.split(' ').length, n, `${n} words`);
    t.match(p, /^[A-Z]/);
    t.match(p, /\.$/);
  }
  t.equal(new Set(WORDS).size, WORDS.length, 'no duplicate words');
});

t.test('the planner is deterministic and keeps prompt lengths in range', async (t) => {
  const mix = parseAdapterMix('support:2,sales:1,base');
  const p1 = new RequestPlanner(mix, { min: 10, max: 20 }, 3);
  const p2 = new RequestPlanner(mix, { min: 10, max: 20 }, 3);
  const a = Array.from({ length: 50 }, () => p1.next());
  const b = Array.from({ length: 50 }, () => p2.next());
  t.same(a, b);
  t.ok(a.every((r) => r.targetPromptTokens >= 10 && r.targetPromptTokens <= 20));
  t.ok(a.every((r) => r.prompt.split(' ').length === r.targetPromptTokens));
  t.same(
    a.map((r) => r.index),
    Array.from({ length: 50 }, (_, i) => i),
  );
  // The adapter sequence doesn't depend on the prompt lengths.
  const p3 = new RequestPlanner(mix, { min: 500, max: 600 }, 3);
  t.same(
    Array.from({ length: 50 }, () => p3.next().entry.label),
    a.map((r) => r.entry.label),
  );
});

t.test('weighted picks follow the weights', async (t) => {
  const mix = parseAdapterMix('support:2,sales:1,base:1');
  const rng = createRng(11);
  const counts: Record<string, number> = {};
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const e = pickWeighted(rng, mix);
    counts[e.label] = (counts[e.label] ?? 0) + 1;
  }
  t.ok(Math.abs(counts.support / n - 0.5) < 0.02, `support ${counts.support}`);
  t.ok(Math.abs(counts.sales / n - 0.25) < 0.02, `sales ${counts.sales}`);
  t.ok(Math.abs(counts.base / n - 0.25) < 0.02, `base ${counts.base}`);
});
