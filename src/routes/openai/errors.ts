/**
 * Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, mapped from the one
 * error catalogue (src/errors.ts). Nothing new is added to the catalogue: a ParamError is an AppError
 * that also names the request parameter at fault.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ERRORS, type ErrorCode } from '../../errors.js';
import { toAppError } from '../to-app-error.js';
import { EngineError } from '../../engine/errors.js';
import { engineErrorToAppError } from '../engine-errors.js';

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An AppError that names the parameter at fault (OpenAI's `param`), and may replace the catalogue hint. */
export class ParamError extends AppError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly param: string | null,
    readonly openaiCode?: string,
    readonly hint?: string,
  ) {
    super(code, message);
  }
}

/** 400 invalid_request naming `param`; the message says what to fix, so no catalogue hint is added. */
export function invalidParam(param: string | null, message: string): ParamError {
  return new ParamError('invalid_request', message, param, undefined, '');
}

/** OpenAI's error `type` for an HTTP status. */
export function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

export function toOpenAIBody(error: AppError): OpenAIErrorBody {
  const param = error instanceof ParamError ? error.param : null;
  const hint = error instanceof ParamError && error.hint !== undefined ? error.hint : ERRORS[error.code].hint;
  const code = error instanceof ParamError && error.openaiCode ? error.openaiCode : error.code;
  return { error: { message: `${error.message} ${hint}`.trim(), type: errorType(error.status), param, code } };
}

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** `/messages/0/content` -> `messages[0].content`. */
function paramPath(instancePath: string, extra?: string): string | null {
  const parts = instancePath.split('/').filter(Boolean);
  if (extra) parts.push(extra);
  if (!parts.length) return null;
  return parts.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** Fastify's schema validation errors, with the parameter named as OpenAI does. */
function fromValidation(error: FastifyError): AppError | null {
  const first = (error.validation as AjvError[] | undefined)?.[0];
  if (!first || error.validationContext !== 'body') return null;
  if (first.keyword === 'additionalProperties') {
    const name = String(first.params.additionalProperty);
    const param = paramPath(first.instancePath, name);
    return invalidParam(param, `Unrecognized request argument supplied: ${param}.`);
  }
  if (first.keyword === 'required') {
    const param = paramPath(first.instancePath, String(first.params.missingProperty));
    return invalidParam(param, `Missing required parameter: '${param}'.`);
  }
  const param = paramPath(first.instancePath);
  if (param === null) return invalidParam(null, `Invalid request body: it ${first.message ?? 'is not valid'}.`);
  return invalidParam(param, `Invalid value for '${param}': ${first.message ?? 'not valid'}.`);
}

export function toOpenAIError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof EngineError) {
    const mapped = engineErrorToAppError(error);
    // An engine error that names the parameter at fault (e.g. a schema the constraint compiler refused).
    return error.param ? new ParamError(mapped.code, mapped.message, error.param, undefined, '') : mapped;
  }
  const e = error as FastifyError;
  if (e && e.validation) return fromValidation(e) ?? toAppError(error);
  return toAppError(error);
}

/** The route-scoped error handler of the OpenAI plugin. */
export function openaiErrorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  const appError = toOpenAIError(error);
  if (appError.status >= 500 && appError.code === 'internal_error') request.log.error({ err: error }, 'unexpected error');
  request.requestLog.error = appError.code;
  if (appError.retryAfter !== undefined) reply.header('retry-after', String(appError.retryAfter));
  return reply.status(appError.status).send(toOpenAIBody(appError));
}
