/**
 * Bedrock faults -> our error catalogue. Covers the modeled exceptions of InvokeModel and Converse,
 * the exception events of their streams (the SDK throws those as the same exception classes), network
 * failures, and our own per-target timeout.
 */
import { AppError, type ErrorCode } from '../errors.js';

interface FaultRule {
  code: ErrorCode;
  /** Safe to send again before anything reached the client. */
  retryable: boolean;
  /** Says something about the target's health, so it counts towards opening the circuit. */
  countsAsFailure: boolean;
}

const RULES: Record<string, FaultRule> = {
  ThrottlingException: { code: 'upstream_throttled', retryable: true, countsAsFailure: false },
  ServiceQuotaExceededException: { code: 'upstream_throttled', retryable: false, countsAsFailure: false },
  ModelNotReadyException: { code: 'upstream_unavailable', retryable: true, countsAsFailure: true },
  ServiceUnavailableException: { code: 'upstream_unavailable', retryable: true, countsAsFailure: true },
  InternalServerException: { code: 'upstream_error', retryable: true, countsAsFailure: true },
  ModelTimeoutException: { code: 'upstream_timeout', retryable: false, countsAsFailure: true },
  ValidationException: { code: 'upstream_invalid_request', retryable: false, countsAsFailure: false },
  AccessDeniedException: { code: 'upstream_access_denied', retryable: false, countsAsFailure: true },
  // The provisioned model or its ARN is gone: an operator problem, not the caller's.
  ResourceNotFoundException: { code: 'upstream_error', retryable: false, countsAsFailure: true },
  ModelErrorException: { code: 'upstream_error', retryable: false, countsAsFailure: true },
  ModelStreamErrorException: { code: 'upstream_error', retryable: false, countsAsFailure: true },
  ConflictException: { code: 'upstream_error', retryable: false, countsAsFailure: false },
  // No credentials from the default provider chain: the server's IAM setup needs fixing.
  CredentialsProviderError: { code: 'upstream_access_denied', retryable: false, countsAsFailure: true },
  TimeoutError: { code: 'upstream_timeout', retryable: false, countsAsFailure: true },
  // Our parsers found a body without the family's shape: the target is not what the config says.
  MalformedResponseError: { code: 'upstream_error', retryable: false, countsAsFailure: true },
};

const NETWORK_ERROR_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_SESSION_ERROR',
  'ERR_HTTP2_GOAWAY_SESSION',
]);

/** Retry-After (seconds) suggested to clients for faults that pass quickly. */
const RETRY_AFTER_S: Partial<Record<ErrorCode, number>> = { upstream_throttled: 1, upstream_unavailable: 1 };

/** Raised by our per-target deadline; see bedrock-client. */
export class TargetTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
    this.name = 'TargetTimeoutError';
  }
}

/** A stream that ended without the model's final event. */
export class TruncatedStreamError extends Error {
  constructor() {
    super('the stream ended before the model finished');
    this.name = 'TruncatedStreamError';
  }
}

export interface BedrockFault {
  error: AppError;
  retryable: boolean;
  countsAsFailure: boolean;
}

/**
 * Classifies anything thrown while calling a target. `where` names the target in client-facing
 * messages (e.g. `The Bedrock target of adapter "sales"`); keep ARNs out of it, they name the AWS
 * account. Upstream messages are passed on only for ValidationException, which is about the
 * request; others (AccessDenied names IAM roles) stay in `cause` for the server log.
 */
export function classifyBedrockError(error: unknown, where: string): BedrockFault {
  if (error instanceof AppError) return { error, retryable: false, countsAsFailure: false };
  if (error instanceof TargetTimeoutError) {
    return {
      error: new AppError('upstream_timeout', `${where} did not answer within ${error.timeoutMs} ms.`, { cause: error }),
      retryable: false,
      countsAsFailure: true,
    };
  }
  if (error instanceof TruncatedStreamError) {
    return {
      error: new AppError('upstream_error', `${where}: ${error.message}.`, { cause: error }),
      retryable: true,
      countsAsFailure: true,
    };
  }

  const name = exceptionName(error);
  const message = error instanceof Error ? firstLine(error.message) : String(error);
  const rule = RULES[name] ?? ruleFromNetwork(error) ?? ruleFromStatus(httpStatus(error));
  const code = rule.code;
  const label = name === 'Error' ? (systemErrorCode(error) ?? name) : name;
  const detail = name === 'ValidationException' ? `: ${message}` : '';
  return {
    error: new AppError(code, `${where} failed (${label})${detail}.`, { cause: error, retryAfter: RETRY_AFTER_S[code] }),
    retryable: rule.retryable,
    countsAsFailure: rule.countsAsFailure,
  };
}

/** Whether a call that failed this way may be sent again (before anything was streamed to the client). */
export function isRetryable(error: unknown): boolean {
  return classifyBedrockError(error, 'Bedrock').retryable;
}

/** The error code for an SDK exception name, also accepting stream event names like `throttlingException`. */
export function errorCodeForException(name: string): ErrorCode {
  return (RULES[normalizeName(name)] ?? ruleFromStatus(undefined)).code;
}

function exceptionName(error: unknown): string {
  if (error && typeof error === 'object' && 'name' in error && typeof error.name === 'string') {
    return normalizeName(error.name);
  }
  return 'Error';
}

/** Unmodeled stream exceptions come back named by their union member, e.g. `throttlingException`. */
function normalizeName(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

function systemErrorCode(error: unknown): string | undefined {
  return error && typeof error === 'object' && 'code' in error ? String(error.code) : undefined;
}

function ruleFromNetwork(error: unknown): FaultRule | undefined {
  const code = systemErrorCode(error);
  if (code && NETWORK_ERROR_CODES.has(code)) {
    return { code: 'upstream_unavailable', retryable: true, countsAsFailure: true };
  }
  return undefined;
}

function ruleFromStatus(status: number | undefined): FaultRule {
  if (status === 429) return { code: 'upstream_throttled', retryable: true, countsAsFailure: false };
  if (status === 503) return { code: 'upstream_unavailable', retryable: true, countsAsFailure: true };
  if (status !== undefined && status >= 500) return { code: 'upstream_error', retryable: true, countsAsFailure: true };
  return { code: 'upstream_error', retryable: false, countsAsFailure: true };
}

function httpStatus(error: unknown): number | undefined {
  if (error && typeof error === 'object' && '$metadata' in error) {
    const metadata = (error as { $metadata?: { httpStatusCode?: number } }).$metadata;
    return metadata?.httpStatusCode;
  }
  return undefined;
}

function firstLine(text: string): string {
  return text.split('\n')[0].trim();
}
