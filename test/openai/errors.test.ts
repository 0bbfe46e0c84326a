/**
 * Errors of the OpenAI routes: OpenAI's shape {"error": {message, type, param, code}} with the catalogue's
 * HTTP status, through app.inject(); the openai client's typed errors on a real listening server; errors
 * before and during a stream. The native routes keep their own shape.
 */
import t, { type Test } from 'tap';
import OpenAI from 'openai';
import { cpSync, mkdtempSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../../src/app.js';
import { clientFor } from '../helpers/app.js';
import type { EngineClient } from '../../src/engine/worker/engine-client.js';
import type { Engine } from '../../src/engine/engine.js';
import type { GenerateRequest, GenerationEvent } from '../../src/engine/types.js';
import { AppError } from '../../src/errors.js';
import { BASE_MODEL, sha256Hex } from '../../src/security/keys.js';
import { FIXTURE_ADAPTERS, loadFixtureEngine } from '../helpers/engine.js';
import { openaiConfig, rejectsWith, startServer } from './helpers.js';

const adaptersDir = mkdtempSync(join(tmpdir(), 'openai-errors-adapters-'));
cpSync(FIXTURE_ADAPTERS, adaptersDir, { recursive: true });
cpSync(join(FIXTURE_ADAPTERS, 'sales'), join(adaptersDir, 'broken'), { recursive: true });
const brokenWeights = join(adaptersDir, 'broken', 'adapter_model.safetensors');
truncateSync(brokenWeights, statSync(brokenWeights).size - 64);

const engine = await loadFixtureEngine({ adaptersDir });
const app = await buildApp({ config: openaiConfig(), engine: clientFor(engine) });
t.teardown(async () => {
  await app.close();
  await engine.close();
});
const BASE = engine.modelName;
const chat = { model: BASE, messages: [{ role: 'user', content: 'hi' }] };
const completion = { model: BASE, prompt: 'hi' };

const post = (url: string, payload: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  app.inject({ method: 'POST', url, payload: typeof payload === 'string' ? payload : JSON.stringify(payload), headers });

interface Expect {
  status: number;
  type: string;
  code: string;
  param: string | null;
  message?: RegExp;
}

async function expectError(t: Test, name: string, url: string, payload: unknown, e: Expect, headers?: Record<string, string>) {
  const res = await post(url, payload, headers);
  t.equal(res.statusCode, e.status, `${name}: status ${e.status}`);
  const body = res.json();
  t.same(Object.keys(body), ['error'], `${name}: one key, error`);
  t.same(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type'], `${name}: message, type, param, code`);
  t.equal(body.error.type, e.type, `${name}: type`);
  t.equal(body.error.code, e.code, `${name}: code`);
  t.equal(body.error.param, e.param, `${name}: param`);
  t.type(body.error.message, 'string');
  if (e.message) t.match(body.error.message, e.message, `${name}: message`);
  return res;
}

const bad = (param: string | null, message?: RegExp): Expect => ({ status: 400, type: 'invalid_request_error', code: 'invalid_request', param, message });

t.test('request errors in OpenAI shape, both endpoints', async (t) => {
  for (const [url, base] of [
    ['/v1/chat/completions', chat],
    ['/v1/completions', completion],
  ] as const) {
    await expectError(
      t,
      `${url} unknown model`,
      url,
      { ...base, model: 'gpt-4o' },
      { status: 404, type: 'invalid_request_error', code: 'model_not_found', param: 'model', message: /gpt-4o.*does not exist/ },
    );
    await expectError(
      t,
      `${url} unknown model, streaming`,
      url,
      { ...base, model: 'gpt-4o', stream: true },
      { status: 404, type: 'invalid_request_error', code: 'model_not_found', param: 'model' },
    );
    await expectError(t, `${url} negative max_tokens`, url, { ...base, max_tokens: -1 }, bad('max_tokens', />= 1/));
    await expectError(t, `${url} temperature 5`, url, { ...base, temperature: 5 }, bad('temperature', /<= 2/));
    await expectError(t, `${url} top_p 1.5`, url, { ...base, top_p: 1.5 }, bad('top_p'));
    await expectError(t, `${url} n 0`, url, { ...base, n: 0 }, bad('n'));
    await expectError(t, `${url} wrong type`, url, { ...base, max_tokens: 'ten' }, bad('max_tokens', /integer/));
    await expectError(t, `${url} unknown argument`, url, { ...base, foo: 1 }, bad('foo', /Unrecognized request argument supplied: foo/));
    await expectError(t, `${url} missing model`, url, { ...base, model: undefined }, bad('model', /Missing required parameter/));
    await expectError(t, `${url} max_tokens above the server limit`, url, { ...base, max_tokens: 100_000 }, bad('max_tokens', /2048/));
    await expectError(t, `${url} too many stop sequences`, url, { ...base, stop: Array.from({ length: 9 }, (_, i) => `s${i}`) }, bad('stop', /limit is 8/));
    await expectError(t, `${url} frequency_penalty`, url, { ...base, frequency_penalty: 0.5 }, bad('frequency_penalty', /not supported/));
    await expectError(t, `${url} presence_penalty`, url, { ...base, presence_penalty: -1 }, bad('presence_penalty', /not supported/));
    await expectError(t, `${url} logit_bias`, url, { ...base, logit_bias: { '5': 10 } }, bad('logit_bias', /not supported/));
    await expectError(
      t,
      `${url} context too long`,
      url,
      { ...base, max_tokens: 255 },
      { status: 400, type: 'invalid_request_error', code: 'context_length_exceeded', param: null, message: /256/ },
    );
    await expectError(
      t,
      `${url} errored adapter`,
      url,
      { ...base, model: 'broken' },
      { status: 422, type: 'invalid_request_error', code: 'adapter_errored', param: null, message: /broken/ },
    );
    await expectError(t, `${url} malformed JSON`, url, '{"model": ', { status: 400, type: 'invalid_request_error', code: 'invalid_json', param: null });
    await expectError(
      t,
      `${url} not JSON`,
      url,
      'hello',
      { status: 415, type: 'invalid_request_error', code: 'unsupported_media_type', param: null },
      { 'content-type': 'application/xml' },
    );
    await expectError(t, `${url} response_format type`, url, { ...base, response_format: { type: 'yaml' } }, bad('response_format.type'));
    await expectError(
      t,
      `${url} json_schema without a schema`,
      url,
      { ...base, response_format: { type: 'json_schema', json_schema: { name: 'x' } } },
      bad('response_format.json_schema.schema', /required/),
    );
    await expectError(
      t,
      `${url} json_schema bad name`,
      url,
      { ...base, response_format: { type: 'json_schema', json_schema: { name: 'a b', schema: {} } } },
      bad('response_format.json_schema.name'),
    );
    await expectError(
      t,
      `${url} unsupported schema keyword`,
      url,
      {
        ...base,
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { n: { type: 'integer', minimum: 3 } } } } },
      },
      bad('response_format.json_schema.schema', /"minimum"/),
    );
  }
});

t.test('chat-only and completions-only errors', async (t) => {
  const c = '/v1/chat/completions';
  await expectError(t, 'no messages', c, { model: BASE, messages: [] }, bad('messages', /fewer than 1/));
  await expectError(t, 'bad role', c, { model: BASE, messages: [{ role: 'wizard', content: 'x' }] }, bad('messages[0].role'));
  await expectError(
    t,
    'image parts',
    c,
    { model: BASE, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://x' } }] }] },
    bad('messages[0].content[0]', /image_url/),
  );
  await expectError(t, 'tools', c, { ...chat, tools: [{ type: 'function', function: { name: 'f' } }] }, bad('tools', /not supported/));
  await expectError(t, 'tool_choice required', c, { ...chat, tool_choice: 'required' }, bad('tool_choice'));
  await expectError(t, 'top_logprobs without logprobs', c, { ...chat, top_logprobs: 2 }, bad('top_logprobs', /logprobs: true/));
  await expectError(t, 'top_logprobs 21', c, { ...chat, logprobs: true, top_logprobs: 21 }, bad('top_logprobs'));
  await expectError(t, 'n 17', c, { ...chat, n: 17 }, bad('n', /<= 16/));
  await expectError(t, 'max_completion_tokens 0', c, { ...chat, max_completion_tokens: 0 }, bad('max_completion_tokens'));
  await expectError(t, 'audio output', c, { ...chat, modalities: ['text', 'audio'] }, bad('modalities'));
  const template = await post(c, { model: BASE, messages: [{ role: 'user', content: 'x'.repeat(300) }] });
  t.equal(template.json().error.code, 'context_length_exceeded', 'a rendered chat longer than the context');

  const p = '/v1/completions';
  await expectError(t, 'echo', p, { ...completion, echo: true }, bad('echo', /not supported/));
  await expectError(t, 'suffix', p, { ...completion, suffix: 'end' }, bad('suffix', /not supported/));
  await expectError(t, 'best_of', p, { ...completion, best_of: 3 }, bad('best_of'));
  await expectError(t, 'logprobs 21', p, { ...completion, logprobs: 21 }, bad('logprobs'));
  await expectError(t, 'token id outside the vocabulary', p, { model: BASE, prompt: [0, 5, 99999] }, bad('prompt', /99999/));
  await expectError(
    t,
    'token id outside the vocabulary in a batch',
    p,
    {
      model: BASE,
      prompt: [
        [0, 5],
        [0, 99999],
      ],
    },
    bad('prompt[1]', /99999/),
  );
  await expectError(t, 'mixed prompt array', p, { model: BASE, prompt: ['a', 5] }, bad('prompt'));
  await expectError(t, 'too many choices', p, { model: BASE, prompt: ['a', 'b', 'c', 'd', 'e'], n: 16 }, bad('n', /80 choices/));
});

t.test('not ready, draining and full: 503 and 429 with Retry-After', async (t) => {
  const loading = await buildApp({ config: openaiConfig() });
  const notReady = await (async () => {
    const res = await loading.inject({ method: 'POST', url: '/v1/chat/completions', payload: chat });
    return res;
  })();
  t.equal(notReady.statusCode, 503);
  t.same(notReady.json().error, { message: notReady.json().error.message, type: 'server_error', param: null, code: 'model_not_ready' });
  t.equal(notReady.headers['retry-after'], '5');
  const models = await loading.inject({ method: 'GET', url: '/v1/models' });
  t.equal(models.statusCode, 503, 'GET /v1/models before the model loads');
  t.equal(models.json().error.type, 'server_error');
  await loading.close();

  app.engineState.draining = true;
  const draining = await post('/v1/completions', completion);
  app.engineState.draining = false;
  t.equal(draining.statusCode, 503);
  t.equal(draining.json().error.code, 'shutting_down');
  t.equal(draining.headers['retry-after'], '1');

  // A queue of 0: every request is refused as queue_full.
  const full = await startServer({ engine: { maxQueue: 0 } });
  const res = await full.app.inject({ method: 'POST', url: '/v1/completions', payload: completion });
  t.equal(res.statusCode, 429);
  t.same(res.json().error, { message: res.json().error.message, type: 'rate_limit_error', param: null, code: 'queue_full' });
  t.equal(res.headers['retry-after'], '1');
  const limited = await rejectsWith(t, full.client.chat.completions.create(chat as OpenAI.ChatCompletionCreateParamsNonStreaming), OpenAI.RateLimitError);
  t.equal(limited?.code, 'queue_full');
  await full.close();
});

t.test('the error handler is scoped: native routes keep the native shape', async (t) => {
  const res = await post('/v1/generate', { prompt: 5 });
  t.equal(res.statusCode, 400);
  t.same(Object.keys(res.json().error).sort(), ['code', 'message']);
  t.equal(res.json().error.code, 'invalid_request');
  const models = await app.inject({ method: 'GET', url: '/v1/models/nope' });
  t.equal(models.statusCode, 404);
  t.equal(models.json().error.code, 'model_not_found');
});

t.test("the openai client's typed errors on a real listening server", async (t) => {
  const server = await startServer({ engine: { adaptersDir } });
  t.teardown(() => server.close());
  const { client } = server;
  const notFound = await rejectsWith(t, client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }), OpenAI.NotFoundError);
  t.equal(notFound?.code, 'model_not_found');
  t.equal(notFound?.param, 'model');
  t.equal(notFound?.type, 'invalid_request_error');
  await rejectsWith(
    t,
    client.completions.create({ model: 'nope', prompt: 'hi', stream: true }),
    OpenAI.NotFoundError,
    'streaming: NotFoundError before any chunk',
  );
  const negative = await rejectsWith(t, client.completions.create({ model: BASE, prompt: 'hi', max_tokens: -3 }), OpenAI.BadRequestError);
  t.equal(negative?.param, 'max_tokens');
  const hot = await rejectsWith(
    t,
    client.chat.completions.create({ model: BASE, messages: [{ role: 'user', content: 'hi' }], temperature: 5 }),
    OpenAI.BadRequestError,
  );
  t.equal(hot?.param, 'temperature');
  await rejectsWith(t, client.chat.completions.create({ model: 'broken', messages: [{ role: 'user', content: 'hi' }] }), OpenAI.UnprocessableEntityError);
  server.app.engineState.draining = true;
  await rejectsWith(t, client.models.list(), OpenAI.InternalServerError, '503 while draining');
  server.app.engineState.draining = false;
});

/** An engine stand-in whose generations fail on cue: prompt [0, 7] before any token, [0, 8] after one, [0, 9] with a non-catalogue error. */
function failingEngine(): Engine {
  async function* events(request: GenerateRequest): AsyncGenerator<GenerationEvent> {
    const cue = request.promptTokenIds![1];
    if (cue === 7) throw new AppError('request_timeout', 'The request ran longer than 100 ms.');
    yield { type: 'token', tokenId: 5, text: 'hi' };
    await new Promise((r) => setTimeout(r, 10));
    if (cue === 8) throw new AppError('request_timeout', 'The request ran longer than 100 ms.');
    throw new Error('secret internal detail');
  }
  const fake = {
    modelName: 'fake',
    spec: { vocabSize: 384, eosTokenIds: [1] },
    maxSequenceLength: 256,
    adapters: { has: () => false, list: () => [] },
    start: (request: GenerateRequest) => ({ promptTokens: request.promptTokenIds!.length, events: events(request), scores: () => undefined }),
  };
  return fake as unknown as Engine;
}

t.test('a failure before the first token has its HTTP status; a later one is an error event the client raises', async (t) => {
  const fakeApp = await buildApp({ config: openaiConfig() });
  fakeApp.engineState.engine = failingEngine() as unknown as EngineClient;
  await fakeApp.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => fakeApp.close());
  const address = fakeApp.server.address();
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/v1`, apiKey: 'test', maxRetries: 0 });

  const early = await rejectsWith(t, client.completions.create({ model: 'fake', prompt: [0, 7], stream: true }), OpenAI.APIError);
  t.equal(early?.status, 408, 'request_timeout before any token: HTTP 408');
  t.equal(early?.code, 'request_timeout');

  const stream = await client.completions.create({ model: 'fake', prompt: [0, 8], stream: true });
  const texts: string[] = [];
  const late = await rejectsWith(
    t,
    (async () => {
      for await (const chunk of stream) texts.push(chunk.choices[0].text);
    })(),
    OpenAI.APIError,
  );
  t.same(texts, ['hi'], 'the token before the failure arrived');
  t.equal(late?.code, 'request_timeout');
  t.match(late?.message, /100 ms/);

  const internal = await rejectsWith(
    t,
    (async () => {
      for await (const chunk of await client.completions.create({ model: 'fake', prompt: [0, 9], stream: true })) void chunk;
    })(),
    OpenAI.APIError,
  );
  t.equal(internal?.code, 'internal_error');
  t.notMatch(internal?.message, /secret/, 'internal details are not sent');

  const raw = await fetch(`http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'fake', prompt: [0, 8], stream: true }),
  });
  const events = (await raw.text()).split('\n\n').filter(Boolean);
  t.equal(events.at(-1), 'data: [DONE]', 'the stream still ends with [DONE]');
  const error = JSON.parse(events.at(-2)!.replace(/^data: /, ''));
  t.same(Object.keys(error.error).sort(), ['code', 'message', 'param', 'type']);
  t.equal(error.error.type, 'invalid_request_error');
});

t.test('API keys: 401 without a key, 403 for a model the key may not use, the model list filtered', async (t) => {
  const server = await startServer({ config: (c) => (c.server.apiKeys = [{ name: 'k1', sha256: sha256Hex('key-one'), adapters: [BASE_MODEL, 'support'] }]) });
  t.teardown(() => server.close());
  const keyed = new OpenAI({ baseURL: server.baseURL, apiKey: 'key-one', maxRetries: 0 });
  const wrong = new OpenAI({ baseURL: server.baseURL, apiKey: 'not-a-key', maxRetries: 0 });

  const unauthorized = await rejectsWith(
    t,
    wrong.chat.completions.create({ model: BASE, messages: [{ role: 'user', content: 'hi' }] }),
    OpenAI.AuthenticationError,
  );
  t.equal(unauthorized?.type, 'authentication_error');
  t.equal(unauthorized?.code, 'unauthorized');

  const models = await keyed.models.list();
  t.same(models.data.map((m) => m.id).sort(), [BASE, 'support'].sort(), 'only the models the key may use');
  await rejectsWith(t, keyed.models.retrieve('sales'), OpenAI.NotFoundError, 'a model the key may not use is not found');

  const forbidden = await rejectsWith(t, keyed.completions.create({ model: 'sales', prompt: 'hi', max_tokens: 2 }), OpenAI.PermissionDeniedError);
  t.equal(forbidden?.type, 'permission_error');
  t.equal(forbidden?.code, 'forbidden');
  await rejectsWith(
    t,
    keyed.completions.create({ model: 'no-such-model', prompt: 'hi', max_tokens: 2 }),
    OpenAI.PermissionDeniedError,
    'unknown models are 403 too: a key never learns what exists',
  );

  const ok = await keyed.chat.completions.create({ model: 'support', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
  t.equal(ok.usage!.completion_tokens <= 2, true, 'an allowed model serves');
});
