/**
 * The load tester end to end against a fake server (test/loadtest/fixtures/fake-server.ts) that
 * answers /v1/generate streaming and not, with per-adapter behaviour and some errors.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { parseArgs } from '../../tools/loadtest/args.js';
import { main } from '../../tools/loadtest/cli.js';
import { RequestPlanner } from '../../tools/loadtest/prompts.js';
import { buildReport, TTFT_NOTE_NON_STREAMING, type LoadTestReport } from '../../tools/loadtest/report.js';
import { runLoadTest } from '../../tools/loadtest/run.js';
import { childEnv } from '../helpers/child-env.js';
import { startFakeServer, type FakeServer } from './fixtures/fake-server.js';
import { checkHtml } from './fixtures/html-check.js';

const MIX = 'support:2,sales,code,flaky,base,missing';
const LABELS = ['support', 'sales', 'code', 'flaky', 'base', 'missing'];
const REQUESTS = 150;

/** The adapter split the seeded planner makes for the first n requests. */
function expectedSplit(n: number, seed: number): Record<string, number> {
  const planner = new RequestPlanner(parseArgs(['--adapters', MIX]).adapters, { min: 8, max: 24 }, seed);
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const l = planner.next().entry.label;
    counts[l] = (counts[l] ?? 0) + 1;
  }
  return counts;
}

function checkAgainstServer(t: Test, report: LoadTestReport, server: FakeServer, stream: boolean) {
  const s = server.stats;
  t.same(s.badBodies, [], 'every request body followed the contract');
  t.equal(report.overall.requests, REQUESTS);
  t.equal(
    Object.values(s.received).reduce((a, b) => a + b, 0),
    REQUESTS,
    'the server saw every request',
  );
  const split = expectedSplit(REQUESTS, 5);
  for (const l of LABELS) {
    const g = report.perAdapter[l];
    t.equal(g.requests, s.received[l] ?? 0, `${l}: requests = what the server received`);
    t.equal(g.requests, split[l] ?? 0, `${l}: requests = the seeded split`);
    t.equal(g.generatedTokens, s.tokensSent[l] ?? 0, `${l}: tokens = what the server sent`);
    const serverErrors = { ...(s.errorsSent[l] ?? {}) };
    if (s.streamsBroken[l]) serverErrors.stream_incomplete = s.streamsBroken[l];
    t.same(g.errorsByCode, serverErrors, `${l}: errors by code`);
  }
  t.ok(report.perAdapter.support.requests > report.perAdapter.sales.requests, 'support (weight 2) got more than sales (weight 1)');
  t.ok(report.overall.generatedTokens > 0 && report.overall.tokensPerSec > 0, 'non-zero tokens');
  t.equal(report.perAdapter.missing.generatedTokens, 0);
  t.equal(report.perAdapter.missing.ok, 0);
  t.ok(report.perAdapter.sales.errorsByCode.queue_full >= 1, 'some queue_full');
  t.ok(report.perAdapter.code.errorsByCode.internal_error >= 1, 'some internal_error');
  t.equal(report.perAdapter.support.errors, 0);
  t.equal(report.perAdapter.base.errors, 0);
  const byStatus: Record<string, number> = {};
  const add = (k: string, n: number) => n && (byStatus[k] = (byStatus[k] ?? 0) + n);
  add('404', report.perAdapter.missing.requests);
  add('429', report.perAdapter.sales.errorsByCode.queue_full ?? 0);
  add('500', report.perAdapter.code.errorsByCode.internal_error ?? 0);
  // Stream failures come after a 200.
  add(stream ? '200' : '503', report.perAdapter.flaky.requests);
  t.same(report.overall.errorsByStatus, byStatus, 'errors by HTTP status');
  t.match(report.perAdapter.sales.routes, { local: Number, bedrock: Number }, 'sales answers from both routes');
  t.same(Object.keys(report.perAdapter.support.routes), ['local']);
  // Per adapter: each support answer has 8 tokens, base 4 (max_tokens 16).
  t.equal(report.perAdapter.support.completionTokensPerRequest?.p50, 8);
  t.equal(report.perAdapter.base.completionTokensPerRequest?.p50, 4);
  t.same(report.perAdapter.support.finishReasons, { stop: report.perAdapter.support.ok });
  t.ok(report.perAdapter.support.latencyMs!.p50 > 0);
  t.equal(
    report.timeline.reduce((a, b) => a + b.tokens, 0),
    report.overall.generatedTokens,
    'timeline tokens add up',
  );
  t.equal(
    report.timeline.reduce((a, b) => a + b.requests + b.errors, 0),
    report.overall.requests,
    'timeline requests add up',
  );
}

t.test('non-streaming run: per-adapter split, tokens and error codes', async (t) => {
  const server = await startFakeServer();
  t.teardown(() => server.close());
  const o = parseArgs([
    '--url',
    server.url,
    '--adapters',
    MIX,
    '--concurrency',
    '6',
    '--duration',
    '60',
    '--requests',
    String(REQUESTS),
    '--prompt-tokens',
    '8-24',
    '--max-tokens',
    '16',
    '--seed',
    '5',
    '--no-out',
  ]);
  const run = await runLoadTest(o);
  t.equal(run.stoppedBy, 'requests');
  const report = buildReport(o, run);
  checkAgainstServer(t, report, server, false);
  t.equal(report.notes.ttft, TTFT_NOTE_NON_STREAMING);
  t.same(report.perAdapter.support.ttftMs, report.perAdapter.support.latencyMs, 'non-streaming: ttft = latency');
  t.equal(report.perAdapter.flaky.errorsByCode.overloaded, report.perAdapter.flaky.requests);
  t.equal(report.overall.timePerOutputTokenMs, null);
  // Prompt lengths: the fake counts words, which is what the generator aims at.
  t.ok(run.outcomes.filter((x) => x.ok).every((x) => x.promptTokens === x.targetPromptTokens));
});

t.test('streaming run: first-token time, broken-off streams, same split', async (t) => {
  const server = await startFakeServer({ tokenDelayMs: 3 });
  t.teardown(() => server.close());
  const o = parseArgs([
    '--url',
    server.url,
    '--adapters',
    MIX,
    '--concurrency',
    '6',
    '--duration',
    '60',
    '--requests',
    String(REQUESTS),
    '--prompt-tokens',
    '8-24',
    '--max-tokens',
    '16',
    '--seed',
    '5',
    '--stream',
    '--no-out',
  ]);
  const run = await runLoadTest(o);
  const report = buildReport(o, run);
  checkAgainstServer(t, report, server, true);
  const sup = report.perAdapter.support;
  t.ok(sup.ttftMs && sup.latencyMs && sup.ttftMs.p50 < sup.latencyMs.p50, `ttft p50 ${sup.ttftMs?.p50} < latency p50 ${sup.latencyMs?.p50}`);
  t.ok(sup.timePerOutputTokenMs && sup.timePerOutputTokenMs.p50 > 0);
  const flaky = report.perAdapter.flaky;
  t.ok(flaky.errorsByCode.stream_incomplete >= 1 && flaky.errorsByCode.internal_error >= 1, 'broken-off streams and error events');
  t.equal(flaky.errorsByCode.stream_incomplete + flaky.errorsByCode.internal_error, flaky.requests);
  t.equal(report.perAdapter.flaky.generatedTokens, 2 * report.perAdapter.flaky.requests, 'tokens of broken-off streams count');
  t.ok(report.histograms.ttftMs);
});

t.test('a duration-bound run stops on time and reports progress', async (t) => {
  const server = await startFakeServer();
  t.teardown(() => server.close());
  const lines: string[] = [];
  const o = parseArgs(['--url', server.url, '--adapters', 'support,base', '--concurrency', '3', '--duration', '1.2', '--stream', '--no-out']);
  const run = await runLoadTest(o, { onProgress: (p) => lines.push(`${p.finished}`), progressIntervalMs: 250 });
  t.equal(run.stoppedBy, 'duration');
  // On time as properties: not before the duration, and no request sent after the stop (when it stopped is
  // printed; a loaded machine may notice the deadline late, but never sends past it).
  t.ok(run.issueEndS >= 1.2, `stopped issuing at ${run.issueEndS} s, not before the 1.2 s duration`);
  t.ok(
    run.outcomes.every((o) => o.startMs <= run.issueEndS * 1000),
    `no request sent after the stop (last sent at ${Math.max(...run.outcomes.map((o) => o.startMs)).toFixed(0)} ms)`,
  );
  t.ok(run.outcomes.length > 10);
  t.ok(lines.length >= 4, `${lines.length} progress callbacks`);
  t.equal(Number(lines[lines.length - 1]), run.outcomes.length, 'the last progress line has the final count');
});

t.test('the CLI writes report.json, report.html and requests.jsonl and prints progress', async (t) => {
  const server = await startFakeServer();
  t.teardown(() => server.close());
  const out = await mkdtemp(join(tmpdir(), 'loadtest-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'tools/loadtest/cli.ts',
      '--url',
      server.url,
      '--adapters',
      'support:3,sales,missing',
      '--concurrency',
      '4',
      '--duration',
      '2.2',
      '--stream',
      '--out',
      out,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('close', r));
  t.equal(code, 0, `exit 0; stderr: ${stderr.slice(-500)}`);
  const progress = stderr.split('\n').filter((l) => /^\[\s*\d+s\/2\.2s\] done \d+ /.test(l));
  t.ok(progress.length >= 2, `progress lines on stderr:\n${stderr}`);
  t.match(stdout, /^support\s+\d+\s+0\s/m);
  t.match(stdout, /errors by code: .*adapter_not_found \d+/);
  t.match(stdout, /report: .*report\.html/);
  for (const f of ['report.json', 'report.html', 'requests.jsonl']) t.ok(existsSync(join(out, f)), f);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as LoadTestReport;
  t.same(Object.keys(report.perAdapter), ['support', 'sales', 'missing']);
  t.equal(report.perAdapter.support.requests, server.stats.received.support);
  t.equal(
    report.overall.generatedTokens,
    Object.values(server.stats.tokensSent).reduce((a, b) => a + b, 0),
  );
  t.equal(report.perAdapter.missing.errorsByCode.adapter_not_found, server.stats.received.missing);
  const lines = (await readFile(join(out, 'requests.jsonl'), 'utf8')).trim().split('\n');
  t.equal(lines.length, report.overall.requests);
  const html = await readFile(join(out, 'report.html'), 'utf8');
  t.same(checkHtml(html).errors, []);
  t.match(html, `<td>${report.perAdapter.support.requests}</td>`);
});

t.test('CLI exit codes: 2 for bad arguments, 1 when nothing succeeded', async (t) => {
  let err = '';
  const io = { stdout: () => undefined, stderr: (s: string) => void (err += s) };
  t.equal(await main(['--concurrency', 'x'], io), 2);
  t.match(err, /--concurrency: expected a whole number/);
  t.match(err, /Usage: npm run loadtest/);
  let out = '';
  t.equal(await main(['--help'], { stdout: (s) => void (out += s), stderr: () => undefined }), 0);
  t.match(out, /--prompt-tokens MIN-MAX/);
  const server = await startFakeServer();
  const url = server.url;
  await server.close();
  err = '';
  t.equal(await main(['--url', url, '--requests', '3', '--concurrency', '1', '--no-out', '--quiet'], io), 1);
  t.match(err, /no request succeeded/);
  err = '';
  t.equal(await main(['--url', url, '--wait-ready', '0.6', '--no-out'], io), 1);
  t.match(err, /readyz did not answer 200/);
});
