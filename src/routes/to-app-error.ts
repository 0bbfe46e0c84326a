/**
 * Any error a route or fastify raises, as an entry of the one catalogue (src/errors.ts): engine errors
 * through src/routes/engine-errors.ts, fastify's own (validation, body parsing, size) here. Used by the app's
 * error handler and by the OpenAI routes' error shape.
 */
import { AppError } from '../errors.js';
import { catalogueError } from './engine-errors.js';

/** Maps engine errors (src/routes/engine-errors.ts) and fastify's own errors (validation, body parsing, size) into the catalogue. */
export function toAppError(error: unknown): AppError {
  const known = catalogueError(error);
  if (known) return known;
  const e = error as { code?: string; statusCode?: number; validation?: unknown; message?: string; validationContext?: string };
  if (e.validation) return new AppError('invalid_request', `Invalid ${e.validationContext ?? 'request'}: ${e.message?.replace(/^(body|querystring)\/?/, '')}.`);
  switch (e.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError('invalid_json', 'The body is not valid JSON.');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('payload_too_large', 'The body is larger than this server accepts.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('unsupported_media_type', 'The content type is not supported.');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new AppError('invalid_request', 'The Content-Length header does not match the body.');
  }
  if (e instanceof SyntaxError || e.statusCode === 400) return new AppError('invalid_json', 'The body could not be parsed.');
  if (e.statusCode === 413) return new AppError('payload_too_large', 'The body is larger than this server accepts.');
  if (e.statusCode === 415) return new AppError('unsupported_media_type', 'The content type is not supported.');
  return new AppError('internal_error', 'Something went wrong on the server.', { cause: error });
}
