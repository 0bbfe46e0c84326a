/**
 * The Bedrock route through our HTTP API: a real listening server, the real fixture engine, the real AWS SDK
 * client pointed at the loopback fake Bedrock (test/helpers/fake-bedrock.ts). The one injected fault is the
 * "local engine failure" case, where the fixture engine's prefill is replaced by one that throws: a real
 * engine failure cannot be provoked on demand.
 */
import t from 'tap';
import type { AddressInfo } from 'node:net';
import { buildApp } from '../../src/app.js';
import { LLAMA_ARN, TITAN_ARN, startHarness } from '../fallback/harness.js';
import { failPrefillUntilTeardown, loadFixtureEngine } from '../helpers/engine.js';
import { clientFor, testConfig } from '../helpers/app.js';

const harness = await startHarness(t, {
  extraTargets: {
    'bo-llama': { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', timeoutMs: 2_000, maxRetries: 2 },
    'bo-titan': { modelId: TITAN_ARN, family: 'titan', region: 'us-east-1', timeoutMs: 2_000, maxRetries: 2 },
  },
  circuitBreaker: { failureThreshold: 3, cooldownMs: 10_000 },
});
const { fake, fallback, clock } = harness;
const engine = await loadFixtureEngine({ maxBatch: 1, maxQueue: 1 });
const app = await buildApp({ config: testConfig(), engine: clientFor(engine), bedrock: fallback });
await app.listen({ port: 0, host: '127.0.0.1' });
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
t.teardown(async () => {
  await app.close();
  await engine.close();
});

const generate = (query: string, body: Record<string, unknown>) =>
  fetch(`${base}/v1/generate?${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Say hello to the team', max_tokens: 20, ...body }),
  });

async function sse(res: Response): Promise<{ data: Array<Record<string, unknown>>; errors: Array<{ error: { code: string } }>; done: boolean }> {
  const text = await res.text();
  const blocks = text.split('\n\n').filter(Boolean);
  const data: Array<Record<string, unknown>> = [];
  const errors: Array<{ error: { code: string } }> = [];
  let done = false;
  for (const b of blocks) {
    const line = b.split('\n').find((l) => l.startsWith('data: '));
    if (line === undefined) throw new Error(`not an SSE block: ${JSON.stringify(b)} in ${JSON.stringify(text)}`);
    const payload = line.slice(6);
    if (payload === '[DONE]') done = true;
    else if (b.startsWith('event: error')) errors.push(JSON.parse(payload));
    else data.push(JSON.parse(payload));
  }
  return { data, errors, done };
}

t.beforeEach(() => {
  fake.reset();
  clock.now += 60_000; // every test starts with closed circuits
});

t.test('Bedrock-only adapters, each family, streaming and not', async (t) => {
  for (const adapter of ['bo-llama', 'bo-titan', 'chat']) {
    fake.enqueue({ text: 'Hello team, welcome aboard' });
    const res = await generate(`adapter=${adapter}`, {});
    t.equal(res.status, 200, adapter);
    t.equal(res.headers.get('x-inference-route'), 'bedrock');
    const body = await res.json();
    t.equal(body.route, 'bedrock');
    t.equal(body.text, 'Hello team, welcome aboard', `${adapter}: text`);
    t.ok(body.usage.completion_tokens > 0, `${adapter}: usage`);

    fake.enqueue({ text: 'Hello team, welcome aboard' });
    const stream = await sse(await generate(`adapter=${adapter}`, { stream: true }));
    t.equal(stream.data.map((d) => d.text ?? '').join(''), 'Hello team, welcome aboard', `${adapter}: streamed text`);
    t.equal(stream.data.at(-1)!.route, 'bedrock');
    t.ok(stream.done);
  }
  t.match(
    fake.requests.map((r) => r.path),
    [/invoke/, /invoke-with-response-stream/, /invoke/, /invoke-with-response-stream/, /converse/, /converse-stream/],
  );
});

t.test('a full local queue overflows to Bedrock for an adapter with a target, 429 otherwise', async (t) => {
  // maxBatch 1, maxQueue 1: one running, one waiting, the third overflows.
  const hold = [generate('adapter=sales', { max_tokens: 230, ignore_eos: true }), generate('adapter=sales', { max_tokens: 230, ignore_eos: true })];
  while (engine.scheduler.batchSize < 1 || engine.scheduler.queueDepth < 1) await new Promise((r) => setTimeout(r, 1));
  fake.enqueue({ text: 'from bedrock' });
  const overflow = await generate('adapter=sales', {});
  t.equal((await overflow.json()).route, 'bedrock');
  const noTarget = await generate('adapter=code', {});
  t.equal(noTarget.status, 429, 'code has no Bedrock target: queue_full');
  t.equal((await noTarget.json()).error.code, 'queue_full');
  t.ok(noTarget.headers.get('retry-after'));
  const base = await generate('', {});
  t.equal(base.status, 429, 'the base model never goes to Bedrock');
  const local = await generate('adapter=sales&route=local', {});
  t.equal(local.status, 429, 'route=local never reaches Bedrock');
  for (const r of await Promise.all(hold)) t.equal((await r.json()).route, 'local');
  t.equal(fake.requests.length, 1, 'only the overflow reached Bedrock');
});

t.test('a local engine failure before the first token goes to Bedrock (injected fault)', async (t) => {
  failPrefillUntilTeardown(t, engine);
  fake.enqueue({ text: 'rescued' }, { text: 'rescued stream' });
  const res = await generate('adapter=support', {});
  t.same([res.status, (await res.json()).text], [200, 'rescued']);
  const stream = await sse(await generate('adapter=support', { stream: true }));
  t.equal(stream.data.at(-1)!.route, 'bedrock');
  const noTarget = await generate('adapter=code', {});
  t.equal(noTarget.status, 500, "without a target the failure is the client's answer");
  t.equal((await noTarget.json()).error.code, 'internal_error');
});

t.test('each Bedrock error has its documented status and code', async (t) => {
  const table: Array<[string, number, string]> = [
    ['ThrottlingException', 429, 'upstream_throttled'],
    ['ModelNotReadyException', 503, 'upstream_unavailable'],
    ['ServiceUnavailableException', 503, 'upstream_unavailable'],
    ['ModelTimeoutException', 504, 'upstream_timeout'],
    ['ValidationException', 400, 'upstream_invalid_request'],
    ['AccessDeniedException', 502, 'upstream_access_denied'],
  ];
  for (const [type, status, code] of table) {
    clock.now += 60_000;
    fake.reset();
    fake.setDefault({ error: { type: type as never } });
    const res = await generate('adapter=chat', {});
    t.equal(res.status, status, type);
    t.equal((await res.json()).error.code, code, type);
  }
  fake.setDefault({});
});

t.test('throttling is retried, then succeeds', async (t) => {
  fake.enqueue({ error: { type: 'ThrottlingException' } }, { error: { type: 'ThrottlingException' } }, { text: 'third time lucky' });
  const res = await generate('adapter=bo-titan', {});
  t.equal((await res.json()).text, 'third time lucky');
  t.equal(fake.requests.length, 3);
});

t.test('a stream broken mid-way ends with an error event, not a hang', async (t) => {
  fake.enqueue({ text: 'one two three four five six', dropAfterChunks: 2 });
  const stream = await sse(await generate('adapter=bo-llama', { stream: true }));
  t.ok(stream.data.length >= 1, 'the tokens before the break arrived');
  t.equal(stream.errors.length, 1);
  t.equal(stream.errors[0].error.code, 'upstream_unavailable');
  t.ok(stream.done, 'the stream is terminated');
  fake.enqueue({ text: 'one two three four', exceptionAfterChunks: { after: 1, type: 'modelStreamErrorException' } });
  const withException = await sse(await generate('adapter=bo-llama', { stream: true }));
  t.equal(withException.errors.length, 1, 'a mid-stream exception frame too');
});

t.test('the circuit opens after repeated failures, shows in /readyz, and closes after its cool-down', async (t) => {
  fake.setDefault({ error: { type: 'ServiceUnavailableException' } });
  for (let i = 0; i < 3; i++) await generate('adapter=bo-llama&route=bedrock', {});
  const calls = fake.requests.length;
  const refused = await generate('adapter=bo-llama', {});
  t.equal(refused.status, 503);
  t.equal(fake.requests.length, calls, 'an open circuit does not call Bedrock');
  const ready = await (await fetch(`${base}/readyz`)).json();
  t.equal(ready.bedrock.find((b: { adapter: string }) => b.adapter === 'bo-llama').circuit, 'open');
  t.notMatch(JSON.stringify(ready), /arn:aws/, 'no model ARN in /readyz');
  fake.setDefault({ text: 'back again' });
  clock.now += 10_001;
  const after = await generate('adapter=bo-llama', {});
  t.equal((await after.json()).text, 'back again', 'a probe after the cool-down closes it');
  const readyAgain = await (await fetch(`${base}/readyz`)).json();
  t.equal(readyAgain.bedrock.find((b: { adapter: string }) => b.adapter === 'bo-llama').circuit, 'closed');
});

t.test('route rules', async (t) => {
  const local = await generate('adapter=chat&route=local', {});
  t.equal(local.status, 400, 'route=local for a Bedrock-only adapter');
  const noTarget = await generate('adapter=code&route=bedrock', {});
  t.equal(noTarget.status, 400, 'route=bedrock for an adapter without a target');
  const bad = await generate('adapter=code&route=sideways', {});
  t.equal((await bad.json()).error.code, 'invalid_request');
  const logprobs = await generate('adapter=chat', { logprobs: true });
  t.equal(logprobs.status, 400, 'Bedrock cannot return logprobs');
  t.equal(fake.requests.length, 0, 'none of these reached Bedrock');
  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.match(metrics, /lora_bedrock_calls\{adapter="bo-llama"\}/);
});
