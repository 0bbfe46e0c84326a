/**
 * Adapters from S3, end to end through the HTTP routes (app.inject) and the engine's worker protocol
 * (in-process), with the real @aws-sdk/client-s3 against a real S3 API on loopback (test/helpers/s3.ts). The
 * same fixture files served from the local adapters directory by a second engine are the yardstick: an adapter
 * from S3 must give exactly their tokens.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildTestApp, clientFor } from '../helpers/app.js';
import { FIXTURE_ADAPTERS, loadFixtureEngine, reference } from '../helpers/engine.js';
import { startLoopbackS3 } from '../helpers/s3.js';
import { EngineError } from '../../src/engine/errors.js';
import { parseS3Url } from '../../src/engine/lora/adapter-store.js';
import { S3AdapterStore } from '../../src/engine/lora/s3-adapter-store.js';
import type { GenerationEvent } from '../../src/engine/types.js';

const PREFIX = 'team/';
const CACHE_BOUND = 200 * 1024; // fits one "code" adapter (~148 KiB) and the small ones, not two "code"s
const MAX_ADAPTER = 1 << 20;

const s3 = await startLoopbackS3();
const savedEnv = { ...process.env };
// The engine's S3 client takes the endpoint and credentials from the environment, as in production.
Object.assign(process.env, s3.env);
await s3.putAdapter(PREFIX, 'listed', join(FIXTURE_ADAPTERS, 'support'));
const cacheDir = mkdtempSync(join(tmpdir(), 'lora-adapter-cache-'));
const engine = await loadFixtureEngine({
  adaptersDir: `s3://${s3.bucket}/${PREFIX}`,
  adapterCacheDir: cacheDir,
  adapterCacheBytes: CACHE_BOUND,
  adapterMaxBytes: MAX_ADAPTER,
  adapterSlots: 3,
});
const local = await loadFixtureEngine();
const app = await buildTestApp(engine);
const localApp = await buildTestApp(local);
t.teardown(async () => {
  await app.close();
  await localApp.close();
  await s3.close();
  process.env = savedEnv;
});

const prompt = reference.cases.find((c) => c.adapter === 'support')!.prompt_token_ids;
const body = (max = 12) => ({ prompt_token_ids: prompt, max_tokens: max, temperature: 0 });
const generate = (target: typeof app, adapter: string, max = 12) =>
  target.inject({ method: 'POST', url: `/v1/generate?adapter=${adapter}`, payload: body(max) });
const localTokens = async (adapter: string, max = 12) => (await generate(localApp, adapter, max)).json().token_ids as number[];
const adapterInfo = async (name: string) =>
  ((await app.inject({ url: '/v1/adapters' })).json().data as Array<Record<string, any>>).find((a) => a.name === name);

t.test('the S3 URL is parsed strictly', async (t) => {
  t.same(parseS3Url('s3://my-bucket/a/b'), { bucket: 'my-bucket', prefix: 'a/b/' });
  t.same(parseS3Url('s3://my-bucket'), { bucket: 'my-bucket', prefix: '' });
  t.equal(parseS3Url('/var/lib/adapters'), null, 'a path is not an S3 URL');
  t.throws(() => parseS3Url('s3://UPPER/x'), /valid S3 bucket/);
  t.throws(() => parseS3Url('s3://bucket/a/../b/'), /"\.\."/);
});

t.test('adapters in the bucket at start are listed (GET /v1/adapters, /v1/models with parent = base) without being downloaded', async (t) => {
  const listed = await adapterInfo('listed');
  t.match(listed, { status: 'remote', origin: 'remote', version: null });
  const models = (await app.inject({ url: '/v1/models' })).json().data as Array<Record<string, unknown>>;
  t.match(
    models.find((m) => m.id === 'listed'),
    { parent: engine.modelName, owned_by: 'lora-inference-server' },
  );
  t.equal(s3.gets('/listed/adapter_model.safetensors'), 0, 'nothing downloaded before the first request');
});

t.test('a listed adapter loads on first use and gives exactly the tokens of the same files from disk', async (t) => {
  const res = await generate(app, 'listed');
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json().token_ids, await localTokens('support'));
  t.equal(s3.gets('/listed/adapter_model.safetensors'), 1);
  t.match(await adapterInfo('listed'), { status: 'device', origin: 'remote' });
});

t.test('just in time: a name uploaded after start is looked up and downloaded once for concurrent requests', async (t) => {
  await s3.putAdapter(PREFIX, 'late-sales', join(FIXTURE_ADAPTERS, 'sales'));
  t.notOk(await adapterInfo('late-sales'), 'not known before it is asked for');
  const lookupsBefore = s3.requests.filter((r) => r.includes('prefix=team%2Flate-sales%2F')).length;
  const results = await Promise.all(Array.from({ length: 5 }, () => generate(app, 'late-sales')));
  const expected = await localTokens('sales');
  for (const r of results) {
    t.equal(r.statusCode, 200, r.body);
    t.same(r.json().token_ids, expected, 'the tokens of the sales files from disk');
  }
  t.equal(s3.gets('/late-sales/adapter_model.safetensors'), 1, 'one download for five concurrent requests');
  t.equal(s3.gets('/late-sales/adapter_config.json'), 1);
  t.equal(s3.requests.filter((r) => r.includes('prefix=team%2Flate-sales%2F')).length - lookupsBefore, 1, 'one store look-up');
  t.equal(engine.adapters.counters.downloads >= 2, true);
});

t.test('a name the store does not hold is 404 on both APIs, never the base model', async (t) => {
  const res = await generate(app, 'nosuch');
  t.equal(res.statusCode, 404);
  t.equal(res.json().error.code, 'adapter_not_found');
  const chat = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { model: 'nosuch-either', messages: [{ role: 'user', content: 'hi' }] },
  });
  t.equal(chat.statusCode, 404);
  t.equal(chat.json().error.code, 'model_not_found');
  t.ok(
    s3.requests.some((r) => r.includes('prefix=team%2Fnosuch%2F')),
    'the store was asked',
  );
});

t.test('a corrupt object is refused with its reason (checksum), and nothing of it stays in the cache', async (t) => {
  await s3.putAdapter(PREFIX, 'broken', join(FIXTURE_ADAPTERS, 'support'));
  // Flip bytes in the stored object behind the server's back: same size, same ETag, other content.
  const file = s3.objectFile(`${PREFIX}broken/adapter_model.safetensors`);
  const bytes = readFileSync(file);
  for (let i = 200; i < 260; i++) bytes[i] ^= 0xff;
  writeFileSync(file, bytes);
  const res = await generate(app, 'broken');
  t.equal(res.statusCode, 422);
  t.equal(res.json().error.code, 'adapter_errored');
  t.match(res.json().error.message, /adapter_model\.safetensors: does not match its ETag/);
  t.match(await adapterInfo('broken'), { status: 'errored', error: /does not match its ETag/ });
  t.notOk(
    readdirSync(cacheDir).some((d) => d.startsWith('broken@')),
    'no cached copy',
  );
});

t.test('content is validated exactly as a local adapter (a DoRA config is refused with the reason)', async (t) => {
  const config = JSON.parse(readFileSync(join(FIXTURE_ADAPTERS, 'support', 'adapter_config.json'), 'utf8'));
  await s3.put(`${PREFIX}dora/adapter_config.json`, JSON.stringify({ ...config, use_dora: true }));
  await s3.put(`${PREFIX}dora/adapter_model.safetensors`, readFileSync(join(FIXTURE_ADAPTERS, 'support', 'adapter_model.safetensors')));
  const res = await generate(app, 'dora');
  t.equal(res.statusCode, 422);
  t.match(res.json().error.message, /use_dora is true: DoRA adapters are not supported/);
});

t.test('an object above --adapter-max-mb is refused from its listed size, before any download', async (t) => {
  await s3.put(`${PREFIX}huge/adapter_config.json`, readFileSync(join(FIXTURE_ADAPTERS, 'support', 'adapter_config.json')));
  await s3.put(`${PREFIX}huge/adapter_model.safetensors`, Buffer.alloc(MAX_ADAPTER + 1));
  const res = await generate(app, 'huge');
  t.equal(res.statusCode, 422);
  t.match(res.json().error.message, new RegExp(`adapter_model.safetensors: is ${MAX_ADAPTER + 1} bytes, above this server's limit of ${MAX_ADAPTER} bytes`));
  t.equal(s3.gets('/huge/adapter_model.safetensors'), 0, 'never downloaded');
});

t.test('the download cache is bounded in bytes: the least recently used version is evicted', async (t) => {
  await s3.putAdapter(PREFIX, 'code-a', join(FIXTURE_ADAPTERS, 'code'));
  await s3.putAdapter(PREFIX, 'code-b', join(FIXTURE_ADAPTERS, 'code'));
  t.equal((await generate(app, 'code-a')).statusCode, 200);
  t.ok(
    readdirSync(cacheDir).some((d) => d.startsWith('code-a@')),
    'code-a on disk',
  );
  t.equal((await generate(app, 'code-b')).statusCode, 200);
  const dirs = readdirSync(cacheDir).filter((d) => d.includes('@'));
  t.ok(
    dirs.some((d) => d.startsWith('code-b@')),
    'code-b on disk',
  );
  t.notOk(
    dirs.some((d) => d.startsWith('code-a@')),
    'code-a evicted (two code adapters do not fit the bound)',
  );
  const onDisk = dirs.reduce((n, d) => n + readdirSync(join(cacheDir, d)).reduce((m, f) => m + statSync(join(cacheDir, d, f)).size, 0), 0);
  t.ok(onDisk <= CACHE_BOUND, `${onDisk} bytes on disk <= ${CACHE_BOUND}`);
  t.equal(engine.adapters.tiers().diskCacheBytes, onDisk, 'the cache counts what is on disk');
  const res = await generate(app, 'code-a');
  t.equal(res.statusCode, 200, 'code-a still serves (its weights are in the host tier)');
  t.same(res.json().token_ids, await localTokens('code'));
  const metrics = (await app.inject({ url: '/metrics' })).body;
  t.match(metrics, new RegExp(`lora_adapter_tier_bytes\\{tier="disk_cache"\\} ${onDisk}`));
  t.match(metrics, /lora_adapter_load_seconds_count\{source="s3"\} [1-9]/);
});

t.test('reload: a changed object is served to new requests while a request in flight finishes on the old weights, which are then freed', async (t) => {
  await s3.putAdapter(PREFIX, 'swap', join(FIXTURE_ADAPTERS, 'support'));
  const client = clientFor(engine);
  const gens: Array<() => void> = [];
  let gated = false;
  const runner = engine.runner as { step: (plan: unknown) => Promise<unknown> };
  const step = runner.step.bind(runner);
  runner.step = async (plan) => {
    if (gated) await new Promise<void>((resolve) => gens.push(resolve));
    return step(plan);
  };
  t.teardown(() => void (runner.step = step));
  await client.adapters.prepare('swap');
  const request = { adapter: 'swap', promptTokenIds: prompt, maxTokens: 24, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true, logprobs: false };
  const old = client.start(request);
  const it = old.events[Symbol.asyncIterator]();
  const first = await it.next(); // admitted and running on the support weights
  t.equal((first.value as GenerationEvent).type, 'token');
  gated = true; // hold the step loop: the request stays in flight for as long as the test needs
  const v1 = (await adapterInfo('swap'))!.version;

  await s3.putAdapter(PREFIX, 'swap', join(FIXTURE_ADAPTERS, 'sales'));
  const reload = await app.inject({ method: 'POST', url: '/v1/adapters/swap/reload' });
  t.equal(reload.statusCode, 200, reload.body);
  t.equal(reload.json().previous_version, v1);
  t.not(reload.json().version, v1, 'a new version');
  t.equal((await adapterInfo('swap'))!.in_use, 1, 'the request in flight still holds the old weights');

  const fresh = generate(app, 'swap', 24);
  // Let steps through one at a time until the new request is admitted (admission runs between steps).
  for (let i = 0; i < 20 && engine.adapters.slotsHolding('swap') < 2; i++) {
    gens.shift()?.();
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(engine.adapters.slotsHolding('swap'), 2, 'the new version is written to another slot beside the old one');
  t.equal(engine.adapters.get('swap').inUse, 2, 'both run: one on each version');
  gated = false;
  for (const release of gens.splice(0)) release();
  const tokens: number[] = [(first.value as { tokenId: number }).tokenId];
  for (let next = await it.next(); !next.done; next = await it.next())
    if (next.value.type === 'token' && next.value.tokenId >= 0) tokens.push(next.value.tokenId);
  t.same(tokens, await localTokens('support', 24), 'the request in flight finished on the old (support) weights');
  const after = await fresh;
  t.equal(after.statusCode, 200, after.body);
  t.same(after.json().token_ids, await localTokens('sales', 24), 'a new request gets the new (sales) weights');
  for (let i = 0; i < 100 && engine.adapters.slotsHolding('swap') > 1; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(engine.adapters.slotsHolding('swap'), 1, 'the old slot was freed when its last request ended');
  t.equal((await adapterInfo('swap'))!.in_use, 0);
  t.equal(readdirSync(cacheDir).filter((d) => d.startsWith('swap@')).length, 1, 'only the new version stays on disk');
  t.equal(engine.adapters.counters.reloads, 1);
});

t.test('POST /v1/adapters registers a path under the prefix under another name (validated, downloaded)', async (t) => {
  const res = await app.inject({ method: 'POST', url: '/v1/adapters', payload: { name: 'alias-sales', path: 'late-sales' } });
  t.equal(res.statusCode, 201, res.body);
  t.match(res.json(), { name: 'alias-sales', origin: 'remote', status: 'host' });
  const gen = await generate(app, 'alias-sales');
  t.same(gen.json().token_ids, await localTokens('sales'));
  const outside = await app.inject({ method: 'POST', url: '/v1/adapters', payload: { name: 'escape', path: '../other' } });
  t.equal(outside.statusCode, 400, 'no path out of the prefix');
});

t.test('S3 failures map to stable codes: denied (stub client, as no loopback server checks IAM) and unavailable (server gone)', async (t) => {
  const denied = Object.assign(new Error('Access Denied'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
  const stub = new S3AdapterStore({ bucket: 'b-ucket', prefix: 'p/' }, { client: { send: async () => Promise.reject(denied) } as never });
  const e = await stub.describe('x').catch((err: unknown) => err);
  t.ok(e instanceof EngineError);
  t.equal((e as EngineError).code, 'adapter_store_denied');

  await s3.close();
  const res = await generate(app, 'ghost');
  t.equal(res.statusCode, 503);
  t.equal(res.json().error.code, 'adapter_store_unavailable');
  t.ok(Number(res.headers['retry-after']) > 0, 'Retry-After');
  const served = await generate(app, 'late-sales');
  t.equal(served.statusCode, 200, 'adapters already loaded keep serving while the store is down');
});
