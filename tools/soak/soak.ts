/**
 * The soak run: mixed-adapter traffic (streaming and JSON, some invalid on purpose) from `concurrency`
 * closed-loop workers, random client disconnects mid-stream, and adapters registered and removed through
 * the admin API while it runs. It watches the server's resident memory from /metrics and accounts for
 * every request: completed, failed with an answer (by error code), aborted by us, or lost (neither a
 * complete answer nor an error answer: a cut connection we did not cause, a stream without its finish
 * event or [DONE], a timeout).
 */
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { streamGenerate, type StreamOutcome } from './sse-client.js';

export interface SoakOptions {
  url: string;
  durationS: number;
  warmupS: number;
  concurrency: number;
  /** Share of streaming requests the client abandons mid-stream. */
  abortRate: number;
  /** Share of requests that are invalid on purpose (error paths must not leak either). */
  invalidRate: number;
  /** Seconds between adapter registrations/removals; 0 = no churn. */
  churnIntervalS: number;
  /** The server's adapters root (to copy adapters into) and where copies come from; churn needs both. */
  adaptersRoot?: string;
  fixtureAdapters?: string;
  baseAdapters: string[];
  apiKey?: string;
  adminKey?: string;
  /** Seconds between /metrics samples. */
  sampleIntervalS: number;
  requestTimeoutMs: number;
  seed: number;
  log: (line: string) => void;
}

export interface MemorySample {
  t: number;
  rssBytes: number;
  heapUsedBytes: number | null;
}

export interface SoakReport {
  startedAt: string;
  finishedAt: string;
  durationS: number;
  warmupS: number;
  concurrency: number;
  requests: number;
  completed: number;
  completedTokens: number;
  abortedByClient: number;
  failedWithAnswer: number;
  errorsByCode: Record<string, number>;
  lost: number;
  lostExamples: string[];
  adaptersRegistered: number;
  adaptersRemoved: number;
  adminErrorsByCode: Record<string, number>;
  rssStartBytes: number | null;
  rssEndBytes: number | null;
  rssMaxBytes: number | null;
  rssGrowthPercent: number | null;
  heapStartBytes: number | null;
  heapEndBytes: number | null;
  samples: MemorySample[];
  /** After the traffic stopped: the server's queue and batch emptied and no adapter is held. */
  idleAfter: { queueDepth: number | null; batchSize: number | null; adaptersInUse: number | null };
  targets: { zeroLost: boolean; rssGrowthUnder10Percent: boolean | null };
}

/** A small deterministic generator (mulberry32) so a run can be repeated with --seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface JsonAnswer {
  status: number;
  body: unknown;
  transportError: string | null;
}

function jsonRequest(
  url: string,
  method: string,
  payload: unknown,
  headers: Record<string, string>,
  signal?: AbortSignal,
  timeoutMs = 120_000,
): Promise<JsonAnswer> {
  return new Promise((resolve) => {
    const data = payload === undefined ? undefined : typeof payload === 'string' ? payload : JSON.stringify(payload);
    let settled = false;
    const done = (a: JsonAnswer) => {
      if (!settled) {
        settled = true;
        resolve(a);
      }
    };
    const req = httpRequest(
      url,
      {
        method,
        signal,
        timeout: timeoutMs,
        headers: { ...headers, ...(data !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) } : {}) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : null;
          } catch {
            /* not JSON */
          }
          done({ status: res.statusCode ?? 0, body, transportError: null });
        });
        res.on('error', (e) => done({ status: res.statusCode ?? 0, body: null, transportError: e.message }));
        res.on('close', () => {
          if (!res.complete) done({ status: res.statusCode ?? 0, body: null, transportError: 'response closed before its end' });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => done({ status: 0, body: null, transportError: e.code ?? e.message }));
    req.end(data);
  });
}

export async function scrapeMemory(url: string): Promise<{ rss: number | null; heap: number | null }> {
  const res = await jsonRequest(`${url}/metrics`, 'GET', undefined, {}, undefined, 10_000);
  const text = typeof res.body === 'string' ? res.body : '';
  const value = (name: string) => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  return { rss: value('lora_process_resident_memory_bytes'), heap: value('lora_nodejs_heap_size_used_bytes') };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
};

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const rand = random(o.seed);
  const startedAt = new Date();
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const auth = (key?: string): Record<string, string> => (key ? { authorization: `Bearer ${key}` } : {});
  const report: SoakReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: '',
    durationS: o.durationS,
    warmupS: o.warmupS,
    concurrency: o.concurrency,
    requests: 0,
    completed: 0,
    completedTokens: 0,
    abortedByClient: 0,
    failedWithAnswer: 0,
    errorsByCode: {},
    lost: 0,
    lostExamples: [],
    adaptersRegistered: 0,
    adaptersRemoved: 0,
    adminErrorsByCode: {},
    rssStartBytes: null,
    rssEndBytes: null,
    rssMaxBytes: null,
    rssGrowthPercent: null,
    heapStartBytes: null,
    heapEndBytes: null,
    samples: [],
    idleAfter: { queueDepth: null, batchSize: null, adaptersInUse: null },
    targets: { zeroLost: false, rssGrowthUnder10Percent: null },
  };
  const countError = (code: string) => {
    report.failedWithAnswer++;
    report.errorsByCode[code] = (report.errorsByCode[code] ?? 0) + 1;
  };
  const lose = (why: string) => {
    report.lost++;
    if (report.lostExamples.length < 20) report.lostExamples.push(`${elapsed().toFixed(1)}s ${why}`);
  };
  const codeOf = (body: unknown): string => ((body as { error?: { code?: unknown } })?.error?.code as string) ?? 'no_code';

  const churned: string[] = [];
  let stopping = false;
  const endAt = t0 + o.durationS * 1000;

  async function oneRequest(): Promise<void> {
    report.requests++;
    const adapters = [...o.baseAdapters, ...churned];
    const adapter = adapters[Math.floor(rand() * adapters.length)];
    const query = adapter === 'base' ? '' : `?adapter=${encodeURIComponent(adapter)}`;
    const maxTokens = 8 + Math.floor(rand() * 57);
    const body = {
      prompt: `Soak request ${report.requests}: summarise the ticket.`,
      max_tokens: maxTokens,
      ignore_eos: rand() < 0.5,
      temperature: rand() < 0.5 ? 0 : 0.8,
    };
    const roll = rand();
    if (roll < o.invalidRate) {
      // Invalid on purpose: the server must answer 4xx with a code, and nothing may leak.
      const kind = Math.floor(rand() * 3);
      const payload = kind === 0 ? '{"prompt": ' : kind === 1 ? { ...body, max_tokens: 1 << 30 } : { ...body, temperature: 'hot' };
      const res = await jsonRequest(`${o.url}/v1/generate${query}`, 'POST', payload, auth(o.apiKey), undefined, o.requestTimeoutMs);
      if (res.transportError) lose(`invalid request: ${res.transportError}`);
      else if (res.status >= 400 && res.status < 500 && codeOf(res.body) !== 'no_code') countError(codeOf(res.body));
      else lose(`invalid request answered ${res.status}: ${JSON.stringify(res.body).slice(0, 120)}`);
      return;
    }
    const streaming = rand() < 0.8;
    const abortAt = streaming && rand() < o.abortRate ? 1 + Math.floor(rand() * maxTokens) : null;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error('timeout')), o.requestTimeoutMs);
    let abortedByUs = false;
    try {
      if (streaming) {
        const outcome: StreamOutcome = await streamGenerate(
          `${o.url}/v1/generate${query}`,
          { ...body, stream: true },
          {
            headers: auth(o.apiKey),
            signal: controller.signal,
            onToken: (n) => {
              if (abortAt !== null && n >= abortAt && !abortedByUs) {
                abortedByUs = true;
                controller.abort();
              }
            },
          },
        );
        if (abortedByUs) report.abortedByClient++;
        else if (outcome.transportError)
          lose(`stream ${adapter}: ${controller.signal.aborted ? 'timed out' : outcome.transportError} after ${outcome.tokens} tokens`);
        else if (outcome.status !== 200) {
          if (outcome.status >= 400 && codeOf(outcome.body) !== 'no_code') countError(codeOf(outcome.body));
          else lose(`stream ${adapter}: status ${outcome.status} without an error code`);
        } else if (outcome.errorCode) {
          if (outcome.done) countError(outcome.errorCode);
          else lose(`stream ${adapter}: error event ${outcome.errorCode} without [DONE]`);
        } else if (outcome.finishReason && outcome.done) {
          report.completed++;
          report.completedTokens += outcome.completionTokens ?? 0;
        } else lose(`stream ${adapter}: ended without ${outcome.finishReason ? '[DONE]' : 'a finish event'} after ${outcome.tokens} tokens`);
      } else {
        const res = await jsonRequest(`${o.url}/v1/generate${query}`, 'POST', body, auth(o.apiKey), controller.signal, o.requestTimeoutMs);
        const b = res.body as { finish_reason?: string; usage?: { completion_tokens?: number } };
        if (res.transportError) lose(`json ${adapter}: ${res.transportError}`);
        else if (res.status === 200 && b?.finish_reason) {
          report.completed++;
          report.completedTokens += b.usage?.completion_tokens ?? 0;
        } else if (res.status >= 400 && codeOf(res.body) !== 'no_code') countError(codeOf(res.body));
        else lose(`json ${adapter}: status ${res.status} ${JSON.stringify(res.body).slice(0, 120)}`);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async function worker(): Promise<void> {
    while (!stopping && performance.now() < endAt) await oneRequest();
  }

  let churnCounter = 0;
  const pendingRemoval: string[] = [];
  async function churnOnce(): Promise<void> {
    if (!o.adaptersRoot || !o.fixtureAdapters) return;
    const admin = auth(o.adminKey ?? o.apiKey);
    const count = (code: string) => (report.adminErrorsByCode[code] = (report.adminErrorsByCode[code] ?? 0) + 1);
    if (churned.length < 2) {
      const source = ['support', 'sales', 'code'][churnCounter % 3];
      const name = `soak-${process.pid}-${churnCounter++}`;
      cpSync(join(o.fixtureAdapters, source), join(o.adaptersRoot, name), { recursive: true });
      const res = await jsonRequest(`${o.url}/v1/adapters`, 'POST', { name, path: name }, admin, undefined, 30_000);
      if (res.status === 201) {
        report.adaptersRegistered++;
        churned.push(name);
      } else {
        count(res.transportError ?? codeOf(res.body));
        rmSync(join(o.adaptersRoot, name), { recursive: true, force: true });
      }
      return;
    }
    // Stop sending new requests to the oldest, then remove it (409 adapter_in_use while requests run: retry).
    const name = churned.shift()!;
    pendingRemoval.push(name);
  }
  async function removePending(): Promise<void> {
    const admin = auth(o.adminKey ?? o.apiKey);
    for (const name of [...pendingRemoval]) {
      const res = await jsonRequest(`${o.url}/v1/adapters/${name}`, 'DELETE', undefined, admin, undefined, 30_000);
      if (res.status === 204) {
        report.adaptersRemoved++;
        pendingRemoval.splice(pendingRemoval.indexOf(name), 1);
        rmSync(join(o.adaptersRoot!, name), { recursive: true, force: true });
      } else {
        const code = res.transportError ?? codeOf(res.body);
        report.adminErrorsByCode[code] = (report.adminErrorsByCode[code] ?? 0) + 1;
      }
    }
  }

  async function sample(): Promise<void> {
    const m = await scrapeMemory(o.url).catch(() => ({ rss: null, heap: null }));
    if (m.rss !== null) report.samples.push({ t: Math.round(elapsed()), rssBytes: m.rss, heapUsedBytes: m.heap });
  }

  const workers = Array.from({ length: o.concurrency }, () => worker());
  const background = (async () => {
    let nextSample = 0;
    let nextChurn = o.churnIntervalS;
    let nextProgress = 10;
    while (!stopping && performance.now() < endAt) {
      const now = elapsed();
      if (now >= nextSample) {
        await sample();
        nextSample = now + o.sampleIntervalS;
      }
      if (o.churnIntervalS > 0 && now >= nextChurn) {
        await churnOnce();
        await removePending();
        nextChurn = now + o.churnIntervalS;
      }
      if (now >= nextProgress) {
        const rss = report.samples.at(-1)?.rssBytes;
        o.log(
          `[${now.toFixed(0)}s/${o.durationS}s] requests ${report.requests} completed ${report.completed} aborted ${report.abortedByClient} errors ${report.failedWithAnswer} lost ${report.lost} adapters +${report.adaptersRegistered}/-${report.adaptersRemoved} rss ${rss ? (rss / 2 ** 20).toFixed(0) : '?'} MiB`,
        );
        nextProgress = now + 30;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  await Promise.all(workers);
  stopping = true;
  await background;
  // Remove what churn left behind, then look at the server at rest.
  pendingRemoval.push(...churned.splice(0));
  for (let i = 0; i < 20 && pendingRemoval.length; i++) {
    await removePending();
    if (pendingRemoval.length) await new Promise((r) => setTimeout(r, 250));
  }
  await new Promise((r) => setTimeout(r, 500));
  await sample();
  const ready = await jsonRequest(`${o.url}/readyz`, 'GET', undefined, {}, undefined, 10_000);
  const adapters = await jsonRequest(`${o.url}/v1/adapters`, 'GET', undefined, auth(o.apiKey ?? o.adminKey), undefined, 10_000);
  const r = ready.body as { queue_depth?: number; batch_size?: number };
  report.idleAfter = {
    queueDepth: r?.queue_depth ?? null,
    batchSize: r?.batch_size ?? null,
    adaptersInUse: Array.isArray((adapters.body as { data?: unknown[] })?.data)
      ? (adapters.body as { data: Array<{ in_use: number }> }).data.reduce((n, a) => n + a.in_use, 0)
      : null,
  };

  const afterWarmup = report.samples.filter((s) => s.t >= o.warmupS);
  const first = afterWarmup.slice(0, 3);
  const last = report.samples.slice(-3);
  report.rssStartBytes = median(first.map((s) => s.rssBytes));
  report.rssEndBytes = median(last.map((s) => s.rssBytes));
  report.rssMaxBytes = afterWarmup.length ? Math.max(...afterWarmup.map((s) => s.rssBytes)) : null;
  report.heapStartBytes = median(first.map((s) => s.heapUsedBytes).filter((x): x is number => x !== null));
  report.heapEndBytes = median(last.map((s) => s.heapUsedBytes).filter((x): x is number => x !== null));
  if (report.rssStartBytes && report.rssEndBytes) report.rssGrowthPercent = (100 * (report.rssEndBytes - report.rssStartBytes)) / report.rssStartBytes;
  report.finishedAt = new Date().toISOString();
  report.targets = { zeroLost: report.lost === 0, rssGrowthUnder10Percent: report.rssGrowthPercent === null ? null : report.rssGrowthPercent < 10 };
  return report;
}

export function formatReport(r: SoakReport): string {
  const mib = (b: number | null) => (b === null ? '?' : `${(b / 2 ** 20).toFixed(1)} MiB`);
  const lines = [
    `soak ${r.startedAt} -> ${r.finishedAt} (${r.durationS} s, warm-up ${r.warmupS} s, ${r.concurrency} workers)`,
    `requests           ${r.requests}`,
    `completed          ${r.completed} (${r.completedTokens} tokens)`,
    `aborted by client  ${r.abortedByClient}`,
    `failed with answer ${r.failedWithAnswer} ${JSON.stringify(r.errorsByCode)}`,
    `lost               ${r.lost}${r.lostExamples.length ? `\n  ${r.lostExamples.join('\n  ')}` : ''}`,
    `adapters           +${r.adaptersRegistered} / -${r.adaptersRemoved} via the admin API; admin errors ${JSON.stringify(r.adminErrorsByCode)}`,
    `rss                start ${mib(r.rssStartBytes)} (after warm-up), end ${mib(r.rssEndBytes)}, max ${mib(r.rssMaxBytes)}, growth ${r.rssGrowthPercent === null ? '?' : `${r.rssGrowthPercent.toFixed(2)}%`}`,
    `heap used          start ${mib(r.heapStartBytes)}, end ${mib(r.heapEndBytes)}`,
    `server at rest     queue ${r.idleAfter.queueDepth}, batch ${r.idleAfter.batchSize}, adapter refs ${r.idleAfter.adaptersInUse}`,
    `targets            zero lost: ${r.targets.zeroLost ? 'met' : 'MISSED'}; rss growth < 10%: ${r.targets.rssGrowthUnder10Percent === null ? 'unknown' : r.targets.rssGrowthUnder10Percent ? 'met' : 'MISSED'}`,
  ];
  return `${lines.join('\n')}\n`;
}
