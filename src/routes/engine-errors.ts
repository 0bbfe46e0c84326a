/**
 * The one mapping from the engine's error codes (src/engine/errors.ts: no HTTP there) to the catalogue's
 * client-facing codes and HTTP statuses (src/errors.ts). The app's error handler, the OpenAI error handler
 * and the SSE error events all render engine errors through here.
 */
import { AppError, type ErrorCode } from '../errors.js';
import { EngineError, type EngineErrorCode } from '../engine/errors.js';

const CATALOGUE_CODE: Record<EngineErrorCode, ErrorCode> = {
  invalid_request: 'invalid_request',
  context_length_exceeded: 'context_length_exceeded',
  // Prompt + max_tokens could never fit the KV-cache budget: for the client that is a context limit too.
  kv_budget_exceeded: 'context_length_exceeded',
  invalid_adapter_name: 'invalid_adapter_name',
  adapter_not_found: 'adapter_not_found',
  adapter_errored: 'adapter_errored',
  adapter_in_use: 'adapter_in_use',
  adapter_exists: 'adapter_exists',
  adapter_store_unavailable: 'adapter_store_unavailable',
  adapter_store_denied: 'adapter_store_denied',
  queue_full: 'queue_full',
  // The client went away: nobody reads the answer, but the log line and metrics say 408.
  cancelled: 'request_timeout',
  timeout: 'request_timeout',
  not_ready: 'model_not_ready',
  unavailable: 'model_unavailable',
  shutting_down: 'shutting_down',
  internal: 'internal_error',
};

/** Retry-After (seconds) where the engine did not say: the catalogue codes that invite a retry. */
const DEFAULT_RETRY_AFTER: Partial<Record<EngineErrorCode, number>> = { queue_full: 1, not_ready: 5, shutting_down: 1, adapter_store_unavailable: 5 };

/** An EngineError as the catalogue's AppError (code, HTTP status, Retry-After). Internal messages are not passed on. */
export function engineErrorToAppError(e: EngineError): AppError {
  const code = CATALOGUE_CODE[e.code] ?? 'internal_error';
  const retryAfter = e.retryAfterSeconds ?? DEFAULT_RETRY_AFTER[e.code];
  const message = code === 'internal_error' ? 'The model failed while running this request.' : e.message;
  return new AppError(code, message, { ...(retryAfter !== undefined ? { retryAfter } : {}), cause: e });
}

/** An AppError as is, an EngineError mapped, anything else null (the caller decides: usually internal_error). */
export function catalogueError(e: unknown): AppError | null {
  if (e instanceof AppError) return e;
  if (e instanceof EngineError) return engineErrorToAppError(e);
  return null;
}
