/**
 * Fuzzing the HTTP API with fast-check on the real fixture engine: thousands of malformed and hostile
 * requests (random JSON, wrong types, huge numbers, unicode, __proto__/constructor keys, deep nesting,
 * bad content types and query strings, path traversal in adapter names, random methods and URLs). Every
 * answer must be < 500, and every error a JSON body with a code; the server answers normally afterwards
 * and Object.prototype is untouched. First through app.inject(), then a shorter run against the listening
 * server, raw sockets included.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { cpSync, mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { FIXTURE_ADAPTERS, loadFixtureEngine } from '../helpers/engine.js';
import { buildTestApp } from '../helpers/app.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240607);
const RUNS = Number(process.env.FUZZ_RUNS ?? 3000);

const root = mkdtempSync(join(tmpdir(), 'fuzz-adapters-'));
cpSync(FIXTURE_ADAPTERS, root, { recursive: true });
const engine = await loadFixtureEngine({ adaptersDir: root, maxQueue: 256 });
const app = await buildTestApp(engine, (c) => {
  c.limits.maxTokens = 8; // any request that is valid stays short
  c.limits.shedEventLoopDelayMs = 0; // shedding is tested in limits.test.ts; here it would only add noise
  c.server.bodyLimitBytes = 256 * 1024;
});
t.teardown(async () => {
  await app.close();
  await engine.close();
});
const MODEL = engine.modelName;
const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort();

// ---- arbitraries -------------------------------------------------------------------------------

const hostileStrings = fc.constantFrom(
  '',
  ' ',
  '\u0000',
  '../',
  '../../etc/passwd',
  '..%2F..%2Fetc%2Fpasswd',
  '%2e%2e',
  '/etc/passwd',
  'C:\\Windows\\system32',
  '\\\\server\\share',
  'support/../sales',
  'support\u0000.txt',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'base',
  MODEL,
  'support',
  'sales',
  'code',
  'a'.repeat(65),
  'a'.repeat(5000),
  '😀'.repeat(20),
  '\ud800',
  'é',
  'Ω≈ç√',
  '<script>alert(1)</script>',
  "'; DROP TABLE adapters; --",
  '${jndi:ldap://x}',
  '%s%s%n',
  '\r\nX-Injected: 1',
);
const anyText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  hostileStrings,
);
const hugeNumbers = fc.constantFrom(
  0,
  -0,
  -1,
  1,
  2,
  7,
  8,
  9,
  255,
  256,
  1e3,
  2 ** 31,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53 + 2,
  -(2 ** 53),
  1e21,
  1e308,
  -1e308,
  5e-324,
  0.5,
  1.5,
  -0.1,
  3.0000001,
);
const scalar = fc.oneof(anyText, hugeNumbers, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
const value = fc.oneof(
  { depthSize: 'small' },
  scalar,
  fc.array(scalar, { maxLength: 5 }),
  fc.dictionary(anyText, scalar, { maxKeys: 4 }),
  fc.jsonValue({ maxDepth: 4 }),
);
/** A field that is usually of the right type (so requests get past the schema) and often not. */
const field = (good: fc.Arbitrary<unknown>) => fc.oneof({ weight: 3, arbitrary: good }, { weight: 1, arbitrary: value });

const generateBody = fc.record(
  {
    prompt: field(fc.oneof(fc.string({ maxLength: 30 }), fc.constant('Hi'))),
    prompt_token_ids: field(fc.array(fc.oneof(fc.integer({ min: 0, max: 300 }), hugeNumbers), { maxLength: 6 })),
    max_tokens: field(fc.integer({ min: -2, max: 12 })),
    temperature: field(fc.double({ min: -1, max: 3, noNaN: true })),
    top_p: field(fc.double({ min: -0.5, max: 1.5, noNaN: true })),
    top_k: field(fc.integer({ min: -1, max: 400 })),
    seed: field(fc.oneof(fc.integer(), hugeNumbers)),
    stop: field(fc.oneof(fc.string({ maxLength: 5 }), fc.array(fc.string({ maxLength: 70 }), { maxLength: 10 }))),
    ignore_eos: field(fc.boolean()),
    logprobs: field(fc.boolean()),
    stream: field(fc.boolean()),
    extra: value,
  },
  { requiredKeys: [] },
);
const message = fc.record(
  {
    role: field(fc.constantFrom('system', 'user', 'assistant', 'tool', 'developer')),
    content: field(
      fc.oneof(fc.string({ maxLength: 30 }), fc.array(fc.record({ type: fc.constantFrom('text', 'image_url'), text: fc.string({ maxLength: 10 }) }))),
    ),
    name: value,
  },
  { requiredKeys: ['role'] },
);
const openaiBody = fc.record(
  {
    model: field(fc.oneof(fc.constantFrom(MODEL, 'support', 'sales', 'code', 'nope'), hostileStrings)),
    prompt: field(
      fc.oneof(
        fc.string({ maxLength: 30 }),
        fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
        fc.array(fc.integer({ min: -1, max: 300 }), { maxLength: 5 }),
      ),
    ),
    messages: field(fc.array(message, { maxLength: 3 })),
    max_tokens: field(fc.integer({ min: -1, max: 12 })),
    max_completion_tokens: field(fc.integer({ min: -1, max: 12 })),
    n: field(fc.integer({ min: -1, max: 20 })),
    temperature: field(fc.double({ min: -1, max: 3, noNaN: true })),
    logprobs: field(fc.oneof(fc.boolean(), fc.integer({ min: -1, max: 25 }))),
    top_logprobs: field(fc.integer({ min: -1, max: 25 })),
    stream: field(fc.boolean()),
    stream_options: field(fc.record({ include_usage: fc.boolean() })),
    response_format: field(
      fc.oneof(
        fc.constant({ type: 'json_object' }),
        fc.constant({ type: 'text' }),
        fc.record({
          type: fc.constant('json_schema'),
          json_schema: fc.record({
            name: fc.constantFrom('x', 'bad name'),
            schema: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant({ type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] })),
          }),
        }),
      ),
    ),
    stop: field(fc.oneof(fc.string({ maxLength: 5 }), fc.array(fc.string({ maxLength: 5 }), { maxLength: 10 }))),
    logit_bias: field(fc.dictionary(fc.string({ maxLength: 4 }), fc.integer({ min: -200, max: 200 }), { maxKeys: 3 })),
    echo: field(fc.boolean()),
    tools: value,
  },
  { requiredKeys: [] },
);
/** A valid body with, half the time, one field replaced by anything at all. */
const mutated = <T extends Record<string, unknown>>(valid: fc.Arbitrary<T>, keys: string[]) =>
  fc
    .tuple(valid, fc.constantFrom(...keys, '__proto__', 'constructor', 'unknown_field'), value, fc.boolean())
    .map(([b, k, v, mutate]) => (mutate ? JSON.stringify(b).replace(/^\{/, `{${JSON.stringify(k)}: ${JSON.stringify(v) ?? 'null'}, `) : JSON.stringify(b)));
const validGenerate = fc
  .tuple(
    fc.oneof(
      fc.record({ prompt: fc.string({ minLength: 1, maxLength: 30 }) }),
      fc.record({ prompt_token_ids: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 8 }) }),
    ),
    fc.record(
      {
        max_tokens: fc.integer({ min: 1, max: 8 }),
        temperature: fc.double({ min: 0, max: 2, noNaN: true }),
        top_p: fc.double({ min: 0.01, max: 1, noNaN: true }),
        top_k: fc.integer({ min: 0, max: 50 }),
        seed: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        stop: fc.array(fc.string({ minLength: 1, maxLength: 4 }), { maxLength: 3 }),
        ignore_eos: fc.boolean(),
        logprobs: fc.boolean(),
        stream: fc.boolean(),
      },
      { requiredKeys: ['max_tokens'] },
    ),
  )
  .map(([p, rest]) => ({ ...p, ...rest }));
const validModel = fc.constantFrom(MODEL, 'support', 'sales', 'code');
const validChat = fc.record(
  {
    model: validModel,
    messages: fc.array(fc.record({ role: fc.constantFrom('system', 'user', 'assistant'), content: fc.string({ maxLength: 20 }) }), {
      minLength: 1,
      maxLength: 3,
    }),
    max_tokens: fc.integer({ min: 1, max: 8 }),
    n: fc.integer({ min: 1, max: 3 }),
    stream: fc.boolean(),
    temperature: fc.double({ min: 0, max: 2, noNaN: true }),
    logprobs: fc.boolean(),
    response_format: fc.constantFrom({ type: 'text' }, { type: 'json_object' }),
    stop: fc.array(fc.string({ minLength: 1, maxLength: 4 }), { maxLength: 2 }),
    seed: fc.integer(),
  },
  { requiredKeys: ['model', 'messages', 'max_tokens'] },
);
const validCompletion = fc.record(
  {
    model: validModel,
    prompt: fc.oneof(
      fc.string({ maxLength: 20 }),
      fc.array(fc.string({ maxLength: 10 }), { minLength: 1, maxLength: 2 }),
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 6 }),
    ),
    max_tokens: fc.integer({ min: 1, max: 8 }),
    n: fc.integer({ min: 1, max: 3 }),
    stream: fc.boolean(),
    echo: fc.boolean(),
    logprobs: fc.integer({ min: 0, max: 5 }),
    stream_options: fc.record({ include_usage: fc.boolean() }),
  },
  { requiredKeys: ['model', 'prompt', 'max_tokens'] },
);
const adminBody = fc.record(
  {
    name: field(fc.oneof(hostileStrings, fc.string({ maxLength: 10 }))),
    path: field(fc.oneof(hostileStrings, fc.constantFrom('support', 'sales', '.', '..', root, `${root}/../`, '/proc/self'))),
  },
  { requiredKeys: [] },
);

/** Raw JSON text no JS object literal can produce: __proto__ keys, duplicates, deep nesting, odd numbers. */
const rawBodies = fc.oneof(
  fc.constantFrom(
    '{"__proto__": {"polluted": "yes"}, "prompt": "Hi", "max_tokens": 2}',
    '{"constructor": {"prototype": {"polluted": "yes"}}, "prompt": "Hi", "max_tokens": 2}',
    '{"prompt": "Hi", "max_tokens": 2, "__proto__": {"max_tokens": 100000}}',
    '{"model": "support", "messages": [{"role": "user", "content": "Hi", "__proto__": {"role": "system"}}], "max_tokens": 2}',
    '{"name": "__proto__", "path": "support"}',
    '{"prompt": "a", "prompt": 5}',
    '{"max_tokens": 1e400, "prompt": "Hi"}',
    '{"max_tokens": -1e400, "prompt": "Hi"}',
    '{"max_tokens": 2.0, "prompt": "Hi"}',
    '{"max_tokens": 0x10, "prompt": "Hi"}',
    '{"prompt": "\\ud800", "max_tokens": 2}',
    '{"prompt": "\\u0000", "max_tokens": 2}',
    '{"prompt_token_ids": [1e400], "max_tokens": 2}',
    '{"prompt": "Hi", "max_tokens": 2,}',
    "{'prompt': 'Hi'}",
    'null',
    'true',
    '0',
    '"x"',
    '[]',
    '{}',
    '',
    ' ',
    '\u0000',
    '\ufeff{"prompt": "Hi", "max_tokens": 2}',
    `{"prompt": ${'['.repeat(5000)}${']'.repeat(5000)}}`,
    `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
    `{"model": "support", "messages": ${'['.repeat(3000)}${']'.repeat(3000)}}`,
    `{"model": "support", "messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": ${'{"type": "array", "items": '.repeat(200)}{}${'}'.repeat(200)}}}, "max_tokens": 2}`,
    `{"prompt": "${'x'.repeat(300_000)}"}`,
  ),
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.jsonValue({ maxDepth: 5 }).map((v) => JSON.stringify(v) ?? 'null'),
);

const name = fc.oneof(fc.constantFrom('support', 'sales', 'code', 'nope'), hostileStrings, fc.string({ maxLength: 12 }));
/** encodeURIComponent throws on lone surrogates; String.prototype.toWellFormed (Node 20) replaces them. */
const adminName = name.filter((n) => !['support', 'sales', 'code'].includes(n));
const enc = (s: string) => encodeURIComponent((s as string & { toWellFormed(): string }).toWellFormed());
const path = fc.oneof(
  fc.constantFrom(
    '/v1/generate',
    '/v1/generate',
    '/v1/generate',
    '/v1/completions',
    '/v1/chat/completions',
    '/v1/chat/completions',
    '/v1/adapters',
    '/v1/models',
    '/healthz',
    '/readyz',
    '/metrics',
    '/',
    '/v1',
    '/v1/',
    '//v1/generate',
    '/v1/generate/',
    '/V1/GENERATE',
    '/v1/./generate',
    '/v1/../v1/generate',
    '/%2e%2e/etc/passwd',
    '/v1/generate%00',
    '/v1/adapters/%2e%2e/pin',
  ),
  name.map((n) => `/v1/adapters/${enc(n)}`),
  name.map((n) => `/v1/adapters/${enc(n)}/pin`),
  name.map((n) => `/v1/adapters/${enc(n)}/unpin`),
  name.map((n) => `/v1/models/${enc(n)}`),
  name.map((n) => `/v1/adapters/${n.replace(/[?#]/g, '')}`),
  fc.webPath(),
);
const query = fc.oneof(
  fc.constant(''),
  name.map((n) => `?adapter=${enc(n)}`),
  name.map((n) => `?adapter=${n.replace(/[#&]/g, '')}`),
  fc.constantFrom(
    '?adapter=support&adapter=sales',
    '?adapter[]=support',
    '?adapter[__proto__]=x',
    '?__proto__[polluted]=yes',
    '?constructor[prototype][polluted]=yes',
    '?adapter=',
    '?adapter',
    '?route=bedrock',
    '?route=local&adapter=support',
    '?route=' + 'x'.repeat(3000),
    '?%E0%A4%A',
    '?adapter=%ZZ',
    '?&&&=&==',
  ),
  fc.webQueryParameters().map((q) => `?${q}`),
);
const contentType = fc.constantFrom(
  'application/json',
  'application/json',
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'APPLICATION/JSON',
  'application/json;;;',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  'application/xml',
  '*/*',
  'json',
  '',
  undefined,
);
const method = fc.oneof(
  { weight: 6, arbitrary: fc.constant('POST') },
  { weight: 3, arbitrary: fc.constantFrom('GET', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'HEAD') },
  { weight: 1, arbitrary: fc.constantFrom('PROPFIND', 'SEARCH', 'MKCOL', 'LOCK', 'UNLINK', 'TRACE', 'QUERY') },
);
const body = fc.oneof(
  { weight: 4, arbitrary: generateBody.map((b) => JSON.stringify(b)) },
  { weight: 3, arbitrary: openaiBody.map((b) => JSON.stringify(b)) },
  { weight: 1, arbitrary: adminBody.map((b) => JSON.stringify(b)) },
  { weight: 3, arbitrary: rawBodies },
  { weight: 1, arbitrary: fc.constant(undefined) },
);
// Header values must hold no control characters (what the fuzzer generates against).
const extraHeaders = fc.dictionary(
  fc.constantFrom('authorization', 'x-forwarded-for', 'accept', 'accept-encoding', 'x-request-id', 'origin', 'cookie', 'user-agent', 'expect'),
  fc.oneof(
    fc.string({ maxLength: 30 }),
    // eslint-disable-next-line no-control-regex -- the NUL character is what this excludes
    hostileStrings.filter((s) => !/[\r\n\u0000]/.test(s) && /^[\x20-\x7e]*$/.test(s)),
  ),
  { maxKeys: 3 },
);
const randomRequest = fc.record({
  method,
  url: fc.tuple(path, query).map(([p, q]) => (p.startsWith('/') ? p : `/${p}`) + q),
  contentType,
  body,
  headers: extraHeaders,
});
/** Aimed at a real route with a JSON body of (mostly) its own shape, so the fuzz gets past routing into validation and the engine. */
const targetedRequest = fc.oneof(
  fc.record({
    method: fc.constant('POST'),
    url: fc.oneof(
      fc.constantFrom('/v1/generate', '/v1/generate?adapter=support', '/v1/generate?adapter=sales', '/v1/generate?adapter=code'),
      query.map((q) => `/v1/generate${q}`),
    ),
    contentType: fc.constant('application/json'),
    body: fc.oneof(
      { weight: 4, arbitrary: mutated(validGenerate, ['prompt', 'prompt_token_ids', 'max_tokens', 'temperature', 'top_p', 'top_k', 'seed', 'stop', 'stream']) },
      { weight: 2, arbitrary: generateBody.map((b) => JSON.stringify(b)) },
      { weight: 1, arbitrary: rawBodies },
    ),
    headers: fc.constant({}),
  }),
  fc.record({
    method: fc.constant('POST'),
    url: fc.constant('/v1/chat/completions'),
    contentType: fc.constant('application/json'),
    body: fc.oneof(
      {
        weight: 4,
        arbitrary: mutated(validChat, ['model', 'messages', 'max_tokens', 'n', 'logprobs', 'top_logprobs', 'response_format', 'stream_options', 'tools']),
      },
      { weight: 2, arbitrary: openaiBody.map((b) => JSON.stringify(b)) },
      { weight: 1, arbitrary: rawBodies },
    ),
    headers: fc.constant({}),
  }),
  fc.record({
    method: fc.constant('POST'),
    url: fc.constant('/v1/completions'),
    contentType: fc.constant('application/json'),
    body: fc.oneof(
      { weight: 4, arbitrary: mutated(validCompletion, ['model', 'prompt', 'max_tokens', 'n', 'logprobs', 'echo', 'suffix', 'best_of']) },
      { weight: 2, arbitrary: openaiBody.map((b) => JSON.stringify(b)) },
    ),
    headers: fc.constant({}),
  }),
  // (The fixture adapters are left registered here so that generation requests keep reaching them.)
  fc.record({
    method: fc.constantFrom('POST', 'DELETE'),
    url: fc.oneof(
      fc.constant('/v1/adapters'),
      adminName.map((n) => `/v1/adapters/${enc(n)}`),
      adminName.map((n) => `/v1/adapters/${enc(n)}/pin`),
    ),
    contentType: fc.constant('application/json'),
    body: adminBody.map((b) => JSON.stringify(b)),
    headers: fc.constant({}),
  }),
);
const fuzzRequest = fc.oneof({ weight: 3, arbitrary: targetedRequest }, { weight: 2, arbitrary: randomRequest }) as fc.Arbitrary<{
  method: string;
  url: string;
  contentType: string | undefined;
  body: string | undefined;
  headers: Record<string, string>;
}>;
type FuzzRequest = typeof fuzzRequest extends fc.Arbitrary<infer R> ? R : never;

// ---- checks -------------------------------------------------------------------------------------

const failures: string[] = [];
const statuses = new Map<number, number>();
const codes = new Map<string, number>();
function check(req: FuzzRequest, status: number, headers: Record<string, unknown>, text: string): void {
  statuses.set(status, (statuses.get(status) ?? 0) + 1);
  const where = `${req.method} ${req.url.slice(0, 120)} [${req.contentType}] ${String(req.body).slice(0, 160)}`;
  if (status >= 500) failures.push(`${status} for ${where}: ${text.slice(0, 300)}`);
  if (status >= 400 && req.method !== 'HEAD') {
    let code: unknown;
    try {
      code = JSON.parse(text).error?.code;
    } catch {
      code = undefined;
    }
    if (typeof code !== 'string' || !/json/.test(String(headers['content-type'])))
      failures.push(`${status} without a JSON error code for ${where}: ${text.slice(0, 200)}`);
    else codes.set(code, (codes.get(code) ?? 0) + 1);
  }
}

async function stillServes(t: Test, via: (payload: object) => Promise<{ status: number; body: any }>) {
  const res = await via({ prompt: 'Hello there', max_tokens: 4, temperature: 0, ignore_eos: true });
  t.equal(res.status, 200, 'a normal request is still served');
  t.equal(res.body.usage?.completion_tokens, 4);
  t.same(Object.getOwnPropertyNames(Object.prototype).sort(), prototypeKeys, 'Object.prototype has no new properties');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'nothing polluted');
  t.equal(engine.scheduler.batchSize, 0, 'no batch row left behind');
  t.equal(engine.scheduler.queueDepth, 0, 'nothing left in the queue');
}

t.test(`${RUNS} hostile requests through app.inject()`, async (t) => {
  let n = 0;
  let unsendable = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(fuzzRequest, { minLength: 1, maxLength: 6 }), async (batch) => {
      // A few at a time, so that valid ones share batches and invalid ones interleave with them.
      await Promise.all(
        batch.map(async (req) => {
          n++;
          let res;
          try {
            res = await app.inject({
              method: req.method as 'POST',
              url: req.url,
              headers: { ...req.headers, ...(req.contentType !== undefined ? { 'content-type': req.contentType } : {}) },
              ...(req.body !== undefined && req.method !== 'GET' && req.method !== 'HEAD' ? { payload: req.body } : {}),
            });
          } catch (e) {
            // light-my-request itself refuses some URLs before anything reaches the server.
            if ((e as Error).stack?.includes('light-my-request/lib/parse-url')) {
              unsendable++;
              return;
            }
            throw e;
          }
          check(req, res.statusCode, res.headers, res.body);
        }),
      );
    }),
    { numRuns: Math.ceil(RUNS / 3.5), seed: SEED, endOnFailure: true },
  );
  t.comment(`${n} requests (${unsendable} refused by light-my-request's URL parser); statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  t.comment(`error codes ${JSON.stringify(Object.fromEntries([...codes].sort((a, b) => b[1] - a[1])))}`);
  t.ok(n - unsendable >= RUNS * 0.9, `${n - unsendable} requests reached the server`);
  t.same(failures.slice(0, 20), [], 'every answer is < 500 and every error has a JSON code');
  t.ok((statuses.get(200) ?? 0) > 20, 'some requests were valid and generated (the fuzz reaches the engine)');
  await stillServes(t, async (payload) => {
    const r = await app.inject({ method: 'POST', url: '/v1/generate', payload });
    return { status: r.statusCode, body: r.json() };
  });
});

function send(base: string, req: FuzzRequest): Promise<{ status: number; headers: Record<string, unknown>; text: string } | { error: string }> {
  return new Promise((resolve) => {
    const { hostname, port } = new URL(base);
    const payload = req.body !== undefined && req.method !== 'GET' && req.method !== 'HEAD' ? Buffer.from(req.body, 'utf8') : undefined;
    let r: ReturnType<typeof httpRequest>;
    try {
      // The path is sent as is (a URL object would resolve "//x" to another host).
      r = httpRequest(
        {
          host: hostname,
          port,
          path: req.url,
          method: req.method,
          agent: false,
          timeout: 10_000,
          headers: {
            ...req.headers,
            ...(req.contentType !== undefined ? { 'content-type': req.contentType } : {}),
            ...(payload ? { 'content-length': String(payload.length) } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
          res.on('error', (e) => resolve({ error: e.message }));
        },
      );
    } catch (e) {
      resolve({ error: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
      return;
    }
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    r.end(payload);
  });
}

/** Writes raw bytes and reads whatever comes back until the server closes (or 3 s). */
function rawExchange(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => socket.destroy(), 3000);
    socket.on('data', (c) => (text += c.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.on('error', () => undefined);
    socket.end(bytes);
  });
}

t.test('a shorter run against the listening server, and raw protocol garbage', async (t) => {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;
  failures.length = 0;
  statuses.clear();
  let transport = 0;
  const samples = fc.sample(fuzzRequest, { numRuns: 400, seed: SEED + 1 });
  for (let i = 0; i < samples.length; i += 8) {
    await Promise.all(
      samples.slice(i, i + 8).map(async (req) => {
        const res = await send(base, req);
        if ('error' in res) {
          transport++;
          // Node's client refuses some header values itself (e.g. invalid characters): not a server answer.
          if (!/ERR_INVALID|ERR_UNESCAPED|Invalid URL|ERR_HTTP_INVALID/.test(res.error))
            failures.push(`transport error ${res.error} for ${req.method} ${req.url.slice(0, 80)}`);
        } else check(req, res.status, res.headers, res.text);
      }),
    );
  }
  t.comment(
    `${samples.length} requests over HTTP (${transport} refused by the client library); statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`,
  );
  t.same(failures.slice(0, 20), [], 'every answer is < 500 with a JSON error code');

  const garbage: Array<string | Buffer> = [
    'GARBAGE\r\n\r\n',
    'GET / HTTP/9.9\r\n\r\n',
    'POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
    'POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
    'POST /v1/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n',
    'POST /v1/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n',
    `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n',
    'GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\u0000b\r\n\r\n',
    `GET /${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]), // a TLS ClientHello
    Buffer.alloc(1024, 0xff),
  ];
  for (const bytes of garbage) {
    const answer = await rawExchange(port, bytes);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
    const label = JSON.stringify(bytes.toString().slice(0, 60));
    if (answer === '') t.pass(`${label}: connection closed without an answer`);
    else {
      t.ok(status >= 400 && status < 500, `${label}: answered ${status}`);
      t.match(answer, /"error":\{"code":"[a-z_]+"/, `${label}: a JSON error code`);
    }
  }
  await stillServes(t, async (payload) => {
    const res = await send(base, { method: 'POST', url: '/v1/generate', contentType: 'application/json', body: JSON.stringify(payload), headers: {} });
    if ('error' in res) return { status: 0, body: {} };
    return { status: res.status, body: JSON.parse(res.text) };
  });
});
