/** /metrics after real traffic through app.inject(). */
import t from 'tap';
import { loadFixtureEngine } from '../helpers/engine.js';
import { buildTestApp } from '../helpers/app.js';

const engine = await loadFixtureEngine();
const app = await buildTestApp(engine);
t.teardown(async () => {
  await app.close();
  await engine.close();
});

t.test('metrics reflect requests, tokens, latency and the adapter cache', async (t) => {
  const gen = (adapter: string | null, extra = {}) =>
    app.inject({
      method: 'POST',
      url: `/v1/generate${adapter ? `?adapter=${adapter}` : ''}`,
      payload: { prompt: 'Hello there', max_tokens: 5, temperature: 0, ignore_eos: true, ...extra },
    });
  const first = await gen('support');
  await gen('support', { stream: true });
  await gen(null);
  await gen('sales');
  await gen('made-up-adapter-name');
  const res = await app.inject({ url: '/metrics' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /text\/plain/);
  const text = res.body;
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1]);
  t.equal(value(/lora_requests_total\{route="\/v1\/generate",adapter="support",status="200"\} (\d+)/), 2, 'two support requests');
  t.equal(
    value(/lora_requests_total\{route="\/v1\/generate",adapter="other",status="404"\} (\d+)/),
    1,
    'an unknown adapter name never becomes a label (it counts as other)',
  );
  t.notMatch(text, /made-up-adapter-name/);
  t.equal(value(/lora_generated_tokens_total\{adapter="support"\} (\d+)/), 10);
  t.equal(value(/lora_generated_tokens_total\{adapter="base"\} (\d+)/), 5);
  t.equal(value(/lora_time_to_first_token_seconds_count\{adapter="sales"\} (\d+)/), 1);
  t.equal(value(/lora_inter_token_latency_seconds_count\{adapter="support"\} (\d+)/), 8, '4 gaps per 5-token request');
  // One request at a time: each is one prompt step (which gives its first token) and four decode steps.
  t.equal(value(/lora_engine_step_seconds_count\{kind="prefill"\} (\d+)/), 4, 'a prompt step per request');
  t.equal(value(/lora_engine_step_seconds_count\{kind="decode"\} (\d+)/), 16, 'four decode steps per request');
  t.notMatch(text, /lora_engine_step_seconds_count\{kind="mixed"\}/, 'nothing ran side by side');
  t.equal(value(/lora_engine_step_tokens_sum\{kind="decode"\} (\d+)/), 16, 'a decode step of one row runs one token');
  t.equal(value(/lora_engine_step_tokens_sum\{kind="prefill"\} (\d+)/), 4 * first.json().usage.prompt_tokens, 'prompt steps run every prompt token once');
  t.ok(value(/lora_adapter_cache_events\{event="deviceMisses"\} (\d+)/) >= 2, 'device misses counted');
  t.ok(value(/lora_adapter_cache_events\{event="loads"\} (\d+)/) >= 3, 'loads counted');
  t.equal(value(/lora_adapters\{status="device"\} (\d+)/), 2);
  t.match(text, /lora_queue_depth 0/);
  t.match(text, /lora_batch_size 0/);
  t.match(text, /lora_process_resident_memory_bytes/);
  t.match(text, /lora_request_duration_seconds_bucket\{le="0.005",route="\/v1\/generate"/);
});
