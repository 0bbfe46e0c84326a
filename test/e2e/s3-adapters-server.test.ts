/**
 * End to end: the real server process, its engine in the worker thread, adapters from a loopback S3
 * (test/helpers/s3.ts) through the SDK's standard AWS_ENDPOINT_URL_S3. Listing, a just-in-time download that
 * gives the HF reference's tokens, the check interval picking up a changed object on its own, and the model
 * server protocol's series on /metrics.
 */
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL, reference } from '../helpers/engine.js';
import { startServer } from '../helpers/server-process.js';
import { startLoopbackS3 } from '../helpers/s3.js';

const s3 = await startLoopbackS3();
await s3.putAdapter('fleet/', 'remote-support', join(FIXTURE_ADAPTERS, 'support'));
const server = await startServer(
  [
    '--model',
    FIXTURE_MODEL,
    '--adapters',
    `s3://${s3.bucket}/fleet/`,
    '--adapter-cache-dir',
    mkdtempSync(join(tmpdir(), 'e2e-adapters-')),
    '--adapter-check-interval-s',
    '1',
    '--cache-dir',
    mkdtempSync(join(tmpdir(), 'e2e-cache-')),
  ],
  s3.env,
);
t.teardown(async () => {
  await server.stop();
  await s3.close();
});

const caseFor = (adapter: string) => reference.cases.filter((x) => x.adapter === adapter).at(-1)!;
async function greedy(adapter: string, c = caseFor('support')) {
  const res = await fetch(`${server.url}/v1/generate?adapter=${adapter}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt_token_ids: c.prompt_token_ids, max_tokens: 24, temperature: 0, ignore_eos: true }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

t.test('the bucket is listed; an adapter downloads on first use and gives the HF reference tokens of its files', async (t) => {
  const models = (await (await fetch(`${server.url}/v1/models`)).json()).data as Array<Record<string, unknown>>;
  t.match(
    models.find((m) => m.id === 'remote-support'),
    { parent: 'llama-tiny' },
  );
  const r = await greedy('remote-support');
  t.equal(r.status, 200, JSON.stringify(r.body));
  t.same(r.body.token_ids, caseFor('support').greedy_token_ids);
  const missing = await greedy('not-in-bucket');
  t.equal(missing.status, 404);
  t.equal(missing.body.error.code, 'adapter_not_found');
});

t.test('the check interval reloads a changed object by itself: new requests get the new weights', async (t) => {
  const adapters = async () => (await (await fetch(`${server.url}/v1/adapters`)).json()).data as Array<Record<string, any>>;
  const before = (await adapters()).find((a) => a.name === 'remote-support')!.version;
  t.type(before, 'string');
  await s3.putAdapter('fleet/', 'remote-support', join(FIXTURE_ADAPTERS, 'sales'));
  let after = before;
  for (let i = 0; i < 100 && after === before; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = (await adapters()).find((a) => a.name === 'remote-support')!.version;
  }
  t.not(after, before, 'a new version was loaded');
  const r = await greedy('remote-support', caseFor('sales'));
  t.same(r.body.token_ids, caseFor('sales').greedy_token_ids, 'the sales files now');
  t.ok(server.logs.join('').includes('adapter reloaded (changed)'), 'logged');
});

t.test('/metrics speaks the model server protocol', async (t) => {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  t.match(text, /^vllm:num_requests_waiting 0$/m);
  t.match(text, /^vllm:num_requests_running 0$/m);
  t.match(text, /^vllm:kv_cache_usage_perc 0$/m);
  t.match(text, /^vllm:lora_requests_info\{max_lora="8",running_lora_adapters="remote-support",waiting_lora_adapters=""\} \d+(\.\d+)?$/m);
  t.match(text, /^lora_adapter_residency\{tier="device"\} 1$/m);
  t.match(text, /^vllm:cache_config_info\{block_size="32",num_gpu_blocks="\d+"\} 1$/m);
});
