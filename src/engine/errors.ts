/**
 * The engine's own typed errors. The engine knows nothing of HTTP: it says what went wrong with a stable
 * engine code; the routes decide which HTTP status and client-facing code that is (src/routes/engine-errors.ts).
 * Plain data (code, message, retryAfterSeconds) so an error survives the worker-thread boundary.
 */

export const ENGINE_ERROR_CODES = [
  /** The request itself is wrong (empty prompt, token id outside the vocabulary). */
  'invalid_request',
  /** Prompt + max_tokens exceed the context the engine serves. */
  'context_length_exceeded',
  /** Prompt + max_tokens could never fit the KV-cache memory budget, even alone. */
  'kv_budget_exceeded',
  'invalid_adapter_name',
  'adapter_not_found',
  'adapter_errored',
  'adapter_in_use',
  'adapter_exists',
  /** The remote adapter store (S3) failed: unreachable, throttled, a missing bucket (retry later). */
  'adapter_store_unavailable',
  /** The remote adapter store refused the server's credentials (an operator must fix its IAM role). */
  'adapter_store_denied',
  /** The wait queue is at its bound. */
  'queue_full',
  /** The caller cancelled (client went away). */
  'cancelled',
  /** The request ran past its deadline. */
  'timeout',
  /** The engine is still starting. */
  'not_ready',
  /** The engine failed to start, or its worker stopped: no model to serve. */
  'unavailable',
  /** The engine is stopping: no new work. */
  'shutting_down',
  /** The model failed while running this request. */
  'internal',
] as const;

export type EngineErrorCode = (typeof ENGINE_ERROR_CODES)[number];

export interface EngineErrorData {
  code: EngineErrorCode;
  message: string;
  retryAfterSeconds?: number;
  /** The request parameter at fault, where one is (e.g. `response_format.json_schema.schema`). */
  param?: string;
}

export class EngineError extends Error {
  readonly code: EngineErrorCode;
  readonly retryAfterSeconds?: number;
  readonly param?: string;

  constructor(code: EngineErrorCode, message: string, options: { retryAfterSeconds?: number; param?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'EngineError';
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.param = options.param;
  }

  toData(): EngineErrorData {
    return {
      code: this.code,
      message: this.message,
      ...(this.retryAfterSeconds !== undefined ? { retryAfterSeconds: this.retryAfterSeconds } : {}),
      ...(this.param !== undefined ? { param: this.param } : {}),
    };
  }

  static fromData(data: EngineErrorData): EngineError {
    return new EngineError(data.code, data.message, { retryAfterSeconds: data.retryAfterSeconds, param: data.param });
  }
}

export function isEngineError(e: unknown): e is EngineError {
  return e instanceof EngineError;
}

const ENGINE_CODES = new Set<string>(ENGINE_ERROR_CODES);

/**
 * Any error thrown inside the engine as EngineError data, for the worker boundary. An error that carries a
 * `code` (e.g. one thrown by code not yet converted to EngineError) keeps it when it is an engine code;
 * `request_timeout` is `cancelled` when the caller cancelled, `timeout` otherwise; anything else is
 * `internal` with a generic message (details stay in the worker's log).
 */
export function toEngineErrorData(e: unknown, cancelled = false): EngineErrorData {
  if (e instanceof EngineError) return e.toData();
  const err = e as { code?: unknown; message?: unknown; retryAfter?: unknown } | null;
  const code = typeof err?.code === 'string' ? err.code : null;
  const message = typeof err?.message === 'string' ? err.message : 'The engine failed.';
  const retryAfterSeconds = typeof err?.retryAfter === 'number' ? err.retryAfter : undefined;
  const withRetry = retryAfterSeconds !== undefined ? { retryAfterSeconds } : {};
  if (code === 'request_timeout') return { code: cancelled ? 'cancelled' : 'timeout', message };
  if (code === 'internal_error') return { code: 'internal', message };
  if (code === 'model_not_ready') return { code: 'not_ready', message, ...withRetry };
  if (code === 'model_unavailable') return { code: 'unavailable', message };
  if (code !== null && ENGINE_CODES.has(code)) return { code: code as EngineErrorCode, message, ...withRetry };
  return { code: 'internal', message: 'The engine failed while running this request.' };
}

/**
 * Start-up failures worth another try (the server retries a bounded number of times before it exits): the
 * operating system ran short of something for a moment. A checkpoint or configuration that is wrong fails the
 * same way every time.
 */
export function isTransientStartFailure(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && ['EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'EIO', 'ETIMEDOUT', 'ESTALE', 'ENOMEM'].includes(code);
}
