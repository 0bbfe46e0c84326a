/**
 * The device-resident serving path (DeviceRunner behind the scheduler: batch KV on the device, rows refilled
 * through device-side inserts, slot updates on the device, token selection in the graph), run here on the CPU
 * provider with `stateResidency: 'device'`, which executes the same code with host tensors. What only a GPU
 * can show (speed, WebGPU kernels) is in docs/gpu.md.
 */
import t, { type Test } from 'tap';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_ADAPTERS, greedyRequest, loadFixtureEngine, maxAbsDiff, reference, type ReferenceCase } from '../helpers/engine.js';
import { dtypeFor, residencyFor } from '../../src/engine/model/start-runner.js';
import type { DeviceRunner } from '../../src/engine/model/device-runner.js';
import type { GenerateRequest } from '../../src/engine/types.js';
import type { Engine, EngineOptions } from '../../src/engine/engine.js';

const tolerance = (c: ReferenceCase) => (c.adapter === 'code' && c.prompt_token_ids.length > 80 ? 2e-4 : 1e-4); // as in reference.test.ts

t.test('auto residency: device on a GPU provider (or for float16), host on the CPU; auto dtype follows it', async (t) => {
  t.equal(residencyFor('cpu', 'auto'), 'host');
  t.equal(residencyFor('webgpu', 'auto'), 'device');
  t.equal(residencyFor('cuda', 'auto'), 'device');
  t.equal(residencyFor('cpu', 'device'), 'device');
  t.equal(residencyFor('webgpu', 'host'), 'host');
  t.equal(residencyFor('cpu', 'auto', 'float16'), 'device', 'float16 asks for the device path');
  t.equal(dtypeFor('device', 'auto'), 'float16');
  t.equal(dtypeFor('host', 'auto'), 'float32');
  t.equal(dtypeFor('device', 'float32'), 'float32');
});

t.test('all reference cases at once, mixed adapters in one batch: HF greedy tokens and logprobs', async (t) => {
  const engine = await loadFixtureEngine({ stateResidency: 'device', dtype: 'float32' });
  t.teardown(() => engine.close());
  t.equal(engine.residency, 'device');
  const results = await Promise.all(reference.cases.map((c) => engine.generate(greedyRequest(c))));
  results.forEach((r, i) => {
    const c = reference.cases[i];
    t.same(r.tokenIds, c.greedy_token_ids, `case ${i} (${c.adapter ?? 'base'}): tokens`);
    const d = maxAbsDiff(r.logprobs!, c.greedy_logprobs);
    t.ok(d < tolerance(c), `case ${i}: logprobs within ${tolerance(c)} (max diff ${d.toExponential(2)})`);
  });
});

/** Requests of every kind: lengths, adapters, greedy and sampled, so rows finish at different steps. */
function mixedRequests(count: number): GenerateRequest[] {
  return Array.from({ length: count }, (_, i) => {
    const c = reference.cases[i % reference.cases.length];
    const sampled = i % 3 !== 0;
    return {
      ...greedyRequest(c, { maxTokens: 3 + ((i * 7) % 19) }),
      promptTokenIds: c.prompt_token_ids.slice(0, 5 + ((i * 13) % c.prompt_token_ids.length)),
      ...(sampled ? { temperature: 0.6 + (i % 4) * 0.3, topK: i % 2 ? 0 : 20, topP: i % 5 ? 1 : 0.8, seed: 1000 + i } : {}),
    };
  });
}

/** Runs the requests concurrently on a host-path and a device-path engine and checks they agree token for token. */
async function sameAsHostPath(t: Test, options: Partial<EngineOptions>, requests: GenerateRequest[]): Promise<{ host: Engine; device: Engine }> {
  const host = await loadFixtureEngine(options);
  const device = await loadFixtureEngine({ ...options, stateResidency: 'device', dtype: 'float32' });
  t.teardown(async () => {
    await host.close();
    await device.close();
  });
  const expected = await Promise.all(requests.map((r) => host.generate(r)));
  const actual = await Promise.all(requests.map((r) => device.generate(r)));
  actual.forEach((r, i) => {
    t.same(r.tokenIds, expected[i].tokenIds, `request ${i} (${requests[i].adapter ?? 'base'}, ${requests[i].temperature ? 'sampled' : 'greedy'}): same tokens`);
    t.ok(maxAbsDiff(r.logprobs!, expected[i].logprobs!) < 1e-4, `request ${i}: logprobs within 1e-4`);
  });
  return { host, device };
}

t.test('row churn (3 rows, 24 requests, chunked prefill), greedy and seeded sampling: same as the host path', async (t) => {
  const { device } = await sameAsHostPath(t, { maxBatch: 3, prefillChunk: 7 }, mixedRequests(24));
  t.ok(device.scheduler.stats.decodeSteps > 0);
});

t.test('prompts prefilled together (groups of whole prompts), greedy and sampled, with finishes at the first token: same as the host path', async (t) => {
  // maxTokens 1 and 2 make rows finish while their group is being handed its first tokens
  const requests = mixedRequests(30).map((r, i) => ({ ...r, maxTokens: i % 5 === 0 ? 1 : i % 7 === 0 ? 2 : r.maxTokens }));
  const { host, device } = await sameAsHostPath(t, { maxBatch: 6, prefillChunk: 64 }, requests);
  t.ok((device.runner as DeviceRunner).prefillsTogether, 'the CPU provider runs a prompt batch from an empty cache');
  t.ok(device.scheduler.stats.prefillGroups > 0, `${device.scheduler.stats.prefillGroups} steps prefilled several prompts together`);
  t.ok(host.scheduler.stats.prefillGroups > 0, 'the host path packs several prompts into one step too');
});

t.test('slots rewritten on the device (1 slot, 3 adapters of ranks 16/8/4 in turn) stay correct', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'adapters-device-'));
  cpSync(FIXTURE_ADAPTERS, dir, { recursive: true });
  const engine = await loadFixtureEngine({ stateResidency: 'device', dtype: 'float32', adapterSlots: 1, adaptersDir: dir });
  t.teardown(() => engine.close());
  for (const name of ['support', 'sales', 'code', 'sales', 'support', 'code']) {
    const c = reference.cases.find((x) => x.adapter === name)!;
    const r = await engine.generate(greedyRequest(c));
    t.same(r.tokenIds, c.greedy_token_ids, `${name} after the slot was rewritten`);
  }
  t.ok(engine.adapters.counters.deviceEvictions >= 5, 'the one slot was replaced each time');
  const base = reference.cases.find((x) => x.adapter === null)!;
  t.same((await engine.generate(greedyRequest(base))).tokenIds, base.greedy_token_ids, 'slot 0 (base) untouched by the edits');
});

t.test('slot writes of equal rank (no re-upload): 2 slots, 4 rank-16 adapters in turn, same as the host path', async (t) => {
  // Variants of the support adapter with other lora_alpha values: same rank, different weights after scaling.
  const dir = mkdtempSync(join(tmpdir(), 'adapters-rank16-'));
  cpSync(FIXTURE_ADAPTERS, dir, { recursive: true });
  const names = ['support'];
  for (const alpha of [2, 20, 40]) {
    const name = `support-alpha${alpha}`;
    cpSync(join(FIXTURE_ADAPTERS, 'support'), join(dir, name), { recursive: true });
    const configPath = join(dir, name, 'adapter_config.json');
    writeFileSync(configPath, JSON.stringify({ ...JSON.parse(readFileSync(configPath, 'utf8')), lora_alpha: alpha }));
    names.push(name);
  }
  const options = { adapterSlots: 2, adaptersDir: dir };
  const host = await loadFixtureEngine(options);
  const device = await loadFixtureEngine({ ...options, stateResidency: 'device', dtype: 'float32' });
  t.teardown(async () => {
    await host.close();
    await device.close();
  });
  const c = reference.cases.find((x) => x.adapter === 'support')!;
  const outputs = new Set<string>();
  for (const name of [...names, null, ...names.slice().reverse(), null]) {
    const request = { ...greedyRequest(c), adapter: name };
    const [a, b] = [await host.generate(request), await device.generate(request)];
    t.same(b.tokenIds, a.tokenIds, `${name ?? 'base'}: same tokens as the host path`);
    t.ok(maxAbsDiff(b.logprobs!, a.logprobs!) < 1e-4, `${name ?? 'base'}: logprobs within 1e-4`);
    outputs.add(JSON.stringify(a.logprobs));
  }
  t.equal(outputs.size, names.length + 1, 'every variant (and the base) gives different numbers, so a wrong slot would show');
  t.ok(device.adapters.counters.deviceEvictions >= 4, 'slots were rewritten');
});

t.test('requests that need logits on the host (top_logprobs, prompt logprobs) get them on the device path', async (t) => {
  const host = await loadFixtureEngine();
  const device = await loadFixtureEngine({ stateResidency: 'device', dtype: 'float32' });
  t.teardown(async () => {
    await host.close();
    await device.close();
  });
  const c = reference.cases[1];
  const request = greedyRequest(c, { topLogprobs: 3, maxTokens: 6 });
  const [a, b] = [await host.generate(request, { promptLogprobs: true }), await device.generate(request, { promptLogprobs: true })];
  t.same(b.tokenIds, a.tokenIds);
  t.same(
    b.topLogprobs!.map((step) => step.map((x) => x.tokenId)),
    a.topLogprobs!.map((step) => step.map((x) => x.tokenId)),
    'same top candidates',
  );
  t.ok(maxAbsDiff(b.scores!.promptLogprobs, c.prompt_logprobs) < tolerance(c), 'prompt logprobs equal the reference');
  // one plain request alongside one that needs logits: both right
  const [plain, withTop] = await Promise.all([
    device.generate(greedyRequest(reference.cases[2])),
    device.generate(greedyRequest(reference.cases[3], { topLogprobs: 2 })),
  ]);
  t.same(plain.tokenIds, reference.cases[2].greedy_token_ids);
  t.same(withTop.tokenIds, reference.cases[3].greedy_token_ids);
});
