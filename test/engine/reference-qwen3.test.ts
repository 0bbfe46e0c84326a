/**
 * Qwen3 (q_norm / k_norm per head before rotary, explicit head_dim 32 != hidden/heads 16, tied embeddings) against
 * test/fixtures/qwen3-reference.json: a float64 numpy forward pass written from transformers' modeling_qwen3.py and
 * PEFT's LoRA (test/fixtures/make_qwen3_reference.py), on a random checkpoint and two adapters (alpha: r 4 on the
 * attention projections; beta: r 8 rsLoRA on every projection). Both serving paths: host (packed graph) and device
 * (cache-in-out graph with GroupQueryAttention, run here on the CPU provider).
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, greedyRequest, loadFixtureEngine, maxAbsDiff, type ReferenceCase } from '../helpers/engine.js';
import type { EngineOptions } from '../../src/engine/engine.js';

const reference = JSON.parse(readFileSync(join(FIXTURES, 'qwen3-reference.json'), 'utf8')) as { cases: Array<Omit<ReferenceCase, 'prompt' | 'greedy_text'>> };
const qwen3: Partial<EngineOptions> = { modelDir: join(FIXTURES, 'qwen3-tiny'), adaptersDir: join(FIXTURES, 'qwen3-adapters') };
/** Log-probabilities are the logits less their log-sum-exp: a logits error shows in them at most doubled. */
const TOLERANCE = 1e-4;

const asCase = (c: (typeof reference.cases)[number]): ReferenceCase => ({ ...c, prompt: '', greedy_text: '' });

for (const path of ['host', 'device'] as const) {
  t.test(`${path} path`, async (t) => {
    const engine = await loadFixtureEngine({ ...qwen3, ...(path === 'device' ? { stateResidency: 'device', dtype: 'float32' } : {}) });
    t.teardown(() => engine.close());
    t.equal(engine.residency, path);
    t.equal(engine.spec.architecture, 'Qwen3ForCausalLM');
    t.same(
      engine.adapters
        .list()
        .map((a) => a.name)
        .sort(),
      ['alpha', 'beta'],
    );
    t.notOk(
      engine.adapters.list().some((a) => a.status === 'errored'),
      'both adapters load',
    );

    for (const c of reference.cases) {
      t.test(`${c.adapter ?? 'base'}, ${c.prompt_token_ids.length}-token prompt`, async (t) => {
        const result = await engine.generate(greedyRequest(asCase(c)), { promptLogprobs: true });
        t.same(result.tokenIds, c.greedy_token_ids, 'greedy tokens equal the reference');
        const diffs = {
          greedy: maxAbsDiff(result.logprobs!, c.greedy_logprobs),
          last: maxAbsDiff(result.scores!.lastLogprobs, c.last_logprobs),
          prompt: maxAbsDiff(result.scores!.promptLogprobs, c.prompt_logprobs),
        };
        for (const [what, d] of Object.entries(diffs)) t.ok(d < TOLERANCE, `${what} logprobs within ${TOLERANCE} (max diff ${d.toExponential(2)})`);
      });
    }

    t.test('every case at once: base, alpha and beta rows mixed in the same steps', async (t) => {
      const before = { rows: engine.scheduler.stats.decodeRowsTotal, steps: engine.scheduler.stats.decodeSteps };
      const results = await Promise.all(reference.cases.map((c) => engine.generate(greedyRequest(asCase(c)))));
      results.forEach((r, i) => {
        const c = reference.cases[i];
        t.same(r.tokenIds, c.greedy_token_ids, `case ${i} (${c.adapter ?? 'base'}): tokens`);
        const d = maxAbsDiff(r.logprobs!, c.greedy_logprobs);
        t.ok(d < TOLERANCE, `case ${i}: greedy logprobs within ${TOLERANCE} (max diff ${d.toExponential(2)})`);
      });
      const rows = engine.scheduler.stats.decodeRowsTotal - before.rows;
      const steps = engine.scheduler.stats.decodeSteps - before.steps;
      t.ok(rows / steps > 2, `decode steps held rows of several adapters (${(rows / steps).toFixed(1)} rows per step)`);
    });
  });
}
