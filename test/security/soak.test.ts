/**
 * A short soak (tools/soak) against the real server process: mixed adapters, client disconnects,
 * adapters registered and removed during traffic. No request may be lost, nothing may stay held.
 * (The 10-minute run and its figures: docs/soak.md.)
 */
import t from 'tap';
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL } from '../helpers/engine.js';
import { startServer } from '../helpers/server-process.js';
import { formatReport, runSoak } from '../../tools/soak/soak.js';

const scratch = mkdtempSync(join(tmpdir(), 'soak-test-'));
const root = join(scratch, 'adapters');
mkdirSync(root);
for (const a of ['support', 'sales', 'code']) cpSync(join(FIXTURE_ADAPTERS, a), join(root, a), { recursive: true });
const server = await startServer(['--model', FIXTURE_MODEL, '--adapters', root, '--cache-dir', join(scratch, 'cache'), '--max-batch', '8']);
t.teardown(() => server.stop());

t.test('8 s of mixed traffic with disconnects and adapter churn: nothing lost, nothing held', async (t) => {
  const report = await runSoak({
    url: server.url,
    durationS: 8,
    warmupS: 2,
    concurrency: 6,
    abortRate: 0.3,
    invalidRate: 0.05,
    churnIntervalS: 1,
    adaptersRoot: root,
    fixtureAdapters: FIXTURE_ADAPTERS,
    baseAdapters: ['base', 'support', 'sales', 'code'],
    sampleIntervalS: 1,
    requestTimeoutMs: 60_000,
    seed: 3,
    log: () => undefined,
  });
  t.comment(formatReport(report));
  t.ok(report.requests > 50, `${report.requests} requests`);
  t.ok(report.completed > 20, 'requests completed');
  t.ok(report.abortedByClient > 0, 'some were abandoned mid-stream');
  t.equal(report.lost, 0, `no request lost ${report.lostExamples.join('; ')}`);
  t.ok(report.adaptersRegistered >= 2, 'adapters were registered during traffic');
  t.ok(report.adaptersRemoved >= 1, 'and removed');
  t.same(report.idleAfter, { queueDepth: 0, batchSize: 0, adaptersInUse: 0 }, 'the server is at rest afterwards');
  t.ok(report.samples.length >= 3, 'RSS was sampled from /metrics');
  t.ok(
    Object.keys(report.errorsByCode).every((c) => ['invalid_request', 'invalid_json', 'adapter_not_found'].includes(c)),
    `only expected error codes: ${JSON.stringify(report.errorsByCode)}`,
  );
});
