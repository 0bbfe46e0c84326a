/**
 * The Bedrock fallback route: serves an adapter's requests from its Bedrock target with the real
 * AWS SDK, with a per-target deadline, retries (exponential backoff, full jitter) only while nothing
 * has been streamed to the caller, and a per-target circuit breaker.
 *
 * Credentials come from the SDK's default provider chain; this module never reads or logs them.
 */
import { BedrockRuntimeClient, type BedrockRuntimeClientConfig } from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { pino, type Logger } from 'pino';
import type { FinishEvent, FinishReason, GenerateRequest, GenerateResult, GenerationEvent, Usage } from '../engine/types.js';
import { AppError, type ErrorCode } from '../errors.js';
import { AttemptController, raceAbort, sleep } from './abortable.js';
import { DEFAULT_BACKOFF, fullJitterDelayMs, type BackoffOptions } from './backoff.js';
import type { BedrockConfig, BedrockFamily, BedrockTarget } from './bedrock-config.js';
import { CircuitBreaker, type CallPermit, type CircuitState } from './circuit-breaker.js';
import { classifyBedrockError, TargetTimeoutError, TruncatedStreamError, type BedrockFault } from './errors.js';
import { toBedrockParams } from './request-params.js';
import { StopSequenceFilter, truncateAtStop } from '../text/stop-sequences.js';
import { completeOnce, streamOnce } from './target-invoker.js';

export interface BedrockFallbackOptions {
  logger?: Logger;
  /** Builds the SDK client for one region; the default is `new BedrockRuntimeClient(config)`. */
  clientFactory?: (config: BedrockRuntimeClientConfig) => BedrockRuntimeClient;
  /** Overrides the SDK's HTTP handler (HTTP/2 by default; HTTP/1.1 is used for an http:// endpoint). */
  requestHandler?: BedrockRuntimeClientConfig['requestHandler'];
  /** Epoch milliseconds, for the circuit breakers; injectable for tests. */
  now?: () => number;
  backoff?: BackoffOptions;
}

export interface BedrockTargetStatus {
  adapter: string;
  modelId: string;
  family: BedrockFamily;
  region: string;
  circuit: CircuitState;
  consecutiveFailures: number;
  /** ISO time at which an open circuit lets a probe call through. */
  openUntil?: string;
}

export interface AdapterCounters {
  /** generate() and stream() calls. */
  calls: number;
  /** Requests sent to Bedrock (first attempts and retries). */
  attempts: number;
  retries: number;
  successes: number;
  /** Calls refused without calling Bedrock because the circuit was open. */
  circuitRejections: number;
  /** Failed calls by the error code the caller got. Caller aborts are not counted. */
  errors: Partial<Record<ErrorCode, number>>;
}

export interface BedrockCounters extends AdapterCounters {
  byAdapter: Record<string, AdapterCounters>;
}

interface TargetState {
  adapter: string;
  target: BedrockTarget;
  breaker: CircuitBreaker;
  counters: AdapterCounters;
}

function emptyCounters(): AdapterCounters {
  return { calls: 0, attempts: 0, retries: 0, successes: 0, circuitRejections: 0, errors: {} };
}

export class BedrockFallback {
  private readonly config: BedrockConfig;
  private readonly logger: Logger;
  private readonly options: BedrockFallbackOptions;
  private readonly backoff: BackoffOptions;
  private readonly targets = new Map<string, TargetState>();
  private readonly clients = new Map<string, BedrockRuntimeClient>();

  constructor(config: BedrockConfig, options: BedrockFallbackOptions = {}) {
    this.config = config;
    this.options = options;
    this.logger = (options.logger ?? pino({ enabled: false })).child({ component: 'bedrock-fallback' });
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    for (const [adapter, target] of Object.entries(config.targets)) {
      this.targets.set(adapter, {
        adapter,
        target,
        breaker: new CircuitBreaker({ ...config.circuitBreaker, now: options.now }),
        counters: emptyCounters(),
      });
    }
  }

  hasTarget(adapter: string | null): boolean {
    return adapter !== null && this.targets.has(adapter);
  }

  /** False while the adapter's circuit is open (a call would be refused at once). */
  isAvailable(adapter: string): boolean {
    return this.targets.get(adapter)?.breaker.state !== 'open';
  }

  async generate(req: GenerateRequest): Promise<GenerateResult> {
    const state = this.requireTarget(req.adapter);
    const { target } = state;
    const params = toBedrockParams(req, target);
    req.signal?.throwIfAborted();
    state.counters.calls++;
    const startedAt = performance.now();

    for (let attempt = 0; ; attempt++) {
      const permit = this.acquire(state);
      const call = new AttemptController(req.signal);
      call.armTimer(target.timeoutMs - (performance.now() - startedAt), () => new TargetTimeoutError(target.timeoutMs));
      try {
        state.counters.attempts++;
        const client = this.clientFor(target.region);
        const completion = await raceAbort(completeOnce(client, target, params, call.signal), call.signal);
        state.breaker.recordSuccess(permit);
        state.counters.successes++;
        const cut = truncateAtStop(completion.text, params.stop);
        return {
          text: cut.text,
          tokenIds: [],
          finishReason: cut.stopped ? 'stop' : completion.finishReason,
          usage: completion.usage,
          adapter: req.adapter,
        };
      } catch (error) {
        const fault = this.settleFailure(state, permit, error, call.signal, req.signal);
        await this.backOffOrThrow(state, fault, attempt, startedAt, req.signal);
      } finally {
        call.dispose();
      }
    }
  }

  /**
   * Streams token events (tokenId -1: Bedrock gives no ids), then one FinishEvent. Faults before the
   * first token may be retried; after it they are thrown to the consumer as AppError.
   */
  async *stream(req: GenerateRequest): AsyncGenerator<GenerationEvent, void, undefined> {
    const state = this.requireTarget(req.adapter);
    const { target } = state;
    const params = toBedrockParams(req, target);
    req.signal?.throwIfAborted();
    state.counters.calls++;
    const startedAt = performance.now();
    let firstTokenAt: number | undefined;
    let text = '';

    for (let attempt = 0; ; attempt++) {
      const permit = this.acquire(state);
      // Per attempt: a retried attempt must not inherit text held back by the failed one.
      const stops = new StopSequenceFilter(params.stop);
      let settled = false;
      const call = new AttemptController(req.signal);
      const timeout = () => new TargetTimeoutError(target.timeoutMs);
      try {
        call.armTimer(target.timeoutMs - (performance.now() - startedAt), timeout);
        state.counters.attempts++;
        const client = this.clientFor(target.region);
        const updates = (await raceAbort(streamOnce(client, target, params, call.signal), call.signal))[Symbol.asyncIterator]();

        let finishReason: FinishReason | undefined;
        let promptTokens: number | undefined;
        let completionTokens: number | undefined;
        let textEvents = 0;
        for (;;) {
          call.armTimer(target.timeoutMs, timeout);
          const next = await raceAbort(updates.next(), call.signal);
          // A slow consumer is not a slow target: the clock runs only while we wait on Bedrock.
          call.disarmTimer();
          if (next.done) break;
          const update = next.value;
          if (update.promptTokens !== undefined) promptTokens = update.promptTokens;
          if (update.completionTokens !== undefined) completionTokens = update.completionTokens;
          if (update.finishReason) finishReason = update.finishReason;
          if (update.text && !stops.stopped) {
            textEvents++;
            const released = stops.push(update.text);
            if (released) {
              firstTokenAt ??= performance.now();
              text += released;
              yield { type: 'token', tokenId: -1, text: released };
            }
          }
          if (update.end) break;
          // After our own stop, read on only as long as the final token counts are still unknown.
          if (stops.stopped && promptTokens !== undefined && completionTokens !== undefined) break;
        }
        if (!finishReason && !stops.stopped) throw new TruncatedStreamError();

        const rest = stops.flush();
        if (rest) {
          firstTokenAt ??= performance.now();
          text += rest;
          yield { type: 'token', tokenId: -1, text: rest };
        }
        settled = true;
        state.breaker.recordSuccess(permit);
        state.counters.successes++;
        yield this.finishEvent(
          stops.stopped ? 'stop' : (finishReason as FinishReason),
          { promptTokens: promptTokens ?? 0, completionTokens: completionTokens ?? textEvents },
          text,
          startedAt,
          firstTokenAt,
        );
        return;
      } catch (error) {
        settled = true;
        const fault = this.settleFailure(state, permit, error, call.signal, req.signal);
        // Once a token went out, a retry would repeat text the client already has.
        await this.backOffOrThrow(state, fault, attempt, startedAt, req.signal, firstTokenAt === undefined);
      } finally {
        // The consumer may stop early (return()); no verdict on the target then.
        if (!settled) state.breaker.release(permit);
        // Drops the upstream connection when we stopped reading before its end.
        call.abort(new Error('stream closed'));
        call.dispose();
      }
    }
  }

  /** Per-target health, for /readyz details. */
  status(): BedrockTargetStatus[] {
    return [...this.targets.values()].map(({ adapter, target, breaker }) => {
      const snapshot = breaker.snapshot();
      const status: BedrockTargetStatus = {
        adapter,
        modelId: target.modelId,
        family: target.family,
        region: target.region,
        circuit: snapshot.state,
        consecutiveFailures: snapshot.consecutiveFailures,
      };
      if (snapshot.openUntil !== undefined) status.openUntil = new Date(snapshot.openUntil).toISOString();
      return status;
    });
  }

  /** A copy of the counters, totals and per adapter, for /metrics. */
  counters(): BedrockCounters {
    const total = emptyCounters();
    const byAdapter: Record<string, AdapterCounters> = {};
    for (const { adapter, counters } of this.targets.values()) {
      byAdapter[adapter] = { ...counters, errors: { ...counters.errors } };
      total.calls += counters.calls;
      total.attempts += counters.attempts;
      total.retries += counters.retries;
      total.successes += counters.successes;
      total.circuitRejections += counters.circuitRejections;
      for (const [code, n] of Object.entries(counters.errors) as Array<[ErrorCode, number]>) {
        total.errors[code] = (total.errors[code] ?? 0) + n;
      }
    }
    return { ...total, byAdapter };
  }

  /** Closes the SDK clients' connections. */
  close(): void {
    for (const client of this.clients.values()) client.destroy();
    this.clients.clear();
  }

  private requireTarget(adapter: string | null): TargetState {
    if (adapter === null) {
      throw new AppError('invalid_request', 'The base model is served only locally; it has no Bedrock target.');
    }
    const state = this.targets.get(adapter);
    if (!state) throw new AppError('adapter_not_found', `Adapter "${adapter}" has no Bedrock target.`);
    return state;
  }

  private acquire(state: TargetState): CallPermit {
    const permit = state.breaker.tryAcquire();
    if (permit) return permit;
    state.counters.circuitRejections++;
    const error = new AppError('upstream_unavailable', `${describe(state.adapter)} is failing; calls to it are paused for a cool-down.`, {
      retryAfter: Math.max(1, Math.ceil(state.breaker.msUntilProbe() / 1000)),
    });
    state.counters.errors[error.code] = (state.counters.errors[error.code] ?? 0) + 1;
    throw error;
  }

  /** Classifies a failed attempt and tells the breaker; a caller abort is rethrown as is. */
  private settleFailure(
    state: TargetState,
    permit: CallPermit,
    error: unknown,
    attemptSignal: AbortSignal,
    callerSignal: AbortSignal | undefined,
  ): BedrockFault {
    if (callerSignal?.aborted) {
      state.breaker.release(permit);
      throw callerSignal.reason;
    }
    // The SDK may reject with its own AbortError; the reason says whether our deadline fired.
    const cause = attemptSignal.aborted && attemptSignal.reason instanceof TargetTimeoutError ? attemptSignal.reason : error;
    const fault = classifyBedrockError(cause, describe(state.adapter));
    const wasOpen = state.breaker.state === 'open';
    if (fault.countsAsFailure) state.breaker.recordFailure(permit);
    else state.breaker.release(permit);
    if (!wasOpen && state.breaker.state === 'open') {
      this.logger.error(
        { adapter: state.adapter, modelId: state.target.modelId, openUntil: state.breaker.snapshot().openUntil },
        'Bedrock target circuit opened',
      );
    }
    return fault;
  }

  /**
   * After a failed attempt, the one retry policy of generate() and stream(): waits the backoff and returns when the
   * fault is retryable, retries are left and the wait ends before the target's deadline; throws the mapped error
   * otherwise.
   */
  private async backOffOrThrow(
    state: TargetState,
    fault: BedrockFault,
    attempt: number,
    startedAt: number,
    signal: AbortSignal | undefined,
    mayRetry = true,
  ): Promise<void> {
    if (mayRetry && fault.retryable && attempt < state.target.maxRetries) {
      const delayMs = fullJitterDelayMs(attempt + 1, this.backoff);
      if (performance.now() - startedAt + delayMs < state.target.timeoutMs) {
        this.noteRetry(state, fault, attempt, delayMs);
        await sleep(delayMs, signal);
        return;
      }
    }
    throw this.fail(state, fault, attempt);
  }

  private noteRetry(state: TargetState, fault: BedrockFault, attempt: number, delayMs: number): void {
    state.counters.retries++;
    this.logger.warn(
      { adapter: state.adapter, modelId: state.target.modelId, code: fault.error.code, upstream: upstreamDetails(fault), attempt, delayMs },
      'Bedrock call failed; retrying',
    );
  }

  private fail(state: TargetState, fault: BedrockFault, attempt: number): AppError {
    const { code } = fault.error;
    state.counters.errors[code] = (state.counters.errors[code] ?? 0) + 1;
    this.logger.warn(
      { adapter: state.adapter, modelId: state.target.modelId, code, upstream: upstreamDetails(fault), attempts: attempt + 1 },
      'Bedrock call failed',
    );
    return fault.error;
  }

  private finishEvent(finishReason: FinishReason, usage: Usage, text: string, startedAt: number, firstTokenAt: number | undefined): FinishEvent {
    const totalMs = performance.now() - startedAt;
    const prefillMs = (firstTokenAt ?? performance.now()) - startedAt;
    return {
      type: 'finish',
      finishReason,
      usage,
      text,
      tokenIds: [],
      timings: { queuedMs: 0, prefillMs, decodeMs: Math.max(0, totalMs - prefillMs), totalMs },
    };
  }

  private clientFor(region: string): BedrockRuntimeClient {
    let client = this.clients.get(region);
    if (!client) {
      const { endpoint } = this.config;
      const clientConfig: BedrockRuntimeClientConfig = {
        region,
        // Retries are ours: they must stop once a stream has started, and they feed the breaker.
        maxAttempts: 1,
      };
      if (endpoint) clientConfig.endpoint = endpoint;
      if (this.options.requestHandler) clientConfig.requestHandler = this.options.requestHandler;
      else if (endpoint?.startsWith('http:')) clientConfig.requestHandler = new NodeHttpHandler();
      client = (this.options.clientFactory ?? ((c) => new BedrockRuntimeClient(c)))(clientConfig);
      this.clients.set(region, client);
    }
    return client;
  }
}

/** Client-facing name of a target; the model ARN stays out of it because it names the AWS account. */
function describe(adapter: string): string {
  return `The Bedrock target of adapter "${adapter}"`;
}

/** What the server log gets about an upstream failure: the SDK's name, message and request id. */
function upstreamDetails(fault: BedrockFault): Record<string, unknown> {
  const cause = fault.error.cause as { name?: unknown; message?: unknown; $metadata?: { requestId?: string; httpStatusCode?: number } } | undefined;
  if (!cause || typeof cause !== 'object') return {};
  return {
    name: cause.name,
    message: typeof cause.message === 'string' ? cause.message.split('\n')[0] : undefined,
    requestId: cause.$metadata?.requestId,
    httpStatus: cause.$metadata?.httpStatusCode,
  };
}
