/**
 * Limits on the fixture engine through app.inject(): load shedding (injected probes, and a real
 * event-loop stall), limits.maxPromptTokens, the body size, stop sequences and max_tokens, and the drain
 * gate (503 shutting_down).
 */
import t from 'tap';
import { loadFixtureEngine } from '../helpers/engine.js';
import { buildTestApp } from '../helpers/app.js';
import type { LoadSample } from '../../src/security/load-shed.js';

const engine = await loadFixtureEngine();
const app = await buildTestApp(engine, (c) => {
  c.limits.maxPromptTokens = 16;
  c.limits.shedRssMb = 1 << 20; // 1 TiB: on, but never reached by the real process
  c.server.bodyLimitBytes = 64 * 1024;
});
t.teardown(async () => {
  await app.close();
  await engine.close();
});

const gen = (payload: object, url = '/v1/generate') => app.inject({ method: 'POST', url, payload });
const MiB = 2 ** 20;
const calm: LoadSample = { eventLoopDelayMs: 0, heapUsedBytes: 100 * MiB, heapLimitBytes: 4096 * MiB, rssBytes: 300 * MiB };
const shedder = app.security.shedder;
const realProbe = shedder.probe;

t.test('load shedding: 503 overloaded with Retry-After while a threshold is exceeded; probes stay answered', async (t) => {
  // Driven by hand: the sampling timer is stopped so that only these samples count.
  shedder.stop();
  shedder.smoothedDelayMs = 0;
  shedder.probe = () => calm;
  t.equal(shedder.update(), null);
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2 })).statusCode, 200, 'calm: served');

  shedder.probe = () => ({ ...calm, eventLoopDelayMs: 5000 });
  t.match(shedder.update(), /event-loop delay 2500 ms is above 1000 ms/, 'smoothed: one bad interval counts half');
  const res = await gen({ prompt: 'Hi', max_tokens: 2 });
  t.equal(res.statusCode, 503);
  t.equal(res.json().error.code, 'overloaded');
  t.match(res.json().error.message, /event-loop delay/);
  t.equal(res.headers['retry-after'], '2');
  for (const url of ['/healthz', '/readyz', '/metrics']) t.equal((await app.inject({ url })).statusCode, 200, `${url} is exempt`);
  t.equal(
    (await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: 'support', messages: [{ role: 'user', content: 'Hi' }] } })).statusCode,
    503,
    'OpenAI routes are shed too',
  );
  t.equal((await app.inject({ url: '/v1/adapters' })).statusCode, 503, 'and the adapter API');
  t.match((await app.inject({ url: '/metrics' })).body, /lora_load_shedding 1/);
  t.match((await app.inject({ url: '/metrics' })).body, /lora_rejected_requests_total\{reason="overloaded"\} [1-9]/);

  shedder.probe = () => calm;
  t.match(shedder.update(), /event-loop delay 1250 ms/, 'still above while the average decays');
  t.equal(shedder.update(), null, 'recovered');
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2 })).statusCode, 200, 'served again');

  shedder.probe = () => ({ ...calm, heapUsedBytes: 3900 * MiB });
  t.match(shedder.update(), /heap use 95% is above 90%/);
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2 })).statusCode, 503);
  shedder.probe = () => ({ ...calm, rssBytes: 2 ** 41 });
  t.match(shedder.update(), /resident memory 2097152 MiB is above 1048576 MiB/);
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2 })).statusCode, 503);
  shedder.probe = () => calm;
  t.equal(shedder.update(), null);
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2 })).statusCode, 200);
});

t.test('load shedding from a real event-loop stall, measured by monitorEventLoopDelay', async (t) => {
  shedder.probe = realProbe;
  shedder.smoothedDelayMs = 0;
  shedder.reason = null;
  shedder.start();
  await new Promise((r) => setTimeout(r, 200)); // the monitor needs a tick before it measures
  // A request in flight through the stall (as the gate counts one): the delay counts only with traffic.
  const done = shedder.requestStarted();
  const until = Date.now() + 3000;
  while (Date.now() < until) {
    /* a 3 s stall, as a runaway synchronous task would cause */
  }
  // The first timer tick after the stall records it.
  for (let i = 0; i < 20 && !shedder.reason; i++) await new Promise((r) => setTimeout(r, 50));
  t.match(shedder.reason, /event-loop delay \d+ ms is above 1000 ms/, `shedding: ${shedder.reason}`);
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2 })).statusCode, 503);
  done();
  for (let i = 0; i < 100 && shedder.reason; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(shedder.reason, null, 'recovers once the loop is responsive again');
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2 })).statusCode, 200);
});

t.test('limits.maxPromptTokens', async (t) => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => 10 + i);
  t.equal((await gen({ prompt_token_ids: ids(16), max_tokens: 2 })).statusCode, 200, 'at the limit');
  const over = await gen({ prompt_token_ids: ids(17), max_tokens: 2 });
  t.equal(over.statusCode, 400);
  t.equal(over.json().error.code, 'context_length_exceeded');
  t.match(over.json().error.message, /17 tokens; this server accepts at most 16/);
  const text = await gen({ prompt: 'word '.repeat(40), max_tokens: 2 });
  t.equal(text.statusCode, 400, 'a text prompt is counted in tokens');
  t.match(text.json().error.message, /this server accepts at most 16/);
  t.equal((await gen({ prompt: 'Hello there', max_tokens: 2 })).statusCode, 200);
  const streamed = await gen({ prompt_token_ids: ids(40), max_tokens: 2, stream: true });
  t.equal(streamed.statusCode, 400, 'checked before a stream starts');
});

t.test('body size, max_tokens, stop sequences and context', async (t) => {
  const big = await app.inject({
    method: 'POST',
    url: '/v1/generate',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ prompt: 'x'.repeat(70_000) }),
  });
  t.equal(big.statusCode, 413);
  t.equal(big.json().error.code, 'payload_too_large');
  t.equal((await gen({ prompt: 'Hi', max_tokens: 1_000_000 })).json().error.code, 'invalid_request');
  t.equal(
    (await gen({ prompt_token_ids: [5, 6, 7, 8], max_tokens: 253 })).json().error.code,
    'context_length_exceeded',
    'prompt + max_tokens over the context',
  );
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2, stop: Array.from({ length: 9 }, (_, i) => `s${i}`) })).json().error.code, 'invalid_request');
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2, stop: 'x'.repeat(65) })).json().error.code, 'invalid_request');
  t.equal((await gen({ prompt: 'Hi', max_tokens: 2, stop: [''] })).json().error.code, 'invalid_request', 'empty stop strings');
});

t.test('while draining: 503 shutting_down with Connection: close; probes answered', async (t) => {
  app.engineState.draining = true;
  t.teardown(() => {
    app.engineState.draining = false;
  });
  const res = await gen({ prompt: 'Hi', max_tokens: 2 });
  t.equal(res.statusCode, 503);
  t.equal(res.json().error.code, 'shutting_down');
  t.equal(res.headers.connection, 'close');
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 503, 'readyz says draining');
  t.equal((await app.inject({ url: '/readyz' })).json().status, 'draining');
});
