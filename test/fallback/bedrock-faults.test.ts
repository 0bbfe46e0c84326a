/** Faults through the real SDK against the loopback fake: error mapping, retries, timeouts, aborts. */
import t from 'tap';
import { AppError } from '../../src/errors.js';
import type { BedrockErrorType, StreamExceptionType } from '../helpers/fake-bedrock.js';
import { LLAMA_ARN, collect, request, startHarness, tokenTexts } from './harness.js';
import { waitFor } from '../helpers/wait.js';

const NO_RETRY = {
  once: { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', maxRetries: 0 },
  onceChat: { modelId: 'meta.llama3-8b-instruct-v1:0', family: 'converse', region: 'us-east-1', maxRetries: 0 },
};

const MODELED: Array<[BedrockErrorType, string, number]> = [
  ['ThrottlingException', 'upstream_throttled', 429],
  ['ServiceQuotaExceededException', 'upstream_throttled', 429],
  ['ModelNotReadyException', 'upstream_unavailable', 503],
  ['ServiceUnavailableException', 'upstream_unavailable', 503],
  ['ModelTimeoutException', 'upstream_timeout', 504],
  ['ValidationException', 'upstream_invalid_request', 400],
  ['AccessDeniedException', 'upstream_access_denied', 502],
  ['InternalServerException', 'upstream_error', 502],
  ['ResourceNotFoundException', 'upstream_error', 502],
  ['ModelErrorException', 'upstream_error', 502],
];

t.test('each modeled Bedrock error maps to our code and status', async (t) => {
  const { fake, fallback } = await startHarness(t, {
    extraTargets: NO_RETRY,
    circuitBreaker: { failureThreshold: 100, cooldownMs: 1_000 },
  });
  for (const [type, code, status] of MODELED) {
    fake.enqueue({ error: { type, message: `details of ${type}` } }, { error: { type, message: `details of ${type}` } });
    const error = await fallback.generate(request({ adapter: 'once' })).catch((e: unknown) => e);
    t.ok(error instanceof AppError, `${type}: an AppError`);
    t.match(error, { code, status }, `${type} -> ${code} ${status}`);
    t.match((error as AppError).message, 'The Bedrock target of adapter "once" failed');
    t.notMatch((error as AppError).message, 'arn:aws', 'the ARN stays out of client messages');

    const streamed = await collect(fallback.stream(request({ adapter: 'onceChat' })));
    t.same(streamed.events, [], `${type} before the stream: no events`);
    t.match(streamed.error, { code, status }, `${type} on ConverseStream -> ${code}`);
  }
  fake.enqueue({ error: { type: 'ValidationException', message: 'max_gen_len must be <= 2048' } });
  await t.rejects(fallback.generate(request({ adapter: 'once' })), { message: /max_gen_len must be <= 2048/ }, 'validation details are passed on');
  fake.enqueue({ error: { type: 'AccessDeniedException', message: 'User: arn:aws:sts::123456789012:assumed-role/x is not authorized' } });
  const denied = await fallback.generate(request({ adapter: 'once' })).then(
    () => null,
    (e: AppError) => e,
  );
  t.notMatch(denied?.message, 'assumed-role', 'IAM details stay in the server log');
  t.match(fallback.counters().byAdapter.once.errors, { upstream_throttled: 2, upstream_error: 3, upstream_access_denied: 2 });
});

t.test('an unmodeled 5xx error is an upstream_error and is retried', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.enqueue({
    raw: { status: 500, headers: { 'x-amzn-errortype': 'BrandNewException', 'content-type': 'application/json' }, body: '{"message":"new"}' },
  });
  const result = await fallback.generate(request());
  t.equal(result.finishReason, 'stop');
  t.equal(fake.requests.length, 2);
});

t.test('a body that is not the family shape is an upstream_error, not retried', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.enqueue({ raw: { status: 200, headers: { 'content-type': 'application/json' }, body: '{"unexpected":true}' } });
  await t.rejects(fallback.generate(request()), { code: 'upstream_error', message: /MalformedResponseError/ });
  t.equal(fake.requests.length, 1);
});

const STREAM_EXCEPTIONS: Array<[StreamExceptionType, string]> = [
  ['modelStreamErrorException', 'upstream_error'],
  ['internalServerException', 'upstream_error'],
  ['throttlingException', 'upstream_throttled'],
  ['validationException', 'upstream_invalid_request'],
  ['modelTimeoutException', 'upstream_timeout'],
  ['serviceUnavailableException', 'upstream_unavailable'],
];

t.test('mid-stream exception events surface after the tokens already delivered, never retried', async (t) => {
  const { fake, fallback } = await startHarness(t, { circuitBreaker: { failureThreshold: 100, cooldownMs: 1_000 } });
  for (const adapter of ['sales', 'chat']) {
    for (const [type, code] of STREAM_EXCEPTIONS) {
      if (adapter === 'chat' && type === 'modelTimeoutException') continue; // not in ConverseStream's union
      fake.requests.length = 0;
      fake.enqueue({ exceptionAfterChunks: { after: 2, type } });
      const { events, error } = await collect(fallback.stream(request({ adapter })));
      t.same(tokenTexts(events), ['Hello', ' from'], `${adapter}/${type}: tokens first`);
      t.equal(events.length, 2, 'no finish event');
      t.match(error, { code }, `${adapter}/${type} -> ${code}`);
      t.equal(fake.requests.length, 1, 'not retried after tokens were delivered');
    }
  }
});

t.test('an exception event before any token is retried when retryable', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.enqueue({ exceptionAfterChunks: { after: 0, type: 'throttlingException' } });
  const { events, error } = await collect(fallback.stream(request({ adapter: 'support' })));
  t.error(error);
  t.equal(events.at(-1)?.type, 'finish');
  t.equal(fake.requests.length, 2);
});

t.test('retries throttling with backoff and jitter, then succeeds', async (t) => {
  const { fake, fallback } = await startHarness(t, { fallback: { backoff: { baseMs: 40, capMs: 1_000, random: () => 0.999 } } });
  fake.enqueue({ error: { type: 'ThrottlingException' } }, { error: { type: 'ThrottlingException' } });
  const result = await fallback.generate(request());
  t.equal(result.text, 'Hello from the fake Bedrock.');
  t.equal(fake.requests.length, 3);
  const [a, b, c] = fake.requests.map((r) => r.receivedAt);
  t.ok(b - a >= 35, `first backoff ~40 ms (${(b - a).toFixed(1)})`);
  t.ok(c - b >= 75, `second backoff ~80 ms (${(c - b).toFixed(1)})`);
  t.match(fallback.counters().byAdapter.sales, { calls: 1, attempts: 3, retries: 2, successes: 1, errors: {} });
});

t.test('gives up after maxRetries', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.setDefault({ error: { type: 'ThrottlingException' } });
  await t.rejects(fallback.generate(request()), { code: 'upstream_throttled', status: 429, retryAfter: 1 });
  t.equal(fake.requests.length, 3, 'first attempt + 2 retries');
});

t.test('non-retryable faults are sent once', async (t) => {
  const { fake, fallback } = await startHarness(t);
  for (const type of ['ValidationException', 'AccessDeniedException', 'ModelTimeoutException'] as const) {
    fake.requests.length = 0;
    fake.enqueue({ error: { type } });
    await t.rejects(fallback.generate(request()));
    t.equal(fake.requests.length, 1, `${type} not retried`);
  }
});

t.test('stream: a dropped connection after tokens is an error, not a retry', async (t) => {
  const { fake, fallback } = await startHarness(t);
  for (const adapter of ['sales', 'chat']) {
    fake.requests.length = 0;
    fake.enqueue({ dropAfterChunks: 2 });
    const { events, error } = await collect(fallback.stream(request({ adapter })));
    t.same(tokenTexts(events), ['Hello', ' from'], `${adapter}: delivered tokens kept`);
    t.equal(events.length, 2);
    t.match(error, { code: 'upstream_unavailable', status: 503 }, `${adapter}: dropped connection`);
    t.equal(fake.requests.length, 1);
  }
});

t.test('stream: a connection dropped before any token is retried', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.enqueue({ dropAfterChunks: 0 });
  const { events, error } = await collect(fallback.stream(request({ adapter: 'sales' })));
  t.error(error);
  t.same(tokenTexts(events), ['Hello', ' from', ' the', ' fake', ' Bedrock.']);
  t.equal(fake.requests.length, 2);
});

t.test('stream: a stream that ends without the final event is an error', async (t) => {
  const { fake, fallback } = await startHarness(t, { extraTargets: NO_RETRY });
  fake.enqueue({ truncateAfterChunks: 2 });
  const { events, error } = await collect(fallback.stream(request({ adapter: 'onceChat' })));
  t.same(tokenTexts(events), ['Hello', ' from']);
  t.match(error, { code: 'upstream_error', message: /stream ended before the model finished/ });
});

t.test('per-target timeout: no answer in time -> upstream_timeout, connection dropped', async (t) => {
  const { fake, fallback } = await startHarness(t, {
    extraTargets: { slow: { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', timeoutMs: 150 } },
  });
  fake.setDefault({ delayMs: 5_000 });
  const started = performance.now();
  await t.rejects(fallback.generate(request({ adapter: 'slow' })), { code: 'upstream_timeout', status: 504 });
  const elapsed = performance.now() - started;
  // Not before the timeout (a timer never fires early), and before the fake answered: the client closed the
  // request while the fake still held its answer (ordering, not a bound on the elapsed time).
  t.ok(elapsed >= 140, `gave up after the 150 ms timeout (${elapsed.toFixed(0)} ms)`);
  await waitFor(() => fake.requests[0]?.closedByClient === true, 30_000);
  t.ok(fake.requests[0]?.closedByClient, 'the client closed the request before the 5 s answer was sent');
  t.equal(fake.requests.length, 1, 'a timeout is not retried');

  const streamed = await collect(fallback.stream(request({ adapter: 'slow' })));
  t.match(streamed.error, { code: 'upstream_timeout' });
  await waitFor(() => fake.requests.every((r) => r.closedByClient), 1_000);
  t.ok(
    fake.requests.every((r) => r.closedByClient),
    'the upstream requests were abandoned',
  );
});

t.test('per-target timeout also bounds the gap between stream events', async (t) => {
  const { fake, fallback } = await startHarness(t, {
    extraTargets: { slow: { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', timeoutMs: 150 } },
  });
  // Stalled for 5 s after two chunks: the timeout (150 ms) ends it with those two, not the stall's end with all five.
  fake.enqueue({ stallAfterChunks: { after: 2, ms: 5_000 } });
  const { events, error } = await collect(fallback.stream(request({ adapter: 'slow' })));
  t.same(tokenTexts(events), ['Hello', ' from']);
  t.match(error, { code: 'upstream_timeout' });
  await waitFor(() => fake.requests[0].closedByClient, 1_000);
  t.ok(fake.requests[0].closedByClient);
  t.equal(fake.requests.length, 1);
});

t.test('the caller signal aborts a call and says nothing about the target', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.setDefault({ delayMs: 5_000 });
  const controller = new AbortController();
  const reason = new Error('client went away');
  setTimeout(() => controller.abort(reason), 50);
  await t.rejects(fallback.generate(request({ signal: controller.signal })), reason);
  await t.rejects(fallback.generate(request({ signal: controller.signal })), reason, 'already aborted');

  fake.setDefault({ stallAfterChunks: { after: 1, ms: 5_000 } });
  const midStream = new AbortController();
  const events: string[] = [];
  const error = await (async () => {
    try {
      for await (const event of fallback.stream(request({ signal: midStream.signal }))) {
        if (event.type === 'token') events.push(event.text);
        midStream.abort(reason);
      }
    } catch (e) {
      return e;
    }
  })();
  t.equal(error, reason);
  t.same(events, ['Hello']);
  t.match(
    fallback.status().find((s) => s.adapter === 'sales'),
    { circuit: 'closed', consecutiveFailures: 0 },
  );
  t.same(fallback.counters().byAdapter.sales.errors, {}, 'aborts are not upstream errors');
  await waitFor(() => fake.requests.every((r) => r.closedByClient), 1_000);
  t.ok(
    fake.requests.every((r) => r.closedByClient),
    'upstream connections closed',
  );
});

t.test('a consumer that stops reading releases the upstream stream', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.setDefault({ chunkDelayMs: 30 });
  for await (const event of fallback.stream(request())) {
    t.equal(event.type, 'token');
    break;
  }
  await waitFor(() => fake.requests[0].closedByClient, 1_000);
  t.ok(fake.requests[0].closedByClient);
});

t.test('no credentials from the provider chain -> upstream_access_denied', async (t) => {
  const { BedrockRuntimeClient } = await import('@aws-sdk/client-bedrock-runtime');
  const { fake, fallback } = await startHarness(t, {
    fallback: {
      clientFactory: (config) =>
        new BedrockRuntimeClient({
          ...config,
          credentials: async () => {
            throw Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
          },
        }),
    },
  });
  await t.rejects(fallback.generate(request()), { code: 'upstream_access_denied' });
  t.equal(fake.requests.length, 0);
});

t.test('requests Bedrock cannot serve are refused before any call', async (t) => {
  const { fake, fallback } = await startHarness(t);
  await t.rejects(fallback.generate(request({ logprobs: true })), { code: 'invalid_request', message: /logprobs/ });
  await t.rejects(fallback.generate(request({ promptTokenIds: [1, 2, 3] })), { code: 'invalid_request', message: /token ids/ });
  await t.rejects(fallback.generate(request({ adapter: 'nope' })), { code: 'adapter_not_found' });
  await t.rejects(fallback.generate(request({ adapter: null })), { code: 'invalid_request', message: /base model/ });
  const streamed = await collect(fallback.stream(request({ adapter: 'nope' })));
  t.match(streamed.error, { code: 'adapter_not_found' });
  t.equal(fake.requests.length, 0);
  t.equal(fallback.hasTarget('sales'), true);
  t.equal(fallback.hasTarget('nope'), false);
  t.equal(fallback.hasTarget(null), false);
});

t.test('failures are logged with the upstream details; no secrets, no prompts', async (t) => {
  const { pino } = await import('pino');
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
  const { fake, fallback } = await startHarness(t, { fallback: { logger } });
  fake.enqueue({ error: { type: 'ThrottlingException', message: 'Too many requests' } });
  await fallback.generate(request({ prompt: 'confidential prompt text' }));
  fake.setDefault({ error: { type: 'AccessDeniedException', message: 'not authorized to perform bedrock:InvokeModel' } });
  await fallback.generate(request({ prompt: 'confidential prompt text' })).catch(() => {});
  const records = lines.map((l) => JSON.parse(l));
  t.match(records[0], {
    level: 40,
    component: 'bedrock-fallback',
    adapter: 'sales',
    modelId: LLAMA_ARN,
    code: 'upstream_throttled',
    attempt: 0,
    upstream: { name: 'ThrottlingException', message: 'Too many requests', httpStatus: 429, requestId: /^0000/ },
    msg: 'Bedrock call failed; retrying',
  });
  t.match(records.at(-1), {
    code: 'upstream_access_denied',
    upstream: { name: 'AccessDeniedException', message: /bedrock:InvokeModel/ },
    msg: 'Bedrock call failed',
  });
  const all = lines.join('\n');
  t.notMatch(all, 'confidential prompt text');
  t.notMatch(all, 'loopback-test-secret');
});

t.test('a retried stream does not inherit text held back by the failed attempt', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.setDefault({ text: 'ab cd' });
  fake.enqueue({ text: 'ab cd', exceptionAfterChunks: { after: 1, type: 'throttlingException' } });
  const { events, error } = await collect(fallback.stream(request({ stop: ['ab X'] })));
  t.error(error);
  t.same(tokenTexts(events), ['ab cd']);
  t.equal(fake.requests.length, 2, 'retried: no token had reached the caller');
});

t.test('a slow consumer does not trip the per-target timeout', async (t) => {
  const { fallback } = await startHarness(t, {
    extraTargets: { quick: { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', timeoutMs: 100 } },
  });
  const texts: string[] = [];
  for await (const event of fallback.stream(request({ adapter: 'quick' }))) {
    if (event.type === 'token') texts.push(event.text);
    await new Promise((r) => setTimeout(r, 150));
  }
  t.same(texts, ['Hello', ' from', ' the', ' fake', ' Bedrock.'], '150 ms between reads, timeout 100 ms');
});
