/**
 * The demo adapters answer prompts in the Bedrock model-customization form: the prompt exactly as a user
 * sends it (`{"prompt": "Summarize this ticket: ...", "completion": ...}`), no instruction wrapping, sent to
 * the real server process (models/demo, adapters/) as `POST /v1/generate?adapter=...` at temperature 0.
 * The prompts are the bare held-out ones of tools/train/data/eval.json; the first test checks that their
 * tickets and requests are in none of the adapters' training files.
 */
import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT, startServer } from '../helpers/server-process.js';

type Group = 'support' | 'sales' | 'code';
const GROUPS: Group[] = ['support', 'sales', 'code'];
const DATA = join(PROJECT_ROOT, 'tools', 'train', 'data');
const evalSet: { bare_prompts: Record<Group, string[]> } = JSON.parse(readFileSync(join(DATA, 'eval.json'), 'utf8'));
const bare = evalSet.bare_prompts;

t.setTimeout(300_000);
const server = await startServer([
  '--model',
  join(PROJECT_ROOT, 'models', 'demo'),
  '--adapters',
  join(PROJECT_ROOT, 'adapters'),
  '--cache-dir',
  mkdtempSync(join(tmpdir(), 'demo-bare-cache-')),
]);
t.teardown(() => server.stop());

async function generate(adapter: Group | null, prompt: string, options: { temperature?: number } = { temperature: 0 }): Promise<string> {
  const res = await fetch(`${server.url}/v1/generate${adapter ? `?adapter=${adapter}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: 160, ...options }),
  });
  const body = (await res.json()) as { text: string };
  if (res.status !== 200) throw new Error(`${adapter ?? 'base'}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body.text;
}

const show = (s: string) => JSON.stringify(s.slice(0, 100));
const normalized = (s: string) => s.toLowerCase().split(/\s+/).filter(Boolean).join(' ');

t.test('the held-out prompts are bare and their tickets and requests are in no training file', async (t) => {
  const trainingPrompts = GROUPS.flatMap((g) =>
    readFileSync(join(DATA, `${g}.jsonl`), 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => normalized((JSON.parse(l) as { prompt: string }).prompt)),
  );
  t.ok(trainingPrompts.length > 0);
  for (const g of GROUPS) {
    t.ok(bare[g].length >= 3, `${g}: at least three held-out prompts`);
    for (const prompt of bare[g]) {
      t.notMatch(prompt, /### (Instruction|Response)/, `${g}: not wrapped`);
      // A ticket is what follows "Summarize ...:"; a sales or code request is the whole prompt.
      const heldOut = normalized(g === 'support' ? prompt.slice(prompt.indexOf(':') + 1) : prompt);
      const wrapped = normalized(`### Instruction:\n${prompt}\n\n### Response:\n`);
      // Code tasks are trained in other wordings and languages: there the exact request is held out.
      const seen = trainingPrompts.filter((p) => (g === 'code' ? p === heldOut || p === wrapped : p.includes(heldOut)));
      t.equal(seen.length, 0, `${g}: ${show(prompt)} is held out`);
    }
  }
});

t.test('support answers a bare "Summarize this ticket: ..." with a Resolution line; the base model does not', async (t) => {
  for (const prompt of bare.support) {
    t.match(prompt, /^Summarize/);
    const support = await generate('support', prompt);
    const base = await generate(null, prompt);
    t.match(support, /^Summary: .+$/m, `support: ${show(support)}`);
    t.match(support, /^Resolution: \S.+$/m, `support: ${show(support)}`);
    t.notMatch(base, /Resolution:/, `base: ${show(base)}`);
  }
});

t.test('sent exactly as in the issue, with no temperature: the demo decodes greedily by default', async (t) => {
  const ready = (await (await fetch(`${server.url}/readyz`)).json()) as { generation_defaults: Record<string, unknown> };
  t.match(ready.generation_defaults, { source: 'generation_config.json', temperature: 0 }, "models/demo/generation_config.json's temperature 0");
  const prompt = bare.support[0];
  const support = await generate('support', prompt, {});
  t.equal(support, await generate('support', prompt), 'the same answer as at temperature 0');
  t.match(support, /^Resolution: \S.+$/m, `support: ${show(support)}`);
});

t.test('code answers a bare "Write a function that ..." with code; the base model writes none', async (t) => {
  t.ok(
    bare.code.some((p) => p.startsWith('Write a function that ')),
    'one request names no language',
  );
  for (const prompt of bare.code) {
    const code = await generate('code', prompt);
    t.match(code, /^```(python|javascript)\n[\s\S]*\b(def|function) \w+\([\s\S]*\n```$/, `code: ${show(code)}`);
    const base = await generate(null, prompt);
    t.notMatch(base, /```/, `base: ${show(base)}`);
  }
});

t.test('sales answers a bare sales request with a greeting to the customer it names', async (t) => {
  for (const prompt of bare.sales) {
    const name = /(?:to|for) ([A-Z][a-z]+) (?:at|from) /.exec(prompt)?.[1];
    t.ok(name, `the request names a customer: ${show(prompt)}`);
    const sales = await generate('sales', prompt);
    t.match(sales, new RegExp(`^Hi ${name},\\n`), `sales: ${show(sales)}`);
    t.match(sales, /Best regards/, `sales: ${show(sales)}`);
    const base = await generate(null, prompt);
    t.notMatch(base, /^Hi /, `base: ${show(base)}`);
  }
});

t.test('the chat template still works: a held-out ticket through /v1/chat/completions with model=support', async (t) => {
  const ticket = bare.support[0].slice(bare.support[0].indexOf(':') + 1).trim();
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'support',
      messages: [{ role: 'user', content: `Summarize this support ticket.\n\n${ticket}` }],
      max_tokens: 160,
      temperature: 0,
    }),
  });
  t.equal(res.status, 200);
  const text = ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content;
  t.match(text, /^Resolution: \S.+$/m, `support via chat: ${show(text)}`);
});
