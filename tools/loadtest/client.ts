/**
 * One request against POST /v1/generate, streaming or not, measured.
 */
import type { PlannedRequest } from './prompts.js';

export interface RequestSettings {
  /** Server base URL (no trailing slash). */
  baseUrl: string;
  stream: boolean;
  /** `route` query parameter, or null for none. */
  route?: string | null;
  maxTokens: number;
  temperature: number | null;
  ignoreEos: boolean;
  timeoutMs: number;
  /** Sent as `Authorization: Bearer`; null for a server without keys. */
  apiKey?: string | null;
}

export interface RequestOutcome {
  index: number;
  /** Adapter label ("base" for no adapter). */
  adapter: string;
  /** When the request was sent, ms since the start of the run. */
  startMs: number;
  /** Until the first token event (streaming) or the whole response (non-streaming); null on errors before a token. */
  ttftMs: number | null;
  /** Until the response (or stream) was complete, or the error. */
  latencyMs: number;
  ok: boolean;
  /** HTTP status; 0 when there was no HTTP response (connection error, timeout). */
  status: number;
  /** Server error code from {"error":{"code"}}, or one of the client-side codes below; null when ok. */
  errorCode: string | null;
  errorMessage: string | null;
  /** Seconds from Retry-After, if sent. */
  retryAfterS: number | null;
  targetPromptTokens: number;
  /** usage.prompt_tokens, if the server sent it. */
  promptTokens: number | null;
  /** usage.completion_tokens, or the token events counted when a stream broke off. */
  completionTokens: number;
  finishReason: string | null;
  route: string | null;
}

/** Client-side error codes (the server's own codes are passed through). */
export const CLIENT_ERROR_CODES = {
  timeout: 'no complete answer within --timeout',
  network_error: 'connection failed or was reset',
  bad_response: 'the response was not the JSON / event stream the API promises',
  stream_incomplete: 'the event stream ended before the final event with finish_reason',
  stream_error: 'an error event without a code in the stream',
} as const;

export interface RequestHooks {
  /** Monotonic ms since the start of the run. */
  now(): number;
  /** Streaming: called for each token event as it arrives. */
  onTokens?(n: number, atMs: number): void;
  /** Aborts the request when the run is stopped. */
  signal?: AbortSignal;
}

export function buildGenerateUrl(baseUrl: string, adapter: string | null, route: string | null = null): string {
  const u = new URL(`${baseUrl}/v1/generate`);
  if (adapter !== null) u.searchParams.set('adapter', adapter);
  if (route !== null) u.searchParams.set('route', route);
  return u.toString();
}

/** Header the server sets to say which route answered (the body's `route` wins when present). */
export const ROUTE_HEADER = 'x-inference-route';

export function buildBody(req: PlannedRequest, s: RequestSettings): Record<string, unknown> {
  const body: Record<string, unknown> = { prompt: req.prompt, max_tokens: s.maxTokens, stream: s.stream };
  if (s.temperature !== null) {
    body.temperature = s.temperature;
    if (s.temperature > 0) body.seed = req.seed;
  }
  if (s.ignoreEos) body.ignore_eos = true;
  return body;
}

/** Retry-After is delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, nowDate: number = Date.now()): number | null {
  if (value === null || value.trim() === '') return null;
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value);
  const t = Date.parse(value);
  if (Number.isNaN(t)) return null;
  return Math.max(0, (t - nowDate) / 1000);
}

class OutcomeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Usage {
  prompt_tokens?: unknown;
  completion_tokens?: unknown;
}

function num(x: unknown): number | null {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

function str(x: unknown): string | null {
  return typeof x === 'string' ? x : null;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Splits an SSE byte stream into the `data:` payloads of its events. */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = '';
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let end: number;
      while ((end = buf.indexOf('\n\n')) !== -1) {
        const event = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = eventData(event);
        if (data !== null) yield data;
      }
    }
    buf += decoder.decode();
    const data = eventData(buf.replace(/\r\n?/g, '\n'));
    if (data !== null) yield data;
  } finally {
    reader.releaseLock();
  }
}

function eventData(event: string): string | null {
  const lines: string[] = [];
  for (const line of event.split('\n')) {
    if (line.startsWith('data:')) lines.push(line.slice(line[5] === ' ' ? 6 : 5));
  }
  return lines.length ? lines.join('\n') : null;
}

/**
 * Sends one request and measures it. Never throws for server or network trouble: that is an
 * outcome with ok = false. Throws only when `hooks.signal` aborted it (the run was stopped).
 */
export async function sendGenerate(req: PlannedRequest, s: RequestSettings, hooks: RequestHooks): Promise<RequestOutcome> {
  const startMs = hooks.now();
  const outcome: RequestOutcome = {
    index: req.index,
    adapter: req.entry.label,
    startMs,
    ttftMs: null,
    latencyMs: 0,
    ok: false,
    status: 0,
    errorCode: null,
    errorMessage: null,
    retryAfterS: null,
    targetPromptTokens: req.targetPromptTokens,
    promptTokens: null,
    completionTokens: 0,
    finishReason: null,
    route: null,
  };
  const timeout = AbortSignal.timeout(s.timeoutMs);
  const signal = hooks.signal ? AbortSignal.any([hooks.signal, timeout]) : timeout;
  let res: Response | undefined;
  try {
    res = await fetch(buildGenerateUrl(s.baseUrl, req.entry.adapter, s.route ?? null), {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: s.stream ? 'text/event-stream' : 'application/json',
        ...(s.apiKey ? { authorization: `Bearer ${s.apiKey}` } : {}),
      },
      body: JSON.stringify(buildBody(req, s)),
      signal,
    });
    outcome.status = res.status;
    outcome.retryAfterS = parseRetryAfter(res.headers.get('retry-after'));
    outcome.route = res.headers.get(ROUTE_HEADER);
    if (!res.ok) {
      const text = await res.text();
      let code = `http_${res.status}`;
      let message = text.slice(0, 300);
      try {
        const j: unknown = JSON.parse(text);
        if (isRecord(j) && isRecord(j.error)) {
          code = str(j.error.code) ?? code;
          message = str(j.error.message) ?? message;
        }
      } catch {
        // not JSON: keep http_<status>
      }
      throw new OutcomeError(code, message);
    }
    const contentType = res.headers.get('content-type') ?? '';
    if (s.stream && contentType.includes('text/event-stream')) {
      await readStream(res, outcome, hooks);
    } else {
      if (s.stream) {
        throw new OutcomeError('bad_response', `asked for a stream, got content-type "${contentType}"`);
      }
      let j: unknown;
      try {
        j = await res.json();
      } catch (e) {
        if (signal.aborted) throw e;
        throw new OutcomeError('bad_response', 'the response body is not JSON');
      }
      if (!isRecord(j) || (!Array.isArray(j.token_ids) && typeof j.text !== 'string')) {
        throw new OutcomeError('bad_response', 'the response has neither text nor token_ids');
      }
      outcome.latencyMs = hooks.now() - startMs;
      outcome.ttftMs = outcome.latencyMs;
      readFinal(j, outcome);
      if (outcome.completionTokens === 0 && Array.isArray(j.token_ids)) outcome.completionTokens = j.token_ids.length;
    }
    outcome.ok = true;
  } catch (e) {
    outcome.latencyMs = hooks.now() - startMs;
    // Free the connection when the body was left unread (error event, bad event).
    if (res?.body && !res.body.locked) await res.body.cancel().catch(() => undefined);
    if (hooks.signal?.aborted) throw e;
    if (e instanceof OutcomeError) {
      outcome.errorCode = e.code;
      outcome.errorMessage = e.message;
    } else if (timeout.aborted) {
      outcome.errorCode = 'timeout';
      outcome.errorMessage = `no complete answer within ${s.timeoutMs} ms`;
    } else {
      outcome.errorCode = 'network_error';
      outcome.errorMessage = describeFetchError(e);
    }
  }
  return outcome;
}

function readFinal(j: Record<string, unknown>, outcome: RequestOutcome): void {
  outcome.finishReason = str(j.finish_reason) ?? outcome.finishReason;
  outcome.route = str(j.route) ?? outcome.route;
  if (isRecord(j.usage)) {
    const u = j.usage as Usage;
    outcome.promptTokens = num(u.prompt_tokens) ?? outcome.promptTokens;
    const c = num(u.completion_tokens);
    if (c !== null) outcome.completionTokens = c;
  }
}

async function readStream(res: Response, outcome: RequestOutcome, hooks: RequestHooks): Promise<void> {
  if (!res.body) throw new OutcomeError('bad_response', 'empty event stream');
  // outcome.completionTokens counts token events as they come, so a broken-off stream still
  // reports what arrived (and agrees with what hooks.onTokens was told).
  let sawFinal = false;
  let sawDone = false;
  let usageTokens: number | null = null;
  for await (const data of sseData(res.body)) {
    if (data.trim() === '[DONE]') {
      // Read on to the end of the body so the connection can be reused.
      sawDone = true;
      continue;
    }
    if (sawDone) continue;
    let ev: unknown;
    try {
      ev = JSON.parse(data);
    } catch {
      throw new OutcomeError('bad_response', `an event is not JSON: ${data.slice(0, 100)}`);
    }
    if (!isRecord(ev)) throw new OutcomeError('bad_response', 'an event is not a JSON object');
    if (isRecord(ev.error)) {
      throw new OutcomeError(str(ev.error.code) ?? 'stream_error', str(ev.error.message) ?? 'error event in the stream');
    }
    if (ev.token_id !== undefined) {
      const at = hooks.now();
      if (outcome.ttftMs === null) outcome.ttftMs = at - outcome.startMs;
      outcome.completionTokens++;
      hooks.onTokens?.(1, at);
    }
    if (ev.finish_reason !== undefined) {
      sawFinal = true;
      outcome.finishReason = str(ev.finish_reason);
      outcome.route = str(ev.route) ?? outcome.route;
      if (isRecord(ev.usage)) {
        const u = ev.usage as Usage;
        outcome.promptTokens = num(u.prompt_tokens);
        usageTokens = num(u.completion_tokens);
      }
    }
  }
  const at = hooks.now();
  outcome.latencyMs = at - outcome.startMs;
  if (!sawFinal) {
    throw new OutcomeError(
      'stream_incomplete',
      sawDone ? 'the stream sent [DONE] without a final event with finish_reason' : 'the stream ended before the final event',
    );
  }
  // A final event without [DONE] after it still carries the complete answer: counted as ok.
  if (usageTokens !== null && usageTokens !== outcome.completionTokens) {
    // Trust usage.completion_tokens; keep the per-second token counts in step with it.
    hooks.onTokens?.(usageTokens - outcome.completionTokens, at);
    outcome.completionTokens = usageTokens;
  }
}

function describeFetchError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = (e as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return `${e.message}: ${typeof code === 'string' ? `${code} ` : ''}${cause.message}`;
  }
  return e.message;
}
