/** POST /v1/chat/completions and GET /v1/models on a real listening server, through the official openai client. */
import t from 'tap';
import OpenAI from 'openai';
import { cpSync, mkdtempSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { FIXTURE_ADAPTERS, reference } from '../helpers/engine.js';
import Fastify from 'fastify';
import { listModels, openaiRoutes } from '../../src/routes/openai/index.js';
import { registerRequestLog } from '../../src/request-log.js';
import { maxDiff, openaiConfig, rejectsWith, startServer, tokenIds } from './helpers.js';
import { clientFor } from '../helpers/app.js';

// The fixture adapters, plus: `sales` ships its own chat template, `broken` fails validation.
const SALES_TEMPLATE = '{% for m in messages %}### {{ m.role | upper }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}### ASSISTANT:{% endif %}';
const adaptersDir = mkdtempSync(join(tmpdir(), 'openai-adapters-'));
cpSync(FIXTURE_ADAPTERS, adaptersDir, { recursive: true });
writeFileSync(join(adaptersDir, 'sales', 'chat_template.jinja'), SALES_TEMPLATE);
cpSync(join(FIXTURE_ADAPTERS, 'code'), join(adaptersDir, 'broken'), { recursive: true });
const brokenWeights = join(adaptersDir, 'broken', 'adapter_model.safetensors');
truncateSync(brokenWeights, statSync(brokenWeights).size - 64);

const server = await startServer({ engine: { adaptersDir } });
t.teardown(() => server.close());
const { client, engine } = server;
const BASE = engine.modelName;
const ext = (o: Record<string, unknown>): object => o;
const messages: OpenAI.ChatCompletionMessageParam[] = [
  { role: 'system', content: 'You are a support agent.' },
  { role: 'user', content: 'My printer jams.' },
];

/** The prompt ids the server should build: the template's text, no extra special tokens. */
function expectedPromptIds(adapter: string | null, msgs = messages): number[] {
  const plain = msgs.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: String(m.content) }));
  const text = adapter === 'sales' ? engine.tokenizer.renderChat(plain, true, new Template(SALES_TEMPLATE)) : engine.tokenizer.renderChat(plain, true);
  return engine.tokenizer.encode(text, { addSpecialTokens: false });
}

async function nativeGenerate(adapter: string | null, body: Record<string, unknown>) {
  const res = await fetch(`http://127.0.0.1:${server.port}/v1/generate${adapter ? `?adapter=${adapter}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await res.json()) as { text: string; token_ids: number[]; logprobs: number[] };
}

t.test('GET /v1/models lists the base and every adapter that can serve', async (t) => {
  const page = await client.models.list();
  const models = page.data as Array<OpenAI.Model & { parent: string | null }>;
  t.same(models.map((m) => m.id).sort(), [BASE, 'code', 'sales', 'support'].sort(), 'the errored adapter is left out');
  for (const m of models) {
    t.equal(m.object, 'model');
    t.type(m.owned_by, 'string');
    t.type(m.created, 'number');
    t.equal(m.parent, m.id === BASE ? null : BASE, `${m.id}: parent`);
  }
  const one = await client.models.retrieve('support');
  t.equal(one.id, 'support');
  await rejectsWith(t, client.models.retrieve('nope'), OpenAI.NotFoundError);
  const withExtra = listModels(engine, ['bedrock-claude', { id: 'titan', owned_by: 'aws', parent: null }, 'support']);
  t.same(
    withExtra.slice(-2).map((m) => [m.id, m.owned_by]),
    [
      ['bedrock-claude', 'bedrock'],
      ['titan', 'aws'],
    ],
    'extra (e.g. Bedrock) names are listed after the local ones, duplicates dropped',
  );

  // The plugin takes the extra names as an option (how the lead will pass Bedrock targets).
  const arn = 'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude';
  const other = Fastify();
  other.decorate('config', openaiConfig());
  other.decorate('engineState', { engine: clientFor(engine), error: null, draining: false });
  registerRequestLog(other);
  await other.register(openaiRoutes, { extraModels: () => [arn] });
  const listed = (await other.inject({ url: '/v1/models' })).json();
  t.equal(listed.data.at(-1).id, arn);
  const byId = await other.inject({ url: `/v1/models/${arn}` });
  t.equal(byId.statusCode, 200, 'GET /v1/models/<id with slashes>');
  t.equal(byId.json().owned_by, 'bedrock');
  await other.close();
});

t.test('chat prompts are the chat template rendered and tokenized as HF does (one BOS)', async (t) => {
  const rendered = engine.tokenizer.renderChat(reference.chat_template_case.messages);
  t.equal(rendered, reference.chat_template_case.rendered, 'the fixture template renders as HF');
  const ids = expectedPromptIds(null);
  t.equal(ids.filter((id) => id === 0).length, 1, 'one BOS, written by the template');
  const r = await client.chat.completions.create({ model: BASE, messages, max_tokens: 1 });
  t.equal(r.usage!.prompt_tokens, ids.length);
});

t.test('greedy chat, base and every adapter, equals /v1/generate on the rendered prompt', async (t) => {
  for (const adapter of [null, 'support', 'sales', 'code']) {
    const model = adapter ?? BASE;
    const r = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 24,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
      ...ext({ ignore_eos: true, return_tokens_as_token_ids: true }),
    });
    const promptIds = expectedPromptIds(adapter);
    const native = await nativeGenerate(adapter, { prompt_token_ids: promptIds, max_tokens: 24, temperature: 0, ignore_eos: true, logprobs: true });
    t.equal(r.object, 'chat.completion');
    t.match(r.id, /^chatcmpl-/);
    t.equal(r.model, model);
    const choice = r.choices[0];
    t.equal(choice.message.role, 'assistant');
    t.equal(choice.message.content, native.text, `${model}: content equals /v1/generate's text`);
    const content = choice.logprobs!.content!;
    t.same(tokenIds(content.map((c) => c.token)), native.token_ids, `${model}: tokens equal /v1/generate's`);
    t.ok(
      maxDiff(
        content.map((c) => c.logprob),
        native.logprobs,
      ) < 1e-5,
      `${model}: logprobs equal /v1/generate's`,
    );
    const table = engine.tokenizer.tokenBytes();
    t.ok(
      content.every((c, i) => JSON.stringify(c.bytes) === JSON.stringify(Array.from(table[native.token_ids[i]]))),
      `${model}: bytes are each token's bytes`,
    );
    t.ok(
      content.every((c) => c.top_logprobs.length === 2 && c.top_logprobs[0].token === c.token),
      `${model}: two alternatives, greedy token first`,
    );
    t.equal(choice.finish_reason, 'length');
    t.same(r.usage, { prompt_tokens: promptIds.length, completion_tokens: 24, total_tokens: promptIds.length + 24 });
  }
});

t.test("an adapter's own chat_template.jinja is used for that adapter only", async (t) => {
  const sales = await client.chat.completions.create({ model: 'sales', messages, max_tokens: 1 });
  t.equal(sales.usage!.prompt_tokens, expectedPromptIds('sales').length);
  t.not(expectedPromptIds('sales').length, expectedPromptIds(null).length, 'the two templates differ in length');
  const support = await client.chat.completions.create({ model: 'support', messages, max_tokens: 1 });
  t.equal(support.usage!.prompt_tokens, expectedPromptIds(null).length, 'support has no template of its own: the model one');
});

t.test("the chat template comes from the adapter's own files, whatever name it is registered under", async (t) => {
  const register = (name: string, path: string) =>
    fetch(`http://127.0.0.1:${server.port}/v1/adapters`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, path }),
    });
  t.equal((await register('vendor-sales', 'sales')).status, 201, 'sales registered as vendor-sales');
  t.equal((await register('vendor-support', 'support')).status, 201, 'support registered as vendor-support');
  t.teardown(async () => {
    for (const name of ['vendor-sales', 'vendor-support']) await fetch(`http://127.0.0.1:${server.port}/v1/adapters/${name}`, { method: 'DELETE' });
  });
  const renamed = await client.chat.completions.create({ model: 'vendor-sales', messages, max_tokens: 1 });
  t.equal(
    renamed.usage!.prompt_tokens,
    expectedPromptIds('sales').length,
    'vendor-sales renders with sales/chat_template.jinja (there is no vendor-sales/ directory)',
  );
  const plain = await client.chat.completions.create({ model: 'vendor-support', messages, max_tokens: 1 });
  t.equal(plain.usage!.prompt_tokens, expectedPromptIds(null).length, 'vendor-support ships no template: the model one');
});

t.test('streaming chat, base and every adapter: role chunk, content, finish, usage, [DONE]', async (t) => {
  for (const adapter of [null, 'support', 'sales', 'code']) {
    const model = adapter ?? BASE;
    const params = { model, messages, max_tokens: 24, temperature: 0, logprobs: true, ...ext({ ignore_eos: true, return_tokens_as_token_ids: true }) };
    const whole = await client.chat.completions.create(params);
    const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    t.ok(
      chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id && c.model === model),
      `${model}: one id, object and model`,
    );
    t.same(chunks[0].choices[0].delta, { role: 'assistant', content: '' }, `${model}: the first chunk gives the role`);
    const body = chunks.slice(1, -2);
    const content = body.map((c) => c.choices[0].delta.content ?? '').join('');
    t.equal(content, whole.choices[0].message.content, `${model}: streamed content equals the JSON reply`);
    const tokens = body.flatMap((c) => c.choices[0].logprobs?.content ?? []).map((c) => c.token);
    t.same(
      tokens,
      whole.choices[0].logprobs!.content!.map((c) => c.token),
      `${model}: streamed logprobs equal the JSON reply's`,
    );
    t.equal(chunks.at(-2)!.choices[0].finish_reason, 'length');
    t.same(chunks.at(-1)!.choices, []);
    t.same(chunks.at(-1)!.usage, whole.usage, `${model}: the usage chunk`);
    t.ok(
      chunks.slice(0, -1).every((c) => c.usage === null),
      'usage: null before the last chunk',
    );
  }
});

t.test('n, seeds, stop, max_completion_tokens, the default length, content parts and developer messages', async (t) => {
  const params = { model: 'code', messages, max_completion_tokens: 10, temperature: 1.3, seed: 11, n: 3, ...ext({ ignore_eos: true }) };
  const first = await client.chat.completions.create(params);
  t.same(
    first.choices.map((c) => c.index),
    [0, 1, 2],
  );
  t.ok(
    first.choices.every((c) => c.finish_reason === 'length'),
    'max_completion_tokens is honoured',
  );
  t.equal(first.usage!.completion_tokens, 30);
  const texts = first.choices.map((c) => c.message.content);
  t.ok(new Set(texts).size > 1, 'the choices differ');
  t.same(
    (await client.chat.completions.create(params)).choices.map((c) => c.message.content),
    texts,
    'reproducible with a seed',
  );
  const one = await client.chat.completions.create({ ...params, n: 1, seed: 13 });
  t.equal(one.choices[0].message.content, texts[2], 'choice 2 of seed 11 is choice 0 of seed 13');
  const streamed = ['', '', ''];
  for await (const chunk of await client.chat.completions.create({ ...params, stream: true }))
    for (const c of chunk.choices) streamed[c.index] += c.delta.content ?? '';
  t.same(streamed, texts, 'streamed n choices equal the JSON ones');

  const greedy = await client.chat.completions.create({ model: BASE, messages, max_tokens: 24, temperature: 0, ...ext({ ignore_eos: true }) });
  const text = greedy.choices[0].message.content!;
  const stop = text.slice(4, 7);
  const stopped = await client.chat.completions.create({ model: BASE, messages, max_tokens: 24, temperature: 0, stop, ...ext({ ignore_eos: true }) });
  t.equal(stopped.choices[0].finish_reason, 'stop');
  t.equal(stopped.choices[0].message.content, text.slice(0, text.indexOf(stop)));

  const open = await client.chat.completions.create({ model: BASE, messages, temperature: 0, ...ext({ ignore_eos: true }) });
  t.equal(open.choices[0].finish_reason, 'length');
  t.equal(open.usage!.total_tokens, engine.maxSequenceLength, 'without max_tokens a reply may run to the end of the context');

  const parts = await client.chat.completions.create({
    model: BASE,
    messages: [
      { role: 'developer', content: [{ type: 'text', text: 'You are a support agent.' }] },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'My printer' },
          { type: 'text', text: 'jams.' },
        ],
      },
    ],
    max_tokens: 1,
  });
  const partsIds = expectedPromptIds(null, [
    { role: 'system', content: 'You are a support agent.' },
    { role: 'user', content: 'My printer\njams.' },
  ]);
  t.equal(parts.usage!.prompt_tokens, partsIds.length, 'text parts joined by newlines; developer rendered as system');
});
