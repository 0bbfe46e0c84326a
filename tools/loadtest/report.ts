/**
 * Turns the outcomes of a run into the report (written as report.json, rendered as HTML).
 */
import type { LoadTestOptions } from './args.js';
import { CLIENT_ERROR_CODES, type RequestOutcome } from './client.js';
import type { RunResult } from './run.js';
import { binCounts, histogramEdges, summarize, type Summary, type TimelineBucket } from './stats.js';

export const REPORT_VERSION = 1;

export const TTFT_NOTE_NON_STREAMING =
  'Non-streaming run: the whole answer arrives at once, so time to first token equals total latency. Use --stream to measure it separately.';
export const TTFT_NOTE_STREAMING = 'Streaming run: time to first token is measured at the first token event.';

export interface GroupStats {
  /** Finished requests (ok + errors). */
  requests: number;
  ok: number;
  errors: number;
  errorRate: number;
  /** Finished requests per second of the run's elapsed time, and the ok ones. */
  requestsPerSec: number;
  okRequestsPerSec: number;
  /** Generated tokens (usage.completion_tokens; for broken-off streams, the token events received). */
  generatedTokens: number;
  tokensPerSec: number;
  /** Sum of usage.prompt_tokens over ok requests that reported it. */
  promptTokens: number;
  /** Over ok requests only. */
  ttftMs: Summary | null;
  latencyMs: Summary | null;
  /** Streaming only: (latency − ttft) / (tokens − 1) per ok request with at least 2 tokens. */
  timePerOutputTokenMs: Summary | null;
  completionTokensPerRequest: Summary | null;
  promptTokensPerRequest: Summary | null;
  errorsByCode: Record<string, number>;
  errorsByStatus: Record<string, number>;
  finishReasons: Record<string, number>;
  routes: Record<string, number>;
}

export interface SharedHistogram {
  unit: 'ms';
  edges: number[];
  counts: number[];
  countsByAdapter: Record<string, number[]>;
}

export interface LoadTestReport {
  version: number;
  tool: 'lora-inference-server loadtest';
  startedAt: string;
  finishedAt: string;
  config: {
    url: string;
    adapters: { label: string; adapter: string | null; weight: number; share: number }[];
    concurrency: number;
    durationS: number;
    maxRequests: number | null;
    stream: boolean;
    promptTokens: { min: number; max: number };
    maxTokens: number;
    route: string | null;
    temperature: number | null;
    ignoreEos: boolean;
    seed: number;
    timeoutS: number;
    honorRetryAfter: boolean;
  };
  run: {
    /** From the first request sent to the last one finished. Rates divide by this. */
    elapsedS: number;
    issueEndS: number;
    endS: number;
    stoppedBy: RunResult['stoppedBy'];
    abortedInFlight: number;
  };
  notes: {
    ttft: string;
    percentiles: string;
    latency: string;
  };
  overall: GroupStats;
  perAdapter: Record<string, GroupStats>;
  /** Meaning of the error codes the load tester makes up itself (server codes pass through). */
  clientErrorCodes: Record<string, string>;
  histograms: {
    latencyMs: SharedHistogram | null;
    ttftMs: SharedHistogram | null;
  };
  timeline: TimelineBucket[];
  /** Up to 5 distinct error messages per code, to see what went wrong. */
  errorSamples: Record<string, string[]>;
}

function increment(rec: Record<string, number>, key: string, by = 1): void {
  rec[key] = (rec[key] ?? 0) + by;
}

export function groupStats(outcomes: readonly RequestOutcome[], elapsedS: number, stream: boolean): GroupStats {
  const ok = outcomes.filter((x) => x.ok);
  const errorsByCode: Record<string, number> = {};
  const errorsByStatus: Record<string, number> = {};
  const finishReasons: Record<string, number> = {};
  const routes: Record<string, number> = {};
  let generatedTokens = 0;
  let promptTokens = 0;
  for (const x of outcomes) {
    generatedTokens += x.completionTokens;
    if (!x.ok) {
      increment(errorsByCode, x.errorCode ?? 'unknown');
      increment(errorsByStatus, String(x.status));
    }
  }
  for (const x of ok) {
    if (x.promptTokens !== null) promptTokens += x.promptTokens;
    if (x.finishReason !== null) increment(finishReasons, x.finishReason);
    if (x.route !== null) increment(routes, x.route);
  }
  const tpot: number[] = [];
  if (stream) {
    for (const x of ok) {
      if (x.ttftMs !== null && x.completionTokens >= 2) tpot.push((x.latencyMs - x.ttftMs) / (x.completionTokens - 1));
    }
  }
  const rate = (n: number) => (elapsedS > 0 ? n / elapsedS : 0);
  return {
    requests: outcomes.length,
    ok: ok.length,
    errors: outcomes.length - ok.length,
    errorRate: outcomes.length ? (outcomes.length - ok.length) / outcomes.length : 0,
    requestsPerSec: rate(outcomes.length),
    okRequestsPerSec: rate(ok.length),
    generatedTokens,
    tokensPerSec: rate(generatedTokens),
    promptTokens,
    ttftMs: summarize(ok.flatMap((x) => (x.ttftMs === null ? [] : [x.ttftMs]))),
    latencyMs: summarize(ok.map((x) => x.latencyMs)),
    timePerOutputTokenMs: stream ? summarize(tpot) : null,
    completionTokensPerRequest: summarize(ok.map((x) => x.completionTokens)),
    promptTokensPerRequest: summarize(ok.flatMap((x) => (x.promptTokens === null ? [] : [x.promptTokens]))),
    errorsByCode,
    errorsByStatus,
    finishReasons,
    routes,
  };
}

function sharedHistogram(outcomes: readonly RequestOutcome[], labels: readonly string[], pick: (x: RequestOutcome) => number | null): SharedHistogram | null {
  const values: number[] = [];
  const byLabel: Record<string, number[]> = {};
  for (const l of labels) byLabel[l] = [];
  for (const x of outcomes) {
    if (!x.ok) continue;
    const v = pick(x);
    if (v === null) continue;
    values.push(v);
    (byLabel[x.adapter] ??= []).push(v);
  }
  if (values.length === 0) return null;
  const edges = histogramEdges(values, 24);
  const countsByAdapter: Record<string, number[]> = {};
  for (const [l, vs] of Object.entries(byLabel)) countsByAdapter[l] = binCounts(vs, edges);
  return { unit: 'ms', edges, counts: binCounts(values, edges), countsByAdapter };
}

export function buildReport(o: LoadTestOptions, r: RunResult): LoadTestReport {
  const labels = o.adapters.map((a) => a.label);
  const totalWeight = o.adapters.reduce((s, a) => s + a.weight, 0);
  const perAdapter: Record<string, GroupStats> = {};
  for (const l of labels) {
    perAdapter[l] = groupStats(
      r.outcomes.filter((x) => x.adapter === l),
      r.elapsedS,
      o.stream,
    );
  }
  const errorSamples: Record<string, string[]> = {};
  for (const x of r.outcomes) {
    if (x.ok || x.errorMessage === null) continue;
    const list = (errorSamples[x.errorCode ?? 'unknown'] ??= []);
    if (list.length < 5 && !list.includes(x.errorMessage)) list.push(x.errorMessage);
  }
  return {
    version: REPORT_VERSION,
    tool: 'lora-inference-server loadtest',
    startedAt: r.startedAt.toISOString(),
    finishedAt: r.finishedAt.toISOString(),
    config: {
      url: o.url,
      adapters: o.adapters.map((a) => ({ ...a, share: a.weight / totalWeight })),
      concurrency: o.concurrency,
      durationS: o.durationS,
      maxRequests: o.maxRequests,
      stream: o.stream,
      promptTokens: { ...o.promptTokens },
      maxTokens: o.maxTokens,
      route: o.route,
      temperature: o.temperature,
      ignoreEos: o.ignoreEos,
      seed: o.seed,
      timeoutS: o.timeoutS,
      honorRetryAfter: o.honorRetryAfter,
    },
    run: {
      elapsedS: r.elapsedS,
      issueEndS: r.issueEndS,
      endS: r.endS,
      stoppedBy: r.stoppedBy,
      abortedInFlight: r.abortedInFlight,
    },
    notes: {
      ttft: o.stream ? TTFT_NOTE_STREAMING : TTFT_NOTE_NON_STREAMING,
      percentiles: 'Percentiles interpolate linearly between the nearest ranks (numpy "linear").',
      latency:
        'Latency and time-to-first-token figures cover successful requests only. Rates divide by the elapsed time from the first request sent to the last one finished; requests in flight when the duration ran out were waited for and are counted.',
    },
    overall: groupStats(r.outcomes, r.elapsedS, o.stream),
    perAdapter,
    clientErrorCodes: { ...CLIENT_ERROR_CODES },
    histograms: {
      latencyMs: sharedHistogram(r.outcomes, labels, (x) => x.latencyMs),
      ttftMs: o.stream ? sharedHistogram(r.outcomes, labels, (x) => x.ttftMs) : null,
    },
    timeline: r.timeline.toArray(r.endS * 1000),
    errorSamples,
  };
}

/** A plain-text summary for the terminal. */
export function formatSummary(report: LoadTestReport): string {
  const ms = (s: Summary | null, k: 'p50' | 'p90' | 'p99') => (s ? `${Math.round(s[k])}` : '-');
  const lines: string[] = [];
  const c = report.config;
  lines.push(
    `${c.url}  concurrency ${c.concurrency}  ${report.run.elapsedS.toFixed(1)} s  ${c.stream ? 'streaming' : 'non-streaming'}  max_tokens ${c.maxTokens}`,
  );
  const header = ['adapter', 'requests', 'errors', 'req/s', 'tok/s', 'ttft p50/p90/p99 ms', 'latency p50/p90/p99 ms'];
  const rows: string[][] = [header];
  const row = (name: string, g: GroupStats) => [
    name,
    String(g.requests),
    String(g.errors),
    g.requestsPerSec.toFixed(2),
    g.tokensPerSec.toFixed(1),
    `${ms(g.ttftMs, 'p50')}/${ms(g.ttftMs, 'p90')}/${ms(g.ttftMs, 'p99')}`,
    `${ms(g.latencyMs, 'p50')}/${ms(g.latencyMs, 'p90')}/${ms(g.latencyMs, 'p99')}`,
  ];
  for (const [name, g] of Object.entries(report.perAdapter)) rows.push(row(name, g));
  rows.push(row('ALL', report.overall));
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) lines.push(r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));
  if (!c.stream) lines.push(`note: ${report.notes.ttft}`);
  const errs = Object.entries(report.overall.errorsByCode);
  if (errs.length) lines.push(`errors by code: ${errs.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  return lines.join('\n');
}
