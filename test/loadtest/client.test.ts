import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { parseArgs } from '../../tools/loadtest/args.js';
import { buildBody, buildGenerateUrl, parseRetryAfter, sseData } from '../../tools/loadtest/client.js';
import { RequestPlanner } from '../../tools/loadtest/prompts.js';
import { runLoadTest } from '../../tools/loadtest/run.js';
import { buildReport } from '../../tools/loadtest/report.js';

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const x of chunks) c.enqueue(enc.encode(x));
      c.close();
    },
  });
}

async function collect(chunks: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const d of sseData(streamOf(chunks))) out.push(d);
  return out;
}

t.test('SSE parsing copes with split chunks, CRLF, comments and multi-line data', async (t) => {
  t.same(await collect(['data: {"a":1}\n\ndata: [DONE]\n\n']), ['{"a":1}', '[DONE]']);
  t.same(await collect(['da', 'ta: {"a"', ':1}\n', '\nda', 'ta:x\n\n']), ['{"a":1}', 'x']);
  t.same(await collect(['data: 1\r\n\r\ndata: 2\r\n\r\n']), ['1', '2']);
  t.same(await collect([': keep-alive\n\nevent: token\ndata: a\ndata: b\n\n']), ['a\nb']);
  t.same(await collect(['data: last-without-blank-line']), ['last-without-blank-line']);
  // A multi-byte character split across chunks.
  const bytes = new TextEncoder().encode('data: "é"\n\n');
  const split = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(bytes.slice(0, 8));
      c.enqueue(bytes.slice(8));
      c.close();
    },
  });
  const got: string[] = [];
  for await (const d of sseData(split)) got.push(d);
  t.same(got, ['"é"']);
});

t.test('Retry-After: seconds or an HTTP date', async (t) => {
  t.equal(parseRetryAfter('3'), 3);
  t.equal(parseRetryAfter(' 0 '), 0);
  t.equal(parseRetryAfter(null), null);
  t.equal(parseRetryAfter('soon'), null);
  const now = Date.parse('2025-01-01T00:00:00Z');
  t.equal(parseRetryAfter('Wed, 01 Jan 2025 00:00:05 GMT', now), 5);
  t.equal(parseRetryAfter('Tue, 31 Dec 2024 23:59:00 GMT', now), 0);
});

t.test('URL and body follow the API contract', async (t) => {
  t.equal(buildGenerateUrl('http://h:1', null), 'http://h:1/v1/generate');
  t.equal(buildGenerateUrl('http://h:1/p', 'sup.port-1'), 'http://h:1/p/v1/generate?adapter=sup.port-1');
  t.equal(buildGenerateUrl('http://h:1', 'sales', 'bedrock'), 'http://h:1/v1/generate?adapter=sales&route=bedrock');
  t.equal(buildGenerateUrl('http://h:1', null, 'local'), 'http://h:1/v1/generate?route=local');
  const o = parseArgs(['--adapters', 'support', '--no-out']);
  const req = new RequestPlanner(o.adapters, { min: 5, max: 5 }, 1).next();
  const settings = { baseUrl: 'http://h', stream: false, maxTokens: 7, temperature: null, ignoreEos: false, timeoutMs: 1000 };
  t.same(Object.keys(buildBody(req, settings)).sort(), ['max_tokens', 'prompt', 'stream']);
  t.match(buildBody(req, settings), { prompt: req.prompt, max_tokens: 7, stream: false });
  t.match(buildBody(req, { ...settings, stream: true, temperature: 0.8, ignoreEos: true }), {
    stream: true,
    temperature: 0.8,
    seed: req.seed,
    ignore_eos: true,
  });
  t.notOk('seed' in buildBody(req, { ...settings, temperature: 0 }), 'no seed for greedy decoding');
});

t.test('a client waits for Retry-After after 429/503 unless told not to', async (t) => {
  let hits = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits++;
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end('{"error":{"code":"overloaded","message":"busy"}}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const honoring = await runLoadTest(parseArgs(['--url', url, '--concurrency', '1', '--duration', '2.5', '--no-out', '--quiet']));
  const starts = honoring.outcomes.map((x) => x.startMs);
  t.ok(starts.length >= 2 && starts.length <= 3, `${starts.length} requests in 2.5 s, one per Retry-After second`);
  for (let i = 1; i < starts.length; i++) {
    const gap = starts[i] - (starts[i - 1] + honoring.outcomes[i - 1].latencyMs);
    t.ok(gap >= 990, `paused ${Math.round(gap)} ms after a Retry-After: 1`);
  }
  t.ok(honoring.outcomes.every((x) => x.errorCode === 'overloaded' && x.status === 503 && x.retryAfterS === 1));

  hits = 0;
  const ignoring = await runLoadTest(parseArgs(['--url', url, '--concurrency', '1', '--duration', '0.5', '--no-out', '--quiet', '--ignore-retry-after']));
  t.ok(ignoring.outcomes.length > 5, `${ignoring.outcomes.length} requests without waiting`);
  t.equal(hits, ignoring.outcomes.length);
});

t.test('timeouts and refused connections are counted, not thrown', async (t) => {
  const server = createServer(() => {
    // never answers
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const slow = await runLoadTest(parseArgs(['--url', url, '--concurrency', '2', '--requests', '2', '--timeout', '200ms', '--no-out']));
  t.same(
    slow.outcomes.map((x) => x.errorCode),
    ['timeout', 'timeout'],
  );
  t.same(
    slow.outcomes.map((x) => x.status),
    [0, 0],
  );
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  // Port 5 on loopback: a privileged port nothing here listens on, and not one of fetch's blocked ports (1 is).
  // (The port just closed could be taken by another test process.)
  const refused = await runLoadTest(parseArgs(['--url', 'http://127.0.0.1:5', '--concurrency', '1', '--requests', '3', '--no-out']));
  t.same(
    refused.outcomes.map((x) => x.errorCode),
    ['network_error', 'network_error', 'network_error'],
  );
  t.match(refused.outcomes[0].errorMessage, /ECONNREFUSED/);
});

t.test('stopping the run aborts requests in flight and keeps what finished', async (t) => {
  const server = createServer((req, res) => {
    req.resume();
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.searchParams.get('adapter') === 'slow') return; // hangs
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"text":"x","token_ids":[1],"finish_reason":"stop","adapter":null,"usage":{"prompt_tokens":1,"completion_tokens":1}}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  const r = await runLoadTest(parseArgs(['--url', url, '--adapters', 'slow,base:4', '--concurrency', '2', '--duration', '30', '--no-out']), {
    signal: ac.signal,
  });
  t.equal(r.stoppedBy, 'signal');
  t.ok(r.issueEndS < 30, `stopped at the signal (${r.issueEndS.toFixed(2)} s), not at the 30 s duration`);
  t.ok(r.abortedInFlight >= 1, `aborted ${r.abortedInFlight}`);
  t.ok(
    r.outcomes.every((x) => x.adapter === 'base' && x.ok),
    'only finished requests are kept',
  );
});

t.test('an API key from LOADTEST_API_KEY goes out as a bearer token and never into the report', async (t) => {
  const seen: Array<string | undefined> = [];
  const server = createServer((req, res) => {
    seen.push(req.headers.authorization);
    req.resume();
    req.on('end', () => {
      if (req.headers.authorization !== 'Bearer sk-test-123') {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"error":{"code":"unauthorized","message":"no key"}}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ text: 'hi', token_ids: [1], finish_reason: 'length', usage: { prompt_tokens: 3, completion_tokens: 1 } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const args = ['--url', url, '--concurrency', '1', '--requests', '3', '--no-out', '--quiet'];
  const withKey = { ...parseArgs(args), apiKey: 'sk-test-123' };
  const run = await runLoadTest(withKey);
  t.ok(run.outcomes.length === 3 && run.outcomes.every((x) => x.ok), 'all requests accepted with the key');
  t.notMatch(JSON.stringify(buildReport(withKey, run)), /sk-test-123/, 'the key is not in the report');
  const without = await runLoadTest(parseArgs(args));
  t.ok(
    without.outcomes.every((x) => x.status === 401 && x.errorCode === 'unauthorized'),
    'refused without it',
  );
  t.same(seen.slice(0, 3), ['Bearer sk-test-123', 'Bearer sk-test-123', 'Bearer sk-test-123']);
});
