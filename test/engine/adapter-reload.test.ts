/**
 * Reloading a local adapter whose files were replaced, on both serving paths (host and device state residency;
 * the device path runs on the CPU provider here): a request in flight finishes on the old weights, a request
 * admitted after the reload gets the new ones, the old slot is freed, and the check (`checkForUpdates`, the
 * `--adapter-check-interval-s` timer) finds the change by itself. Tokens are compared with the HF reference.
 */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FIXTURE_ADAPTERS, greedyRequest, loadFixtureEngine, reference } from '../helpers/engine.js';

const caseFor = (adapter: string) => reference.cases.filter((c) => c.adapter === adapter).at(-1)!;

for (const residency of ['host', 'device'] as const) {
  t.test(`${residency} path: reload swaps the weights atomically`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'reload-adapters-'));
    cpSync(join(FIXTURE_ADAPTERS, 'support'), join(dir, 'swap'), { recursive: true });
    const engine = await loadFixtureEngine({ adaptersDir: dir, stateResidency: residency, adapterSlots: 2 });
    t.teardown(() => engine.close());
    const held: Array<() => void> = [];
    let gated = false;
    const runner = engine.runner as { step: (plan: unknown) => Promise<unknown> };
    const step = runner.step.bind(runner);
    runner.step = async (plan) => {
      if (gated) await new Promise<void>((resolve) => held.push(resolve));
      return step(plan);
    };

    const support = caseFor('support');
    const sales = caseFor('sales');
    // Same prompt for both, so only the weights differ.
    const old = engine.start({ ...greedyRequest(support, { adapter: 'swap' }), ignoreEos: true });
    const it = old.events[Symbol.asyncIterator]();
    const first = await it.next();
    gated = true;
    const v1 = engine.adapters.get('swap').version;

    cpSync(join(FIXTURE_ADAPTERS, 'sales'), join(dir, 'swap'), { recursive: true, force: true });
    const checked = engine.adapters.checkForUpdates();
    const { reloaded, failed } = await checked;
    t.same(reloaded, ['swap'], 'the check finds the replaced files and reloads');
    t.same(failed, []);
    t.not(engine.adapters.get('swap').version, v1);
    t.equal(engine.adapters.get('swap').inUse, 1, 'the old weights still run the request in flight');

    const fresh = engine.generate({
      ...greedyRequest({ ...sales, adapter: 'swap' } as typeof sales),
      ignoreEos: true,
      promptTokenIds: support.prompt_token_ids,
    });
    for (let i = 0; i < 20 && engine.adapters.slotsHolding('swap') < 2; i++) {
      held.shift()?.();
      await new Promise((r) => setTimeout(r, 20));
    }
    t.equal(engine.adapters.slotsHolding('swap'), 2, 'old and new weights side by side');
    gated = false;
    for (const release of held.splice(0)) release();
    const tokens = [(first.value as { tokenId: number }).tokenId];
    for (let next = await it.next(); !next.done; next = await it.next())
      if (next.value.type === 'token' && next.value.tokenId >= 0) tokens.push(next.value.tokenId);
    t.same(tokens, support.greedy_token_ids, 'the request in flight: support tokens to the end');
    const after = await fresh;
    const expected = await loadFixtureEngine({ stateResidency: residency }).then(async (e) => {
      const r = await e.generate({ ...greedyRequest(sales), ignoreEos: true, promptTokenIds: support.prompt_token_ids });
      await e.close();
      return r.tokenIds;
    });
    t.same(after.tokenIds, expected, 'the new request: the sales weights');
    t.equal(engine.adapters.slotsHolding('swap'), 1, 'the old slot is freed once its request ended');
    t.equal(engine.adapters.counters.reloads, 1);
  });
}
