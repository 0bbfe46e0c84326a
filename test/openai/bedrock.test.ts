/**
 * The OpenAI-compatible routes on the Bedrock route, as /v1/generate routes: a real listening server, the
 * fixture engine (maxBatch 1, maxQueue 1, so the queue can be filled), the official openai client, and the
 * real AWS SDK client pointed at the loopback fake Bedrock (test/fallback/harness.ts).
 */
import t from 'tap';
import OpenAI from 'openai';
import type { AddressInfo } from 'node:net';
import { buildApp } from '../../src/app.js';
import { LLAMA_ARN, startHarness } from '../fallback/harness.js';
import { failPrefillUntilTeardown, loadFixtureEngine } from '../helpers/engine.js';
import { clientFor, testConfig } from '../helpers/app.js';
import { rejectsWith } from './helpers.js';

const harness = await startHarness(t, {
  extraTargets: { 'bo-llama': { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', timeoutMs: 2_000, maxRetries: 2 } },
  circuitBreaker: { failureThreshold: 3, cooldownMs: 10_000 },
});
const { fake, fallback, clock } = harness;
const engine = await loadFixtureEngine({ maxBatch: 1, maxQueue: 1 });
const app = await buildApp({ config: testConfig(), engine: clientFor(engine), bedrock: fallback });
const logged: Array<Record<string, unknown>> = [];
app.addHook('onResponse', async (request) => {
  logged.push({ url: request.url, ...request.requestLog });
});
await app.listen({ port: 0, host: '127.0.0.1' });
const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
const client = new OpenAI({ baseURL: `${origin}/v1`, apiKey: 'test', maxRetries: 0, timeout: 30_000 });
t.teardown(async () => {
  await app.close();
  await engine.close();
});
const BASE = engine.modelName;
const messages: OpenAI.ChatCompletionMessageParam[] = [
  { role: 'system', content: 'You are a support agent.' },
  { role: 'user', content: 'My printer jams.' },
];

t.beforeEach(() => {
  fake.reset();
  fake.setDefault({});
  clock.now += 60_000; // every test starts with closed circuits
  logged.length = 0;
});

/** A streamed completion or chat completion read to the end: its text, last finish reason and usage. */
async function drain<Choice extends { finish_reason: string | null }>(
  stream: AsyncIterable<{ choices: Choice[]; usage?: OpenAI.CompletionUsage | null }>,
  textOf: (choice: Choice) => string,
): Promise<{ text: string; finish: string | null; usage: OpenAI.CompletionUsage | null | undefined }> {
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += textOf(c);
      finish = c.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, finish, usage };
}

t.test('GET /v1/models lists the Bedrock-only adapters', async (t) => {
  const models = await client.models.list();
  const byId = new Map(models.data.map((m) => [m.id, m as OpenAI.Model & { parent?: string | null }]));
  for (const id of ['chat', 'bo-llama']) {
    t.equal(byId.get(id)?.owned_by, 'bedrock', `${id} is listed as Bedrock's`);
    t.equal(byId.get(id)?.parent, BASE, `${id}: parent is the base model`);
  }
  t.not(byId.get('sales')?.owned_by, 'bedrock', 'a local adapter with a target is listed once, as local');
  t.equal(models.data.filter((m) => m.id === 'sales').length, 1);
  t.equal((await client.models.retrieve('chat')).id, 'chat');
  t.equal(fake.requests.length, 0);
});

t.test('completions on a Bedrock-only adapter, JSON and streamed', async (t) => {
  fake.enqueue({ text: 'Hello team, welcome aboard' });
  const { data, response } = await client.completions.create({ model: 'bo-llama', prompt: 'Say hello to the team', max_tokens: 20 }).withResponse();
  t.equal(response.headers.get('x-inference-route'), 'bedrock');
  t.equal(data.choices[0].text, 'Hello team, welcome aboard');
  t.equal(data.choices[0].finish_reason, 'stop');
  t.ok(data.usage!.prompt_tokens > 0, 'prompt tokens from Bedrock');
  t.ok(data.usage!.completion_tokens > 0);
  t.equal(data.usage!.total_tokens, data.usage!.prompt_tokens + data.usage!.completion_tokens);
  t.match(fake.requests[0], { path: /invoke$/, body: { prompt: 'Say hello to the team' } }, 'Bedrock got the prompt text');
  t.match(logged.at(-1), { route: 'bedrock', adapter: 'bo-llama' }, 'the request log has the route');

  fake.enqueue({ text: 'Hello team, welcome aboard' });
  const { data: stream, response: streamResponse } = await client.completions
    .create({ model: 'bo-llama', prompt: 'Say hello to the team', max_tokens: 20, stream: true, stream_options: { include_usage: true } })
    .withResponse();
  t.equal(streamResponse.headers.get('x-inference-route'), 'bedrock');
  const { text, finish, usage } = await drain(stream, (c) => c.text);
  t.equal(text, 'Hello team, welcome aboard');
  t.equal(finish, 'stop');
  t.ok(usage && usage.prompt_tokens > 0 && usage.completion_tokens > 0, 'usage from the finish event');
  t.match(fake.requests[1].path, /invoke-with-response-stream/);
});

t.test('chat completions on a Bedrock-only (Converse) adapter, JSON and streamed', async (t) => {
  fake.enqueue({ text: 'Open the tray and remove the paper.' });
  const { data, response } = await client.chat.completions.create({ model: 'chat', messages, max_tokens: 30 }).withResponse();
  t.equal(response.headers.get('x-inference-route'), 'bedrock');
  t.equal(data.choices[0].message.content, 'Open the tray and remove the paper.');
  t.equal(data.choices[0].finish_reason, 'stop');
  t.ok(data.usage!.prompt_tokens > 0 && data.usage!.completion_tokens > 0);
  const sent = fake.requests[0].body;
  t.equal(sent.messages.length, 1, 'Converse gets the rendered chat as one user message');
  t.match(sent.messages[0].content[0].text, /You are a support agent\.[\s\S]*My printer jams\./);

  fake.enqueue({ text: 'Open the tray and remove the paper.' });
  const { data: stream, response: streamResponse } = await client.chat.completions
    .create({ model: 'chat', messages, max_tokens: 30, stream: true, stream_options: { include_usage: true } })
    .withResponse();
  t.equal(streamResponse.headers.get('x-inference-route'), 'bedrock');
  const { text, finish, usage } = await drain(stream, (c) => c.delta.content ?? '');
  t.equal(text, 'Open the tray and remove the paper.');
  t.equal(finish, 'stop');
  t.ok(usage && usage.prompt_tokens > 0 && usage.completion_tokens > 0);
  t.match(fake.requests[1].path, /converse-stream/);
});

t.test('local adapters stay local; a full local queue overflows to Bedrock; route=local never does', async (t) => {
  const local = await client.completions.create({ model: 'sales', prompt: 'Say hello', max_tokens: 4 }).withResponse();
  t.equal(local.response.headers.get('x-inference-route'), 'local');
  t.match(logged.at(-1), { route: 'local', adapter: 'sales' });
  t.equal(fake.requests.length, 0);

  // maxBatch 1, maxQueue 1: one running, one waiting, the third overflows.
  const hold = [0, 1].map(() =>
    fetch(`${origin}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sales', prompt: 'Say hello to the team', max_tokens: 230, ignore_eos: true }),
    }),
  );
  while (engine.scheduler.batchSize < 1 || engine.scheduler.queueDepth < 1) await new Promise((r) => setTimeout(r, 1));
  fake.enqueue({ text: 'from bedrock' });
  const overflow = await client.chat.completions.create({ model: 'sales', messages, max_tokens: 10 }).withResponse();
  t.equal(overflow.response.headers.get('x-inference-route'), 'bedrock', 'overflowed');
  t.equal(overflow.data.choices[0].message.content, 'from bedrock');
  t.ok(overflow.data.usage!.prompt_tokens > 0, 'prompt tokens from the finish event');
  t.equal(fake.requests.length, 1);

  const forcedLocal = await rejectsWith(
    t,
    client.completions.create({ model: 'sales', prompt: 'Say hello', max_tokens: 4 }, { query: { route: 'local' } }),
    OpenAI.RateLimitError,
  );
  t.equal(forcedLocal?.status, 429, 'route=local: queue_full');
  await rejectsWith(t, client.completions.create({ model: 'code', prompt: 'Say hello', max_tokens: 4 }), OpenAI.RateLimitError, 'no target: queue_full');
  await rejectsWith(
    t,
    client.completions.create({ model: BASE, prompt: 'Say hello', max_tokens: 4 }),
    OpenAI.RateLimitError,
    'the base model never goes to Bedrock',
  );
  await rejectsWith(
    t,
    client.completions.create({ model: 'sales', prompt: [1, 2, 3], max_tokens: 4 }),
    OpenAI.RateLimitError,
    'token-id prompts never overflow',
  );
  for (const r of await Promise.all(hold)) {
    t.equal(r.status, 200);
    t.equal(r.headers.get('x-inference-route'), 'local');
    await r.json();
  }
  t.equal(fake.requests.length, 1, 'only the overflow reached Bedrock');
});

t.test('a local engine failure before the first token goes to Bedrock (injected fault)', async (t) => {
  failPrefillUntilTeardown(t, engine);
  fake.enqueue({ text: 'rescued' }, { text: 'rescued stream' });
  const res = await client.completions.create({ model: 'support', prompt: 'Say hello', max_tokens: 8 }).withResponse();
  t.same([res.response.headers.get('x-inference-route'), res.data.choices[0].text], ['bedrock', 'rescued']);
  const { data: stream, response } = await client.chat.completions.create({ model: 'support', messages, max_tokens: 8, stream: true }).withResponse();
  t.equal(response.headers.get('x-inference-route'), 'bedrock');
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
  t.equal(text, 'rescued stream');
  await rejectsWith(
    t,
    client.completions.create({ model: 'code', prompt: 'Say hello', max_tokens: 8 }),
    OpenAI.InternalServerError,
    'without a target the failure is the answer',
  );
});

t.test('route rules and what only the local engine can do', async (t) => {
  await rejectsWith(
    t,
    client.completions.create({ model: 'chat', prompt: 'hi', max_tokens: 4 }, { query: { route: 'local' } }),
    OpenAI.BadRequestError,
    'route=local for a Bedrock-only adapter',
  );
  await rejectsWith(
    t,
    client.completions.create({ model: 'code', prompt: 'hi', max_tokens: 4 }, { query: { route: 'bedrock' } }),
    OpenAI.BadRequestError,
    'route=bedrock without a target',
  );
  await rejectsWith(
    t,
    client.completions.create({ model: 'code', prompt: 'hi', max_tokens: 4 }, { query: { route: 'sideways' } }),
    OpenAI.BadRequestError,
    'an unknown route',
  );
  await rejectsWith(
    t,
    client.completions.create({ model: 'bo-llama', prompt: 'hi', max_tokens: 4, logprobs: 2 }),
    OpenAI.BadRequestError,
    'Bedrock gives no logprobs',
  );
  await rejectsWith(
    t,
    client.completions.create({ model: 'bo-llama', prompt: [1, 2, 3], max_tokens: 4 }),
    OpenAI.BadRequestError,
    'Bedrock takes no token ids',
  );
  await rejectsWith(
    t,
    client.chat.completions.create({ model: 'chat', messages, max_tokens: 4, response_format: { type: 'json_object' } }),
    OpenAI.BadRequestError,
    'no JSON mode on Bedrock',
  );
  await rejectsWith(t, client.completions.create({ model: 'nope', prompt: 'hi', max_tokens: 4 }), OpenAI.NotFoundError, 'an unknown model is still a 404');
  t.equal(fake.requests.length, 0, 'none of these reached Bedrock');
  const forced = await client.completions.create({ model: 'sales', prompt: 'Say hello', max_tokens: 4 }, { query: { route: 'bedrock' } }).withResponse();
  t.equal(forced.response.headers.get('x-inference-route'), 'bedrock', 'route=bedrock for a local adapter with a target');
  t.equal(fake.requests.length, 1);
});

t.test("a Bedrock error is the client's typed error", async (t) => {
  fake.setDefault({ error: { type: 'ThrottlingException' } });
  const e = await rejectsWith(t, client.completions.create({ model: 'bo-llama', prompt: 'hi', max_tokens: 4 }), OpenAI.RateLimitError);
  t.equal(e?.status, 429);
  t.equal((e?.error as { code?: string } | undefined)?.code, 'upstream_throttled');
  t.equal(fake.requests.length, 3, 'the fallback retried (maxRetries 2) before giving up');
  clock.now += 60_000;
  await rejectsWith(
    t,
    client.chat.completions.create({ model: 'chat', messages, max_tokens: 4, stream: true }),
    OpenAI.RateLimitError,
    'streamed: before the headers',
  );
});
