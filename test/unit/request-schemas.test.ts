/**
 * Request bodies have one source each: a TypeBox schema, from which the TypeScript type is derived. The schemas
 * fastify validates with are, as JSON, exactly the hand-written ones they replaced (test/fixtures/request-schemas.json,
 * saved from the code before the change), so validation and its messages are unchanged; and a few bodies go through
 * the real routes to show the messages clients get.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { generateBodySchema, type GenerateBody } from '../../src/routes/generate-body.js';
import { chatBodySchema, completionBodySchema, responseFormatSchema, routeQuerySchema, type ChatBody } from '../../src/routes/openai/schemas.js';
import { FIXTURES } from '../helpers/engine.js';
import { buildTestApp } from '../helpers/app.js';

const before = JSON.parse(readFileSync(join(FIXTURES, 'request-schemas.json'), 'utf8')) as Record<string, unknown>;
const asJson = (schema: unknown) => JSON.parse(JSON.stringify(schema)) as unknown;

t.test('the TypeBox schemas are, as JSON Schema, the hand-written ones they replaced', async (t) => {
  t.same(asJson(generateBodySchema), before.generate, '/v1/generate body');
  t.same(asJson(completionBodySchema), before.completion, '/v1/completions body');
  t.same(asJson(chatBodySchema), before.chat, '/v1/chat/completions body');
  t.same(asJson(routeQuerySchema), before.routeQuery, 'route query');
  t.same(asJson(responseFormatSchema), before.responseFormat, 'response_format');
});

t.test('the derived types follow the schemas', async (t) => {
  // Compile-time checks (npm run typecheck): a wrong field or type here is a type error.
  const generate: GenerateBody = { prompt: 'hi', stop: ['\n'], max_tokens: 3 };
  const chat: ChatBody = { model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], stop: null, max_tokens: null };
  // @ts-expect-error prompt_token_ids holds integers
  const wrong: GenerateBody = { prompt_token_ids: ['a'] };
  t.ok(generate && chat && wrong);
});

t.test('validation messages through the routes: as before TypeBox (recorded from the previous commit)', async (t) => {
  const app = await buildTestApp(null);
  t.teardown(() => app.close());
  const post = async (url: string, body: object) => {
    const res = await app.inject({ method: 'POST', url, payload: body });
    return { status: res.statusCode, body: res.json() as unknown };
  };
  const hint = 'Fix the request body or query as the message says.';
  t.same(await post('/v1/generate', { prompt: 'x', max_tokens: 0 }), {
    status: 400,
    body: { error: { code: 'invalid_request', message: `Invalid body: max_tokens must be >= 1. ${hint}` } },
  });
  t.same(await post('/v1/generate', { prompt: 'x', extra: 1 }), {
    status: 400,
    body: { error: { code: 'invalid_request', message: `Invalid body:  must NOT have additional properties. ${hint}` } },
  });
  t.same(await post('/v1/chat/completions', { model: 'm', messages: [], temperature: 3 }), {
    status: 400,
    body: {
      error: { message: "Invalid value for 'temperature': must be <= 2.", type: 'invalid_request_error', param: 'temperature', code: 'invalid_request' },
    },
  });
  t.same(await post('/v1/completions', { model: 'm', prompt: 'x', max_tokens: 'ten' }), {
    status: 400,
    body: {
      error: { message: "Invalid value for 'max_tokens': must be integer,null.", type: 'invalid_request_error', param: 'max_tokens', code: 'invalid_request' },
    },
  });
});
