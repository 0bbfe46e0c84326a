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
  /** The wait queue is at its bound. */
  'queue_full',
  /** The caller cancelled (client went away). */
  'cancelled',
  /** The request ran past its deadline. */
  'timeout',
  /** The engine is still starting, or has failed to start. */
  'not_ready',
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
}

export class EngineError extends Error {
  readonly code: EngineErrorCode;
  readonly retryAfterSeconds?: number;

  constructor(code: EngineErrorCode, message: string, options: { retryAfterSeconds?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'EngineError';
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  toData(): EngineErrorData {
    return { code: this.code, message: this.message, ...(this.retryAfterSeconds !== undefined ? { retryAfterSeconds: this.retryAfterSeconds } : {}) };
  }

  static fromData(data: EngineErrorData): EngineError {
    return new EngineError(data.code, data.message, { retryAfterSeconds: data.retryAfterSeconds });
  }
}

export function isEngineError(e: unknown): e is EngineError {
  return e instanceof EngineError;
}
