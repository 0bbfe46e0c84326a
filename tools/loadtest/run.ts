/**
 * The client loop: `concurrency` workers, each sending its next request when the previous one
 * finished (a closed loop), until the duration is over or --requests were sent.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LoadTestOptions } from './args.js';
import { sendGenerate, type RequestOutcome, type RequestSettings } from './client.js';
import { RequestPlanner } from './prompts.js';
import { percentile, Timeline } from './stats.js';

export interface ProgressSnapshot {
  elapsedS: number;
  durationS: number;
  issued: number;
  finished: number;
  errors: number;
  inFlight: number;
  tokens: number;
  /** Finished requests / generated tokens within the last interval. */
  intervalS: number;
  intervalFinished: number;
  intervalTokens: number;
  /** p50 total latency of the requests finished within the last interval, ms. */
  intervalP50LatencyMs: number | null;
}

export interface RunHooks {
  /** Called about once a second while the run lasts. */
  onProgress?(p: ProgressSnapshot): void;
  progressIntervalMs?: number;
  /** Stops issuing and aborts requests in flight; what finished is still returned. */
  signal?: AbortSignal;
}

export interface RunResult {
  startedAt: Date;
  finishedAt: Date;
  /** From the first request sent to the last one finished, seconds. */
  elapsedS: number;
  /** When the load tester stopped sending new requests, seconds since start. */
  issueEndS: number;
  /** When the last request finished, seconds since start (the timeline's end). */
  endS: number;
  stoppedBy: 'duration' | 'requests' | 'signal';
  outcomes: RequestOutcome[];
  /** Requests that were in flight when the run was stopped by the signal (not in outcomes). */
  abortedInFlight: number;
  timeline: Timeline;
}

export function formatProgress(p: ProgressSnapshot): string {
  const rate = (n: number) => (p.intervalS > 0 ? n / p.intervalS : 0);
  const lat = p.intervalP50LatencyMs === null ? '-' : `${Math.round(p.intervalP50LatencyMs)} ms`;
  return (
    `[${p.elapsedS.toFixed(0).padStart(4)}s/${p.durationS}s] ` +
    `done ${p.finished} (${rate(p.intervalFinished).toFixed(1)} req/s) ` +
    `tokens ${p.tokens} (${rate(p.intervalTokens).toFixed(0)} tok/s) ` +
    `errors ${p.errors} in flight ${p.inFlight} p50 latency ${lat}`
  );
}

export async function runLoadTest(o: LoadTestOptions, hooks: RunHooks = {}): Promise<RunResult> {
  const planner = new RequestPlanner(o.adapters, o.promptTokens, o.seed);
  const timeline = new Timeline(o.adapters.map((a) => a.label));
  const settings: RequestSettings = {
    baseUrl: o.url,
    stream: o.stream,
    route: o.route,
    maxTokens: o.maxTokens,
    temperature: o.temperature,
    ignoreEos: o.ignoreEos,
    timeoutMs: o.timeoutS * 1000,
    apiKey: o.apiKey,
  };
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const startedAt = new Date();
  const deadlineMs = o.durationS * 1000;
  const outcomes: RequestOutcome[] = [];
  const stop = new AbortController();
  const signal = hooks.signal ? AbortSignal.any([hooks.signal, stop.signal]) : stop.signal;

  let issued = 0;
  let inFlight = 0;
  let errors = 0;
  let tokens = 0;
  let abortedInFlight = 0;
  let issueEndMs: number | null = null;
  let stoppedBy: RunResult['stoppedBy'] = 'duration';

  // Progress bookkeeping.
  let lastTickMs = 0;
  let intervalFinished = 0;
  let intervalTokens = 0;
  let intervalLatencies: number[] = [];

  const countTokens = (label: string, n: number, at: number) => {
    timeline.addTokens(at, label, n);
    tokens += n;
    intervalTokens += n;
  };

  const mayIssue = (): boolean => {
    if (issueEndMs !== null) return false;
    if (hooks.signal?.aborted) {
      stoppedBy = 'signal';
    } else if (o.maxRequests !== null && issued >= o.maxRequests) {
      stoppedBy = 'requests';
    } else if (now() >= deadlineMs) {
      stoppedBy = 'duration';
    } else {
      return true;
    }
    issueEndMs = now();
    return false;
  };

  const onStop = () => {
    if (issueEndMs === null) {
      issueEndMs = now();
      stoppedBy = 'signal';
    }
  };
  if (hooks.signal?.aborted) onStop();
  else hooks.signal?.addEventListener('abort', onStop, { once: true });

  const worker = async () => {
    while (mayIssue()) {
      const planned = planner.next();
      issued++;
      inFlight++;
      let outcome: RequestOutcome;
      try {
        outcome = await sendGenerate(planned, settings, {
          now,
          signal,
          onTokens: o.stream ? (n, at) => countTokens(planned.entry.label, n, at) : undefined,
        });
      } catch (e) {
        inFlight--;
        if (signal.aborted) {
          abortedInFlight++;
          return;
        }
        throw e;
      }
      inFlight--;
      const end = outcome.startMs + outcome.latencyMs;
      if (!o.stream) countTokens(outcome.adapter, outcome.completionTokens, end);
      timeline.addFinished(end, outcome.adapter, outcome.ok);
      outcomes.push(outcome);
      intervalFinished++;
      if (outcome.ok) intervalLatencies.push(outcome.latencyMs);
      else errors++;
      if (o.honorRetryAfter && !outcome.ok && outcome.retryAfterS !== null && outcome.retryAfterS > 0 && (outcome.status === 429 || outcome.status === 503)) {
        const wait = outcome.retryAfterS * 1000;
        // A pause that reaches past the deadline ends this client's part of the run.
        if (wait >= deadlineMs - now()) return;
        await sleep(wait, undefined, { signal }).catch(() => undefined);
      }
    }
  };

  const tick = () => {
    const at = now();
    const intervalS = (at - lastTickMs) / 1000;
    const sorted = intervalLatencies.sort((a, b) => a - b);
    hooks.onProgress?.({
      elapsedS: at / 1000,
      durationS: o.durationS,
      issued,
      finished: outcomes.length,
      errors,
      inFlight,
      tokens,
      intervalS,
      intervalFinished,
      intervalTokens,
      intervalP50LatencyMs: sorted.length ? percentile(sorted, 50) : null,
    });
    lastTickMs = at;
    intervalFinished = 0;
    intervalTokens = 0;
    intervalLatencies = [];
  };
  const timer = hooks.onProgress ? setInterval(tick, hooks.progressIntervalMs ?? 1000) : null;

  try {
    await Promise.all(Array.from({ length: o.concurrency }, () => worker()));
  } finally {
    if (timer) clearInterval(timer);
    hooks.signal?.removeEventListener('abort', onStop);
    stop.abort();
  }
  // A closing progress line, unless a tick just gave the same counts: the last line always has the final count.
  if (hooks.onProgress && (intervalFinished > 0 || now() - lastTickMs > 50)) tick();
  const endMs = now();
  const firstStart = outcomes.reduce((m, x) => Math.min(m, x.startMs), Infinity);
  outcomes.sort((a, b) => a.index - b.index);
  return {
    startedAt,
    finishedAt: new Date(),
    elapsedS: outcomes.length ? (endMs - firstStart) / 1000 : endMs / 1000,
    issueEndS: (issueEndMs ?? endMs) / 1000,
    endS: endMs / 1000,
    stoppedBy,
    outcomes,
    abortedInFlight,
    timeline,
  };
}

/** Polls GET /readyz until it answers 200 or `waitS` runs out. Returns whether it got a 200. */
export async function waitReady(baseUrl: string, waitS: number, signal?: AbortSignal): Promise<boolean> {
  const deadline = performance.now() + waitS * 1000;
  for (;;) {
    try {
      const res = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      if (res.status === 200) return true;
    } catch {
      // not up yet
    }
    if (signal?.aborted || performance.now() + 500 > deadline) return false;
    await sleep(500, undefined, { signal }).catch(() => undefined);
  }
}
