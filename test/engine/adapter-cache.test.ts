/** Adapter tiers, slots, reference counts, pins, back-pressure and cancellation, on the real fixture engine. */
import t from 'tap';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_ADAPTERS, greedyRequest, loadFixtureEngine, maxAbsDiff, reference } from '../helpers/engine.js';
import type { Engine } from '../../src/engine/engine.js';

const caseFor = (adapter: string | null) => reference.cases.find((c) => c.adapter === adapter)!;
const statusOf = (engine: Engine, name: string) => engine.adapters.get(name).status;

function adaptersWithCopies(): string {
  const dir = mkdtempSync(join(tmpdir(), 'adapters-'));
  cpSync(FIXTURE_ADAPTERS, dir, { recursive: true });
  cpSync(join(FIXTURE_ADAPTERS, 'support'), join(dir, 'support-copy'), { recursive: true });
  cpSync(join(FIXTURE_ADAPTERS, 'code'), join(dir, 'code-copy'), { recursive: true });
  return dir;
}

t.test('a concurrent mix gives every request its solo greedy tokens and logprobs', async (t) => {
  const engine = await loadFixtureEngine();
  t.teardown(() => engine.close());
  const cases = [...reference.cases, ...reference.cases].filter((c) => c.prompt_token_ids.length < 64);
  const solo: Array<{ tokenIds: number[]; logprobs?: number[] }> = [];
  for (const c of cases.slice(0, cases.length / 2)) solo.push(await engine.generate(greedyRequest(c)));
  const together = await Promise.all(cases.map((c) => engine.generate(greedyRequest(c))));
  together.forEach((r, i) => {
    const s = solo[i % solo.length];
    t.same(r.tokenIds, s.tokenIds, `request ${i} (${cases[i].adapter ?? 'base'}) tokens equal its solo run`);
    t.ok(maxAbsDiff(r.logprobs!, s.logprobs!) < 1e-4, `request ${i} logprobs within 1e-4 of solo`);
  });
});

t.test('device slots: LRU replacement, never while in use, pins stay', async (t) => {
  const engine = await loadFixtureEngine({ adapterSlots: 2 });
  t.teardown(() => engine.close());
  const run = (adapter: string, maxTokens = 2) => engine.generate(greedyRequest(caseFor(adapter), { maxTokens }));
  await run('support');
  await run('sales');
  t.same([statusOf(engine, 'support'), statusOf(engine, 'sales'), statusOf(engine, 'code')], ['device', 'device', 'host']);
  await run('code');
  t.equal(statusOf(engine, 'support'), 'host', 'least recently used (support) was replaced');
  t.equal(statusOf(engine, 'sales'), 'device');
  await run('sales');
  await run('support');
  t.equal(statusOf(engine, 'code'), 'host', 'then code, now the least recently used');

  // In use: a long support generation keeps its slot while others churn through the other one.
  const long = engine.generate(greedyRequest(caseFor('support'), { maxTokens: 120 }));
  for (const name of ['code', 'sales', 'code']) {
    await run(name);
    t.equal(statusOf(engine, 'support'), 'device', `support stays resident while in use (after ${name})`);
  }
  t.same((await long).tokenIds.slice(0, 24), caseFor('support').greedy_token_ids, 'the long request is unaffected by the churn');

  engine.adapters.pin('code', true);
  for (const name of ['support', 'sales', 'support']) await run(name);
  t.equal(statusOf(engine, 'code'), 'device', 'a pinned adapter stays');
  engine.adapters.pin('code', false);
  t.ok(engine.adapters.counters.deviceEvictions >= 3);
});

t.test('2 device slots, 5 adapters requested concurrently: all complete correctly', async (t) => {
  const engine = await loadFixtureEngine({ adapterSlots: 2, adaptersDir: adaptersWithCopies() });
  t.teardown(() => engine.close());
  const names = ['support', 'sales', 'code', 'support-copy', 'code-copy'];
  const expected = (name: string) => caseFor(name.replace('-copy', '')).greedy_token_ids;
  const results = await Promise.all(
    [...names, ...names].map((name) => engine.generate({ ...greedyRequest(caseFor(name.replace('-copy', ''))), adapter: name })),
  );
  results.forEach((r, i) => t.same(r.tokenIds, expected(names[i % names.length]), `${names[i % names.length]} correct`));
});

t.test('an adapter that turns out corrupt during load fails only its own requests', async (t) => {
  const dir = adaptersWithCopies();
  const engine = await loadFixtureEngine({ adaptersDir: dir });
  t.teardown(() => engine.close());
  cpSync(join(FIXTURE_ADAPTERS, 'sales'), join(dir, 'late'), { recursive: true });
  writeFileSync(join(dir, 'late', 'adapter_model.safetensors'), Buffer.concat([Buffer.from([16, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"x": 1}        ')]));
  engine.adapters.register('late', 'late');
  t.equal(statusOf(engine, 'late'), 'available', 'its config is valid, weights not read yet');
  const [bad, good] = await Promise.allSettled([
    engine.generate({ ...greedyRequest(caseFor('sales')), adapter: 'late' }),
    engine.generate(greedyRequest(caseFor('sales'))),
  ]);
  t.equal(bad.status, 'rejected');
  t.match((bad as PromiseRejectedResult).reason, { code: 'adapter_errored', message: /late.*adapter_model\.safetensors/ });
  t.equal(good.status, 'fulfilled');
  t.same((good as PromiseFulfilledResult<{ tokenIds: number[] }>).value.tokenIds, caseFor('sales').greedy_token_ids);
  t.equal(statusOf(engine, 'late'), 'errored');
});

t.test('back-pressure: a full queue answers queue_full with a retry hint', async (t) => {
  const engine = await loadFixtureEngine({ maxBatch: 1, maxQueue: 1 });
  t.teardown(() => engine.close());
  const first = engine.generate(greedyRequest(caseFor(null), { maxTokens: 50 }));
  const second = engine.generate(greedyRequest(caseFor(null), { maxTokens: 5 }));
  t.throws(() => engine.start(greedyRequest(caseFor(null))), { code: 'queue_full', retryAfterSeconds: 1 });
  await Promise.all([first, second]);
});

t.test('cancellation frees the row at the next step; timeouts end a request', async (t) => {
  const engine = await loadFixtureEngine();
  t.teardown(() => engine.close());
  const controller = new AbortController();
  const generation = engine.start(greedyRequest(caseFor('code'), { maxTokens: 200, signal: controller.signal }));
  const seen: number[] = [];
  const consumed = (async () => {
    for await (const e of generation.events)
      if (e.type === 'token') {
        seen.push(e.tokenId);
        if (seen.length === 3) controller.abort();
      }
  })();
  await t.rejects(consumed, { code: 'cancelled' });
  t.ok(seen.length < 200, `stopped after ${seen.length} tokens`);
  t.equal(engine.scheduler.batchSize, 0, 'its row is free');
  t.equal(engine.adapters.get('code').inUse, 0, 'its adapter reference is released');
  t.ok(engine.scheduler.stats.cancelled >= 1);
  const hasty = await loadFixtureEngine({ requestTimeoutMs: 3 });
  t.teardown(() => hasty.close());
  const slow = hasty.generate({ ...greedyRequest(caseFor(null)), maxTokens: 240, ignoreEos: true, promptTokenIds: [0, 5] });
  await t.rejects(slow, { code: 'timeout', message: /3 ms/ });
  t.equal(hasty.scheduler.batchSize, 0);
});

t.test('removing an adapter frees its host and device memory; refused while in use', async (t) => {
  const engine = await loadFixtureEngine();
  t.teardown(() => engine.close());
  await engine.generate(greedyRequest(caseFor('code'), { maxTokens: 2 }));
  const hostBefore = engine.adapters.hostBytes;
  t.equal(engine.adapters.stackRank, 16, 'the code adapter (r=16) widened the slot stacks');
  const running = engine.generate(greedyRequest(caseFor('code'), { maxTokens: 200, ignoreEos: true }));
  for (let i = 0; i < 10_000 && engine.adapters.get('code').inUse === 0; i++) await new Promise((r) => setImmediate(r));
  t.equal(engine.adapters.get('code').inUse, 1, 'the running request holds the adapter');
  t.throws(() => engine.adapters.remove('code'), { code: 'adapter_in_use' });
  await running;
  engine.adapters.remove('code');
  t.notOk(engine.adapters.has('code'));
  t.ok(engine.adapters.hostBytes < hostBefore, `host bytes ${hostBefore} -> ${engine.adapters.hostBytes}`);
  t.ok(engine.adapters.stackRank <= 8, `slot stacks shrank to the largest resident rank (${engine.adapters.stackRank})`);
  t.rejects(engine.generate(greedyRequest(caseFor('code'))), { code: 'adapter_not_found' });
});

t.test('an adapter larger than the whole host tier is still served (staged straight into its slot)', async (t) => {
  const engine = await loadFixtureEngine({ hostCacheBytes: 1024 });
  t.teardown(() => engine.close());
  const result = await engine.generate(greedyRequest(caseFor('code')));
  t.same(result.tokenIds, caseFor('code').greedy_token_ids);
  t.equal(engine.adapters.hostBytes, 0, 'nothing fits in the 1 KiB host tier');
});
