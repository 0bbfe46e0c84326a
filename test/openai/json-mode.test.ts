/**
 * response_format json_object / json_schema on the random-weight fixture model: whatever it samples, an
 * output that finishes is JSON that validates against the schema, over many seeds and temperatures.
 * The fixture model likes long strings and whitespace, so some outputs run out of tokens before the value
 * closes; those must end only because of max_tokens (finish_reason length, exactly max_tokens tokens).
 */
import t, { type Test } from 'tap';
import OpenAI from 'openai';
import { validateJson, type JsonSchema } from '../../src/engine/constrain/index.js';
import { rejectsWith, startServer, tokenIds } from './helpers.js';

const server = await startServer();
t.teardown(() => server.close());
const { client, engine } = server;
const BASE = engine.modelName;
const MODELS = [BASE, 'support', 'sales', 'code'];
const MAX_TOKENS = 200;
const TEMPERATURES = [0, 0.7, 1, 1.5, 2];
const N = 8;

const point = { type: 'object', properties: { x: { type: 'integer' }, y: { type: 'integer' } }, required: ['x', 'y'], additionalProperties: false };
const SCHEMAS: Array<{ name: string; schema: JsonSchema | null; strict?: boolean }> = [
  { name: 'json_object', schema: null },
  { name: 'integers', schema: { type: 'array', items: { type: 'integer' }, minItems: 1, maxItems: 4 } },
  { name: 'optional', schema: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'boolean' } }, additionalProperties: false } },
  {
    name: 'record',
    strict: true,
    schema: {
      type: 'object',
      properties: {
        tier: { enum: ['gold', 'silver'] },
        ok: { type: 'boolean' },
        nested: { type: 'object', properties: { flag: { const: true }, none: { type: 'null' } }, required: ['flag', 'none'], additionalProperties: false },
      },
      required: ['tier', 'ok', 'nested'],
      additionalProperties: false,
    },
  },
  {
    name: 'refs',
    schema: {
      $defs: { point },
      type: 'object',
      properties: {
        shape: { anyOf: [{ $ref: '#/$defs/point' }, { type: 'array', items: { $ref: '#/$defs/point' }, minItems: 1, maxItems: 2 }] },
        kind: { oneOf: [{ const: 'a' }, { const: 'b' }] },
      },
      required: ['shape', 'kind'],
      additionalProperties: false,
    },
  },
];

function responseFormat(s: (typeof SCHEMAS)[number]): OpenAI.ChatCompletionCreateParams['response_format'] {
  if (s.schema === null) return { type: 'json_object' };
  return { type: 'json_schema', json_schema: { name: s.name, schema: s.schema as Record<string, unknown>, strict: s.strict ?? false } };
}

interface Tally {
  finished: number;
  truncated: number;
}

function check(t: Test, s: (typeof SCHEMAS)[number], label: string, text: string, finish: string, tokens: number, tally: Tally): void {
  if (finish === 'stop') {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      t.fail(`${label}: finished output does not parse: ${(e as Error).message}: ${JSON.stringify(text)}`);
      return;
    }
    const errors = validateJson(value, s.schema);
    if (errors.length) t.fail(`${label}: ${errors.join('; ')}: ${JSON.stringify(text)}`);
    tally.finished++;
  } else {
    if (finish !== 'length' || tokens !== MAX_TOKENS) t.fail(`${label}: unfinished output ended with ${finish} after ${tokens} tokens`);
    tally.truncated++;
  }
}

t.test('chat: every finished output parses and validates, for many seeds and temperatures, on every model', async (t) => {
  const total: Tally = { finished: 0, truncated: 0 };
  for (const s of SCHEMAS) {
    const tally: Tally = { finished: 0, truncated: 0 };
    await Promise.all(
      TEMPERATURES.map(async (temperature, ti) => {
        const model = MODELS[ti % MODELS.length];
        const r = await client.chat.completions.create({
          model,
          messages: [{ role: 'user', content: 'JSON' }],
          max_tokens: MAX_TOKENS,
          temperature,
          seed: 1000 * ti + 17,
          n: N,
          logprobs: true,
          response_format: responseFormat(s),
        });
        t.equal(r.choices.length, N);
        for (const c of r.choices)
          check(t, s, `${s.name} ${model} t=${temperature} choice ${c.index}`, c.message.content ?? '', c.finish_reason, c.logprobs!.content!.length, tally);
      }),
    );
    t.ok(tally.finished > 0, `${s.name}: ${tally.finished} of ${tally.finished + tally.truncated} outputs finished, every one valid`);
    total.finished += tally.finished;
    total.truncated += tally.truncated;
  }
  t.ok(
    total.finished >= 0.75 * (total.finished + total.truncated),
    `most outputs finish within ${MAX_TOKENS} tokens (${total.finished} of ${total.finished + total.truncated})`,
  );
});

async function streamJson(s: (typeof SCHEMAS)[number], seed: number) {
  const params = {
    model: 'support',
    messages: [{ role: 'user' as const, content: 'JSON' }],
    max_tokens: MAX_TOKENS,
    temperature: 1,
    seed,
    n: 2,
    logprobs: true,
    response_format: responseFormat(s),
    ...({ return_tokens_as_token_ids: true } as object),
  };
  const whole = await client.chat.completions.create(params);
  const stream = await client.chat.completions.create({ ...params, stream: true });
  const text = ['', ''];
  const tokens: string[][] = [[], []];
  const finish = ['', ''];
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text[c.index] += c.delta.content ?? '';
      tokens[c.index].push(...(c.logprobs?.content ?? []).map((x) => x.token));
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  return { whole, text, tokens, finish };
}

/** The text a run of `token_id:<id>` tokens stands for: their bytes, decoded once (no detokenizer clean-up). */
function textOfTokens(tokens: string[]): string {
  const table = engine.tokenizer.tokenBytes();
  return Buffer.concat(tokenIds(tokens).map((id) => Buffer.from(table[id]))).toString('utf8');
}

t.test('streaming chat in JSON mode: the same tokens as the JSON reply, and they spell valid JSON', async (t) => {
  const tally: Tally = { finished: 0, truncated: 0 };
  let differing = 0;
  for (const s of SCHEMAS) {
    for (const seed of [3, 4]) {
      const { whole, text, tokens, finish } = await streamJson(s, seed);
      for (const i of [0, 1]) {
        const label = `stream ${s.name} seed ${seed} choice ${i}`;
        t.same(
          tokens[i],
          whole.choices[i].logprobs!.content!.map((x) => x.token),
          `${label}: same tokens as the JSON reply`,
        );
        t.equal(finish[i], whole.choices[i].finish_reason);
        check(t, s, label, textOfTokens(tokens[i]), finish[i], tokens[i].length, tally);
        if (text[i] !== textOfTokens(tokens[i])) differing++;
      }
    }
  }
  t.ok(tally.finished > 0, `${tally.finished} finished, ${tally.truncated} ran out of tokens`);
  t.equal(differing, 0, `streamed text equals the text of the streamed tokens (${differing} of ${SCHEMAS.length * 4} differ)`);
});

t.test('completions take response_format too (an extension)', async (t) => {
  const tally: Tally = { finished: 0, truncated: 0 };
  for (const s of SCHEMAS) {
    const completion = await client.completions.create({
      model: 'code',
      prompt: 'JSON:',
      max_tokens: MAX_TOKENS,
      temperature: 0.9,
      seed: 8,
      n: 4,
      logprobs: 0,
      ...({ response_format: responseFormat(s) } as object),
    });
    for (const c of completion.choices) check(t, s, `completions ${s.name} choice ${c.index}`, c.text, c.finish_reason, c.logprobs!.tokens!.length, tally);
  }
  t.ok(tally.finished > tally.truncated, `${tally.finished} finished, ${tally.truncated} ran out of tokens`);
});

t.test('text is the default and json_object is an object', async (t) => {
  const text = await client.chat.completions.create({
    model: BASE,
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 5,
    response_format: { type: 'text' },
  });
  t.equal(text.choices[0].finish_reason, 'length', 'response_format text: plain generation');
  const obj = await client.chat.completions.create({
    model: BASE,
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: MAX_TOKENS,
    temperature: 1,
    seed: 2,
    response_format: { type: 'json_object' },
  });
  if (obj.choices[0].finish_reason === 'stop') t.type(JSON.parse(obj.choices[0].message.content!), 'object');
  else t.equal(obj.usage!.completion_tokens, MAX_TOKENS);
});

t.test('unsupported schemas are a 400 that names the keyword', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['pattern', { type: 'object', properties: { a: { type: 'string', pattern: '^x' } } }],
    ['minLength', { type: 'object', properties: { a: { type: 'string', minLength: 2 } } }],
    ['format', { type: 'object', properties: { when: { type: 'string', format: 'date-time' } } }],
  ];
  for (const [keyword, schema] of cases) {
    const e = await rejectsWith(
      t,
      client.chat.completions.create({
        model: BASE,
        messages: [{ role: 'user', content: 'hi' }],
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: schema as Record<string, unknown> } },
      }),
      OpenAI.BadRequestError,
    );
    t.match(e?.message, new RegExp(keyword), `${keyword}: named in the message`);
    t.equal(e?.param, 'response_format.json_schema.schema');
  }
});
