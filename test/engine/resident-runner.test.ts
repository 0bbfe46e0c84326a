/**
 * The device-resident loop (KV cache, slot stacks and argmax kept by the provider between steps), run here on
 * the CPU provider: four rows with four different adapters (slot 0 = base) in one batch equal the HF reference.
 */
import t from 'tap';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { readModelSpec } from '../../src/engine/model/hf-config.js';
import { CheckpointWeights } from '../../src/engine/model/weights.js';
import { ensureOnnxModel } from '../../src/engine/model/model-cache.js';
import { ResidentRunner } from '../../src/engine/model/resident-runner.js';
import { SlotStacks } from '../../src/engine/lora/slot-stacks.js';
import { loadPeftAdapter } from '../../src/engine/lora/peft-adapter.js';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL, maxAbsDiff, reference } from '../helpers/engine.js';

t.test('mixed adapters in one resident batch give the reference greedy tokens and logprobs', async (t) => {
  const spec = readModelSpec(FIXTURE_MODEL);
  const onnx = ensureOnnxModel(FIXTURE_MODEL, spec, new CheckpointWeights(FIXTURE_MODEL), { maxSequenceLength: 256, lora: true, argmax: true }, join(tmpdir(), 'lora-server-test-cache'));
  const stacks = new SlotStacks(spec, 4);
  ['support', 'sales', 'code'].forEach((name, i) => stacks.write(i + 1, loadPeftAdapter(name, join(FIXTURE_ADAPTERS, name), spec, 64)));
  const runner = await ResidentRunner.create(onnx.path, spec, { provider: 'cpu', maxSequenceLength: 256, intraOpThreads: 1 }, stacks);
  t.teardown(() => runner.release());
  const prompt = reference.cases[0].prompt_token_ids;
  const cases = [null, 'support', 'sales', 'code'].map((a) => reference.cases.find((c) => c.adapter === a && c.prompt_token_ids.join() === prompt.join())!);
  const { tokens, logprobs } = await runner.generate(cases.map(() => prompt), [0, 1, 2, 3], 24, true);
  cases.forEach((c, r) => {
    t.same(tokens[r], c.greedy_token_ids, `${c.adapter ?? 'base'}: tokens`);
    t.ok(maxAbsDiff(logprobs[r], c.greedy_logprobs) < 1e-4, `${c.adapter ?? 'base'}: logprobs within 1e-4`);
  });
  const ids = await runner.generate([prompt], [3], 24);
  t.same(ids.tokens[0], cases[3].greedy_token_ids, 'ids only (no logits read back), batch of one');
});
