import t from 'tap';
import { parseArgs } from '../../tools/loadtest/args.js';
import type { RequestOutcome } from '../../tools/loadtest/client.js';
import { escapeHtml, renderHtml } from '../../tools/loadtest/report-html.js';
import { buildReport, TTFT_NOTE_NON_STREAMING, TTFT_NOTE_STREAMING } from '../../tools/loadtest/report.js';
import type { RunResult } from '../../tools/loadtest/run.js';
import { Timeline } from '../../tools/loadtest/stats.js';
import { checkHtml } from './fixtures/html-check.js';

function outcome(p: Partial<RequestOutcome> & { index: number; adapter: string }): RequestOutcome {
  return {
    startMs: p.index * 50,
    ttftMs: null,
    latencyMs: 100,
    ok: true,
    status: 200,
    errorCode: null,
    errorMessage: null,
    retryAfterS: null,
    targetPromptTokens: 64,
    promptTokens: 64,
    completionTokens: 10,
    finishReason: 'length',
    route: 'local',
    ...p,
  };
}

/** support: 100 ok, latency 100..199 ms; sales: 50 ok (200..249 ms), 5 × 429 queue_full, 3 × 502 without JSON; base: none. */
function synthetic(stream: boolean): RunResult {
  const outcomes: RequestOutcome[] = [];
  let index = 0;
  for (let i = 0; i < 100; i++) {
    const latencyMs = 100 + i;
    outcomes.push(outcome({ index: index++, adapter: 'support', latencyMs, ttftMs: stream ? 20 + (i % 10) : latencyMs }));
  }
  for (let i = 0; i < 50; i++) {
    const latencyMs = 200 + i;
    outcomes.push(
      outcome({ index: index++, adapter: 'sales', latencyMs, ttftMs: stream ? 30 : latencyMs, route: i % 2 ? 'bedrock' : 'local', completionTokens: 20 }),
    );
  }
  for (let i = 0; i < 5; i++) {
    outcomes.push(
      outcome({
        index: index++,
        adapter: 'sales',
        ok: false,
        status: 429,
        errorCode: 'queue_full',
        errorMessage: 'The queue is full <script>alert(1)</script> & co',
        completionTokens: 0,
        promptTokens: null,
        finishReason: null,
        route: null,
        retryAfterS: 1,
      }),
    );
  }
  for (let i = 0; i < 3; i++) {
    outcomes.push(
      outcome({
        index: index++,
        adapter: 'sales',
        ok: false,
        status: 502,
        errorCode: 'http_502',
        errorMessage: '<html>Bad gateway</html>',
        completionTokens: 0,
        promptTokens: null,
        finishReason: null,
        route: null,
      }),
    );
  }
  const timeline = new Timeline(['support', 'sales', 'base']);
  for (const x of outcomes) {
    const end = x.startMs + x.latencyMs;
    timeline.addTokens(end, x.adapter, x.completionTokens);
    timeline.addFinished(end, x.adapter, x.ok);
  }
  return {
    startedAt: new Date('2025-01-01T00:00:00Z'),
    finishedAt: new Date('2025-01-01T00:00:10Z'),
    elapsedS: 10,
    issueEndS: 9.9,
    endS: 10,
    stoppedBy: 'duration',
    outcomes,
    abortedInFlight: 0,
    timeline,
  };
}

const opts = (stream: boolean) =>
  parseArgs(['--url', 'http://inference.example:8080', '--adapters', 'support:2,sales,base', '--duration', '10', ...(stream ? ['--stream'] : []), '--no-out']);

t.test('the report figures', async (t) => {
  const r = buildReport(opts(false), synthetic(false));
  t.equal(r.overall.requests, 158);
  t.equal(r.overall.ok, 150);
  t.equal(r.overall.errors, 8);
  t.same(r.overall.errorsByCode, { queue_full: 5, http_502: 3 });
  t.same(r.overall.errorsByStatus, { '429': 5, '502': 3 });
  t.equal(r.overall.generatedTokens, 100 * 10 + 50 * 20);
  t.equal(r.overall.tokensPerSec, 200);
  t.equal(r.overall.requestsPerSec, 15.8);
  t.equal(r.perAdapter.support.latencyMs?.p50, 149.5);
  t.equal(r.perAdapter.support.ttftMs?.p50, 149.5, 'non-streaming: ttft = latency');
  t.equal(r.perAdapter.sales.latencyMs?.p50, 224.5);
  t.same(r.perAdapter.sales.routes, { local: 25, bedrock: 25 });
  t.equal(r.perAdapter.base.requests, 0);
  t.equal(r.perAdapter.base.latencyMs, null);
  t.equal(r.notes.ttft, TTFT_NOTE_NON_STREAMING);
  t.equal(r.histograms.ttftMs, null);
  t.ok(r.histograms.latencyMs);
  t.equal(
    r.histograms.latencyMs!.counts.reduce((a, b) => a + b, 0),
    150,
    'histogram holds the ok requests',
  );
  t.equal(
    r.histograms.latencyMs!.countsByAdapter.support.reduce((a, b) => a + b, 0),
    100,
  );
  t.equal(
    r.timeline.reduce((a, b) => a + b.tokens, 0),
    2000,
  );
  t.equal(
    r.timeline.reduce((a, b) => a + b.errors, 0),
    8,
  );
  t.same(
    r.config.adapters.map((a) => a.share),
    [0.5, 0.25, 0.25],
  );
});

t.test('HTML is well-formed, self-contained and shows the figures', async (t) => {
  const report = buildReport(opts(false), synthetic(false));
  const html = renderHtml(report);
  const check = checkHtml(html);
  t.same(check.errors, [], 'well-formed');
  // Self-contained: no scripts to run, nothing loaded from elsewhere.
  t.notOk(check.attributes.has('src'), 'no src attributes');
  t.notOk(check.attributes.has('href'), 'no href attributes');
  t.same(check.attributes.get('type'), ['application/json'], 'the only script is inert JSON data');
  t.equal(check.elements.filter((e) => e === 'script').length, 1);
  t.notMatch(html, /url\(|@import/);
  const urls = html.match(/https?:\/\/[^\s"'<]+/g) ?? [];
  t.ok(
    urls.every((u) => u === 'http://www.w3.org/2000/svg' || u.startsWith('http://inference.example:8080')),
    `only the svg namespace and the target: ${[...new Set(urls)].join(' ')}`,
  );
  // Charts: latency histogram, tokens/s over time, requests/s over time.
  t.equal(check.elements.filter((e) => e === 'svg').length, 3);
  t.ok(check.elements.includes('rect') && check.elements.includes('polyline'));
  // Figures.
  const text = check.text;
  t.match(text, 'Total latency distribution');
  t.match(text, 'Generated tokens per second');
  t.match(text, 'Finished requests per second');
  t.match(text, TTFT_NOTE_NON_STREAMING);
  t.match(html, /<th scope="row"><i class="sw" style="background:#[0-9a-f]{6}"><\/i>support<\/th><td>100<\/td><td>100<\/td><td>0<\/td>/);
  t.match(html, /<td>149\.5<\/td>/, 'support p50 latency');
  t.match(html, /<td>224\.5<\/td>/, 'sales p50 latency');
  t.match(html, /<b>158<\/b><span>requests finished<\/span>/);
  t.match(html, /<b>200<\/b><span>generated tokens\/s<\/span>/);
  t.match(html, /<b>15\.80<\/b><span>requests\/s<\/span>/);
  t.match(text, 'queue_full');
  t.match(text, 'http_502');
  t.match(text, 'bedrock 25');
  // Untrusted text (server error messages) is escaped, not markup.
  t.notMatch(html, /<script>alert/);
  t.match(html, escapeHtml('<script>alert(1)</script> & co'));
  t.match(text, 'The queue is full <script>alert(1)</script> & co');
  // The embedded JSON is the report.
  const m = /<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html);
  t.ok(m);
  t.same(JSON.parse(m![1]), JSON.parse(JSON.stringify(report)));
});

t.test('streaming HTML has a time-to-first-token histogram and time per output token', async (t) => {
  const report = buildReport(opts(true), synthetic(true));
  t.equal(report.notes.ttft, TTFT_NOTE_STREAMING);
  t.equal(report.perAdapter.support.ttftMs?.p50, 24.5);
  t.ok(report.perAdapter.support.timePerOutputTokenMs);
  const html = renderHtml(report);
  const check = checkHtml(html);
  t.same(check.errors, []);
  t.equal(check.elements.filter((e) => e === 'svg').length, 4);
  t.match(check.text, 'Time to first token distribution');
  t.match(check.text, 'time per output token');
  t.match(html, /<td>24\.5<\/td>/);
});

t.test('a run without any success still renders', async (t) => {
  const run = synthetic(false);
  run.outcomes = run.outcomes.filter((x) => !x.ok);
  const report = buildReport(opts(false), run);
  t.equal(report.histograms.latencyMs, null);
  const check = checkHtml(renderHtml(report));
  t.same(check.errors, []);
  t.match(check.text, 'No successful requests: no latency histogram.');
  t.notMatch(check.text, 'Total latency distribution');
});

t.test('the checker itself catches broken HTML', async (t) => {
  t.not(checkHtml('<!DOCTYPE html><html><head><title>x</title></head><body><p><b>x</p></b></body></html>').errors.length, 0);
  t.not(checkHtml('<!DOCTYPE html><html><head></head><body>a < b</body></html>').errors.length, 0);
  t.not(checkHtml('<!DOCTYPE html><html><head></head><body><p class=x>y</p></body></html>').errors.length, 0);
  t.not(checkHtml('<!DOCTYPE html><html><head></head><body>&bogus;</body></html>').errors.length, 0);
  t.same(checkHtml('<!DOCTYPE html><html><head><meta charset="utf-8" /></head><body><p>a &amp; b</p></body></html>').errors, []);
});
