/**
 * Requests that are not HTTP (bad request line, bad headers, oversized headers, a timeout while reading)
 * never reach a route: Node hands the socket to this handler. It answers in the catalogue's shape, as
 * every other error does, then closes the connection (fastify's default, with our body).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';

export function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const error =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new AppError('request_timeout', 'The request was not received in time.')
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new AppError('invalid_request', 'The request headers are larger than this server accepts.')
        : new AppError('invalid_request', 'The request is not valid HTTP.');
  this.log.trace({ err: { code: err.code, message: err.message } }, 'client error');
  if (socket.writable) {
    const body = JSON.stringify(error.toBody());
    socket.write(
      `HTTP/1.1 ${error.status} ${error.status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/**
 * Errors the router raises before any route or hook runs (a URL that does not decode, a path segment
 * over maxParamLength): answered in the catalogue's shape instead of fastify's.
 */
export function frameworkErrors(error: { code?: string }, _request: FastifyRequest, reply: FastifyReply): void {
  const appError =
    error.code === 'FST_ERR_BAD_URL'
      ? new AppError('invalid_request', 'The URL is not valid (a bad percent-encoding?).')
      : error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new AppError('invalid_request', 'A part of the URL path is longer than this server accepts.')
        : new AppError('internal_error', 'Something went wrong on the server.', { cause: error });
  void reply.status(appError.status).send(appError.toBody());
}

/**
 * Node answers an `Expect:` header other than 100-continue with a bare 417 before the app sees the
 * request; this answers it in the catalogue's shape instead.
 */
export function answerUnsupportedExpectation(_req: IncomingMessage, res: ServerResponse): void {
  const body = JSON.stringify(new AppError('invalid_request', 'The Expect header is not supported (only 100-continue is).').toBody());
  res.writeHead(400, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
}
