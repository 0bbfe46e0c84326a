/**
 * npm run bench:fleet — a fleet on loopback: 3 server processes with 2 device slots each, 12 adapters, a skewed
 * (Zipf-like) request mix, routed two ways on fresh servers each:
 *   - round-robin (what a plain Service does);
 *   - lora-affinity: a routing harness that scrapes every pod's /metrics as the Gateway API Inference Extension's
 *     endpoint picker does and applies llm-d's scoring rules with the weights of deploy/gateway/ (lora-affinity 3,
 *     queue 2, kv-cache 1, max score, random among ties; tools/model-server-protocol/extractor.ts).
 * The harness is a benchmark tool only: in production the inference gateway routes.
 * Reports adapter cold loads (slot loads, and loads into host memory: the servers run with a small host tier,
 * so an adapter that left it is parsed from disk again), time to first token p50/p90 and throughput.
 *
 *   npm run bench:fleet [-- --requests 240 --concurrency 9 --max-tokens 16 --zipf 1.1 --seed 7 --quick]
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { commonOptions, loadavg, log, PROJECT_ROOT, splitArgs, startOurs, type ServerProcess } from './peer/lib.js';
import { extract, parseExposition, pick, type EndpointMetrics } from '../tools/model-server-protocol/extractor.js';

const { values: opts } = parseArgs({
  options: {
    ...commonOptions('fleet'),
    requests: { type: 'string', default: '240' },
    concurrency: { type: 'string', default: '9' },
    'max-tokens': { type: 'string', default: '16' },
    zipf: { type: 'string', default: '1.1' },
    seed: { type: 'string', default: '7' },
    'refresh-ms': { type: 'string', default: '50' },
    'host-cache-mb': { type: 'string', default: '2' },
  },
});
if (opts.help) {
  process.stdout.write(
    'npm run bench:fleet -- [--requests N] [--concurrency N] [--max-tokens N] [--zipf S] [--seed N] [--refresh-ms MS] [--host-cache-mb MB] [--server-args "..."] [--quick] [--out DIR]\n',
  );
  process.exit(0);
}

const SERVERS = 3;
const SLOTS = 2;
const ADAPTERS = 12;
const requests = opts.quick ? 60 : Number(opts.requests);
const concurrency = opts.quick ? 6 : Number(opts.concurrency);
const maxTokens = Number(opts['max-tokens']);
const weights = { lora: 3, queue: 2, kv: 1 };

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** The workload, the same for both policies: adapter i drawn with probability proportional to 1 / (i + 1)^s. */
function workload(): string[] {
  const random = rng(Number(opts.seed));
  const s = Number(opts.zipf);
  const w = Array.from({ length: ADAPTERS }, (_, i) => 1 / (i + 1) ** s);
  const total = w.reduce((a, b) => a + b, 0);
  return Array.from({ length: requests }, () => {
    let u = random() * total;
    for (let i = 0; i < ADAPTERS; i++) if ((u -= w[i]) <= 0) return name(i);
    return name(ADAPTERS - 1);
  });
}
const name = (i: number) => `a${String(i).padStart(2, '0')}`;

/** 12 adapters: the demo's three, each under four names (different adapters as far as slots and caches go). */
function adaptersDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-adapters-'));
  const sources = readdirSync(join(PROJECT_ROOT, 'adapters')).sort();
  for (let i = 0; i < ADAPTERS; i++) cpSync(join(PROJECT_ROOT, 'adapters', sources[i % sources.length]), join(dir, name(i)), { recursive: true });
  return dir;
}

const PROMPTS = [
  'Summarize this support ticket.\n\nMy invoice shows a double charge for November.',
  'Write a short sales email about the analytics dashboard.',
  'Write a JavaScript function that reverses a string.',
  'Explain what a LoRA adapter is in one sentence.',
];
const prompt = (i: number) => `### Instruction:\n${PROMPTS[i % PROMPTS.length]}\n\n### Response:\n`;

async function scrape(server: ServerProcess): Promise<string> {
  return (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
}

function counter(text: string, event: string): number {
  return parseExposition(text).find((s) => s.name === 'lora_adapter_cache_events' && s.labels.event === event)?.value ?? 0;
}

interface Outcome {
  ttftMs: number;
  tokens: number;
  ok: boolean;
}

async function generate(server: ServerProcess, adapter: string, i: number): Promise<Outcome> {
  const started = performance.now();
  const res = await fetch(`${server.url}/v1/generate?adapter=${adapter}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: prompt(i), max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true }),
  });
  if (!res.ok || !res.body) return { ttftMs: NaN, tokens: 0, ok: false };
  let ttftMs = NaN;
  let tokens = 0;
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (event.includes('"token_id"')) {
        if (Number.isNaN(ttftMs)) ttftMs = performance.now() - started;
        tokens++;
      }
    }
  }
  return { ttftMs, tokens, ok: !Number.isNaN(ttftMs) };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};

async function runPolicy(policy: 'round-robin' | 'lora-affinity', adapters: string, mix: string[]) {
  const extra = [
    '--adapter-slots',
    String(SLOTS),
    '--host-cache-mb',
    String(opts['host-cache-mb']),
    '--threads',
    '1',
    '--max-batch',
    '8',
    ...splitArgs(opts['server-args']),
  ];
  const servers = await Promise.all(
    Array.from({ length: SERVERS }, (_, i) => startOurs(`fleet-${policy}-${i}`, { hf: join(PROJECT_ROOT, 'models', 'demo'), adapters }, extra)),
  );
  try {
    const before = await Promise.all(servers.map(scrape));
    // The picker's view: every pod's metrics, refreshed in the background as the endpoint picker does.
    const view: EndpointMetrics[] = before.map(extract);
    let scraping = true;
    const refresher = (async () => {
      while (scraping) {
        await Promise.all(
          servers.map(async (s, i) => {
            try {
              view[i] = extract(await scrape(s));
            } catch {
              /* keep the last view */
            }
          }),
        );
        await new Promise((r) => setTimeout(r, Number(opts['refresh-ms'])));
      }
    })();
    const random = rng(Number(opts.seed) + 1);
    const outcomes: Outcome[] = [];
    const perServer = Array.from({ length: SERVERS }, () => 0);
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < mix.length) {
          const i = next++;
          const adapter = mix[i];
          const target = policy === 'round-robin' ? i % SERVERS : pick(view, adapter, weights, random);
          perServer[target]++;
          outcomes.push(await generate(servers[target], adapter, i));
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    scraping = false;
    await refresher;
    const after = await Promise.all(servers.map(scrape));
    const delta = (event: string) => after.reduce((n, text, i) => n + counter(text, event) - counter(before[i], event), 0);
    const ok = outcomes.filter((o) => o.ok);
    const ttft = ok.map((o) => o.ttftMs);
    return {
      policy,
      requests: mix.length,
      failed: outcomes.length - ok.length,
      perServer,
      slotLoads: delta('deviceMisses'),
      hostLoads: delta('loads'),
      ttftP50Ms: quantile(ttft, 0.5),
      ttftP90Ms: quantile(ttft, 0.9),
      requestsPerS: ok.length / seconds,
      tokensPerS: ok.reduce((n, o) => n + o.tokens, 0) / seconds,
      seconds,
    };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

async function main(): Promise<void> {
  const adapters = adaptersDir();
  const mix = workload();
  const counts = Object.fromEntries(Array.from({ length: ADAPTERS }, (_, i) => [name(i), mix.filter((a) => a === name(i)).length]));
  log(
    `fleet: ${SERVERS} servers x ${SLOTS} slots, ${ADAPTERS} adapters, ${requests} requests (Zipf s=${opts.zipf}: ${JSON.stringify(counts)}), concurrency ${concurrency}, max_tokens ${maxTokens}; load average ${loadavg()}`,
  );
  const results = [];
  for (const policy of ['round-robin', 'lora-affinity'] as const) {
    const loadBefore = loadavg();
    const r = await runPolicy(policy, adapters, mix);
    results.push({ ...r, loadBefore, loadAfter: loadavg() });
    log(`${policy}: ${JSON.stringify(results.at(-1))}`);
  }
  const table = [
    '| policy | slot loads | host loads | TTFT p50 ms | TTFT p90 ms | req/s | tok/s | requests per server | failed | load avg before/after |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map(
      (r) =>
        `| ${r.policy} | ${r.slotLoads} | ${r.hostLoads} | ${r.ttftP50Ms.toFixed(0)} | ${r.ttftP90Ms.toFixed(0)} | ${r.requestsPerS.toFixed(2)} | ${r.tokensPerS.toFixed(1)} | ${r.perServer.join(' / ')} | ${r.failed} | ${r.loadBefore} / ${r.loadAfter} |`,
    ),
  ].join('\n');
  process.stdout.write(`\n${table}\n`);
  mkdirSync(opts.out!, { recursive: true });
  const file = join(opts.out!, `fleet-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      {
        servers: SERVERS,
        slots: SLOTS,
        adapters: ADAPTERS,
        requests,
        concurrency,
        maxTokens,
        zipf: Number(opts.zipf),
        seed: Number(opts.seed),
        weights,
        mix: counts,
        results,
      },
      null,
      2,
    ),
  );
  log(`written ${file}`);
}

await main();
