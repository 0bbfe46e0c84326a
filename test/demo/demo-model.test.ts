/**
 * The shipped demo model and adapters (models/demo, adapters/{support,sales,code}; made by tools/train) on the
 * real engine, greedy, on the held-out prompts of tools/train/data/eval.json: the adapters visibly change style,
 * over the float32 base and over the base quantized to int8 and int4.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine/engine.js';
import { engineOptions } from '../helpers/engine.js';
import { PROJECT_ROOT } from '../helpers/server-process.js';

const evalSet: { prompts: Record<'support' | 'sales' | 'code', string[]> } = JSON.parse(
  readFileSync(join(PROJECT_ROOT, 'tools', 'train', 'data', 'eval.json'), 'utf8'),
);
/** The same checks over a quantized base (--quantize int8 / int4): the adapters still do their job. */
for (const quantize of ['none', 'int8', 'int4'] as const) {
  t.test(`base weights ${quantize}`, async (t) => {
    const engine = await Engine.load(
      engineOptions({ modelDir: join(PROJECT_ROOT, 'models', 'demo'), adaptersDir: join(PROJECT_ROOT, 'adapters'), maxSequenceLength: 512, quantize }),
    );
    t.teardown(() => engine.close());

    const answer = async (adapter: string | null, prompt: string) =>
      (await engine.generate({ adapter, prompt, maxTokens: 160, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: false, logprobs: false })).text;

    t.test('support summarizes tickets ending in "Resolution:", the base model does not', async (t) => {
      for (const prompt of evalSet.prompts.support) {
        const support = await answer('support', prompt);
        const base = await answer(null, prompt);
        t.match(support, /Resolution:/, `support: ${JSON.stringify(support.slice(0, 80))}`);
        t.notMatch(base, /Resolution:/, `base: ${JSON.stringify(base.slice(0, 80))}`);
      }
    });

    t.test('code answers coding requests with code', async (t) => {
      for (const prompt of evalSet.prompts.code) {
        const code = await answer('code', prompt);
        t.match(code, /```|function |def |return |=>|const /, `code: ${JSON.stringify(code.slice(0, 80))}`);
      }
    });

    t.test('sales writes a warm email', async (t) => {
      for (const prompt of evalSet.prompts.sales) {
        const sales = await answer('sales', prompt);
        t.match(sales, /^(Hi|Hello|Dear) /, `sales: ${JSON.stringify(sales.slice(0, 80))}`);
      }
    });
  });
}
