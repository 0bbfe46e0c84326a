/**
 * A quantized base (--quantize int8 / int4: MatMulNBits projections and LM head, GatherBlockQuantized
 * embeddings) against float32 references.
 *
 * - The Qwen3 reference (qwen3-tiny + alpha/beta, a float64 forward pass of transformers' Qwen3 and PEFT's LoRA,
 *   reference-qwen3.test.ts), both paths: int8 must give every greedy token of each case whose
 *   greedy_min_margin is at least 0.05; int4 agreement is reported.
 * - The HF reference cases (llama-tiny + support/sales/code, both paths): agreement with HF's greedy tokens is
 *   reported for int8 and int4, not asserted. This fixture is beyond what 8-bit weights can reproduce: its
 *   random weights (unit-variance embeddings and LM head, projections of std 0.25 on hidden 64) give logits of
 *   std ~8, so rounding the weights to int8 (0.54% relative error per tensor) moves logits by ~0.1, more than
 *   the 0.05 margins. Measured: the float32 graph run on the int8-rounded weights keeps every token in only
 *   4 of the 13 clear-margin cases, as does our int8 graph at accuracy level 0 (the same 9 cases, at the same
 *   tokens); the served int8 graph (accuracy level 4, int8 activations) keeps 3.
 * - In every case, mixed adapters in one batch must give each request exactly its solo tokens.
 * - The trained demo model (models/demo + its adapters) on its held-out eval prompts, base and adapter:
 *   int8 must give every greedy token of float32 (which equals HF within 1e-4, reference.test.ts) on the cases
 *   whose float32 greedy path keeps a top-1/top-2 margin of at least 0.05, over 24 tokens (the HF cases'
 *   length); int4 agreement is reported.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine/engine.js';
import { FIXTURES, engineOptions, freshCacheDir, greedyRequest, loadFixtureEngine, maxAbsDiff, reference, type ReferenceCase } from '../helpers/engine.js';
import { PROJECT_ROOT } from '../helpers/server-process.js';

const CLEAR_MARGIN = 0.05;

for (const residency of ['host', 'device'] as const) {
  for (const quantize of ['int8', 'int4'] as const) {
    t.test(`${quantize} on the ${residency} path`, async (t) => {
      const engine: Engine = await loadFixtureEngine({ quantize, stateResidency: residency, dtype: 'float32', cacheDir: freshCacheDir() });
      t.teardown(() => engine.close());
      t.ok(engine.baseWeights.format.startsWith(`${quantize} (blocks of `), engine.baseWeights.format);
      t.ok(engine.baseWeights.bytes > 0);

      const solo: number[][] = [];
      let agree = 0;
      let total = 0;
      const clear = { equal: 0, total: 0 };
      let worstLast = 0;
      for (const c of reference.cases) {
        const r = await engine.generate(greedyRequest(c), { promptLogprobs: true });
        solo.push(r.tokenIds);
        worstLast = Math.max(worstLast, maxAbsDiff(r.scores!.lastLogprobs, c.last_logprobs));
        let same = 0;
        while (same < c.greedy_token_ids.length && r.tokenIds[same] === c.greedy_token_ids[same]) same++;
        agree += same;
        total += c.greedy_token_ids.length;
        if (c.greedy_min_margin >= CLEAR_MARGIN) {
          clear.total++;
          if (same === c.greedy_token_ids.length) clear.equal++;
        }
      }
      t.comment(
        `${quantize} ${residency}: ${agree}/${total} greedy tokens agree with HF float32 before the first difference; last-position logprobs max diff ${worstLast.toExponential(2)}`,
      );
      // Reported, not asserted: 8-bit weights cannot meet it on this fixture (see the header).
      t.comment(`${quantize} ${residency}: ${clear.equal}/${clear.total} cases with greedy_min_margin >= ${CLEAR_MARGIN} give every HF greedy token`);

      const mixed = await Promise.all(reference.cases.map((c) => engine.generate(greedyRequest(c))));
      mixed.forEach((r, i) => t.same(r.tokenIds, solo[i], `mixed batch, ${reference.cases[i].adapter ?? 'base'} case ${i}: same tokens as alone`));
      t.ok(new Set(reference.cases.map((c) => c.adapter)).size > 2, 'the batch mixes several adapters and the base');
    });
  }
}

const qwen3 = {
  options: { modelDir: join(FIXTURES, 'qwen3-tiny'), adaptersDir: join(FIXTURES, 'qwen3-adapters') },
  cases: (
    JSON.parse(readFileSync(join(FIXTURES, 'qwen3-reference.json'), 'utf8')) as { cases: Array<Omit<ReferenceCase, 'prompt' | 'greedy_text'>> }
  ).cases.map((c): ReferenceCase => ({ ...c, prompt: '', greedy_text: '' })),
};

for (const residency of ['host', 'device'] as const) {
  t.test(`Qwen3 reference on the ${residency} path: int8 keeps every greedy token where the margin is clear; int4 reported`, async (t) => {
    t.ok(qwen3.cases.filter((c) => c.greedy_min_margin >= CLEAR_MARGIN).length >= qwen3.cases.length / 2, 'most cases have a clear greedy path');
    for (const quantize of ['int8', 'int4'] as const) {
      const engine = await loadFixtureEngine({ ...qwen3.options, quantize, stateResidency: residency, dtype: 'float32', cacheDir: freshCacheDir() });
      try {
        let agree = 0;
        for (const [i, c] of qwen3.cases.entries()) {
          const r = await engine.generate(greedyRequest(c));
          let same = 0;
          while (same < c.greedy_token_ids.length && r.tokenIds[same] === c.greedy_token_ids[same]) same++;
          agree += same;
          if (quantize === 'int8' && c.greedy_min_margin >= CLEAR_MARGIN)
            t.same(
              r.tokenIds,
              c.greedy_token_ids,
              `int8 case ${i} (${c.adapter ?? 'base'}, margin ${c.greedy_min_margin.toFixed(3)}): the reference's greedy tokens`,
            );
        }
        const total = qwen3.cases.reduce((n, c) => n + c.greedy_token_ids.length, 0);
        t.comment(`Qwen3 ${quantize} ${residency}: ${agree}/${total} greedy tokens agree with the float64 reference before the first difference`);
      } finally {
        await engine.close();
      }
    }
  });
}

t.test('demo model: int8 gives the float32 greedy tokens wherever the choice is clear; int4 agreement reported', async (t) => {
  const evalSet: { prompts: Record<string, string[]> } = JSON.parse(readFileSync(join(PROJECT_ROOT, 'tools', 'train', 'data', 'eval.json'), 'utf8'));
  const cases = Object.entries(evalSet.prompts).flatMap(([adapter, prompts]) =>
    prompts.flatMap((prompt) => [
      { adapter, prompt },
      { adapter: null, prompt },
    ]),
  );
  const run = async (quantize: 'none' | 'int8' | 'int4') => {
    const engine = await Engine.load(
      engineOptions({
        modelDir: join(PROJECT_ROOT, 'models', 'demo'),
        adaptersDir: join(PROJECT_ROOT, 'adapters'),
        maxSequenceLength: 512,
        quantize,
        cacheDir: freshCacheDir(),
      }),
    );
    try {
      return await Promise.all(
        cases.map((c) =>
          engine.generate({
            adapter: c.adapter,
            prompt: c.prompt,
            maxTokens: 24,
            temperature: 0,
            topP: 1,
            topK: 0,
            stop: [],
            ignoreEos: true,
            logprobs: true,
            topLogprobs: 2,
          }),
        ),
      );
    } finally {
      await engine.close();
    }
  };
  const float = await run('none');
  const margins = float.map((r) => Math.min(...r.topLogprobs!.map((top) => top[0].logprob - top[1].logprob)));
  t.ok(margins.filter((m) => m >= CLEAR_MARGIN).length >= cases.length / 2, 'most cases have a clear greedy path');
  for (const quantize of ['int8', 'int4'] as const) {
    const got = await run(quantize);
    let agree = 0;
    got.forEach((r, i) => {
      let same = 0;
      while (same < r.tokenIds.length && r.tokenIds[same] === float[i].tokenIds[same]) same++;
      agree += same;
      if (quantize === 'int8' && margins[i] >= CLEAR_MARGIN)
        t.same(r.tokenIds, float[i].tokenIds, `int8 ${cases[i].adapter ?? 'base'} (margin ${margins[i].toFixed(3)}): float32's greedy tokens`);
    });
    t.comment(`demo ${quantize}: ${agree}/${cases.length * 24} greedy tokens agree with float32 before the first difference`);
  }
});
