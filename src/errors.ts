/**
 * The one error catalogue. Every error a client can see has a stable code, an HTTP status and a
 * message that says what to do. Routes and the fallback throw AppError and render it; the engine throws its own
 * EngineError (src/engine/errors.ts), mapped to this catalogue in src/routes/engine-errors.ts.
 * (A typed table rather than @fastify/error: one entry per code holds the status and the hint that tells the
 * client what to do, and tests iterate it; per-code error classes would split the catalogue in two.)
 */

export const ERRORS = {
  invalid_request: { status: 400, hint: 'Fix the request body or query as the message says.' },
  invalid_json: { status: 400, hint: 'Send a valid JSON body with Content-Type: application/json.' },
  context_length_exceeded: { status: 400, hint: 'Shorten the prompt or lower max_tokens.' },
  invalid_adapter_name: { status: 400, hint: 'Adapter names use letters, digits, ".", "_" and "-" only.' },
  adapter_not_found: { status: 404, hint: 'GET /v1/adapters lists the adapters this server knows.' },
  adapter_errored: { status: 422, hint: 'The adapter failed validation; GET /v1/adapters shows why.' },
  adapter_in_use: { status: 409, hint: 'Retry when its running requests have finished.' },
  adapter_exists: { status: 409, hint: 'Choose another name or DELETE the existing adapter first.' },
  adapter_store_unavailable: { status: 503, hint: 'The adapter store (S3) could not be read; retry after the Retry-After header.' },
  adapter_store_denied: { status: 502, hint: 'The server may not read the adapter store (S3); an operator must fix its IAM role or the bucket policy.' },
  not_found: { status: 404, hint: 'Check the URL.' },
  method_not_allowed: { status: 405, hint: 'Check the HTTP method.' },
  payload_too_large: { status: 413, hint: 'Send a smaller body.' },
  unsupported_media_type: { status: 415, hint: 'Send Content-Type: application/json.' },
  unauthorized: { status: 401, hint: 'Send Authorization: Bearer <api key>.' },
  forbidden: { status: 403, hint: 'This API key may not use that adapter or endpoint.' },
  rate_limited: { status: 429, hint: 'Slow down and retry after the Retry-After header.' },
  queue_full: { status: 429, hint: 'The server is at capacity; retry after the Retry-After header.' },
  request_timeout: { status: 408, hint: 'The generation took longer than the server allows; ask for fewer tokens.' },
  model_not_ready: { status: 503, hint: 'Poll GET /readyz until it answers 200.' },
  model_unavailable: { status: 503, hint: 'The server log has the reason; a server whose model fails to start exits so that it can be restarted.' },
  overloaded: { status: 503, hint: 'The server is shedding load; retry after the Retry-After header.' },
  shutting_down: { status: 503, hint: 'This server is draining; retry on another replica.' },
  upstream_throttled: { status: 429, hint: 'Bedrock throttled the request; retry later.' },
  upstream_unavailable: { status: 503, hint: 'The Bedrock target is unavailable; retry later.' },
  upstream_timeout: { status: 504, hint: 'The Bedrock target did not answer in time; retry later.' },
  upstream_invalid_request: { status: 400, hint: 'Bedrock rejected the request; check its parameters.' },
  upstream_access_denied: { status: 502, hint: 'The server is not allowed to call that Bedrock target; an operator must fix its IAM role.' },
  upstream_error: { status: 502, hint: 'The Bedrock target failed; retry later.' },
  internal_error: { status: 500, hint: 'An unexpected error; the server log has the details.' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds, sent as Retry-After where set. */
  readonly retryAfter?: number;

  constructor(code: ErrorCode, message: string, options: { retryAfter?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryAfter = options.retryAfter;
  }

  /** The body a client sees. 5xx messages from unexpected errors are never passed through. */
  toBody(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: `${this.message} ${ERRORS[this.code].hint}`.trim() } };
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}
