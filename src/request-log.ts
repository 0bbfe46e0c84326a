/** One JSON log line per request, with adapter, route, token counts and timings when a generation ran. */
import type { FastifyInstance, FastifyRequest } from 'fastify';

export interface RequestLogFields {
  adapter?: string | null;
  route?: 'local' | 'bedrock';
  promptTokens?: number;
  completionTokens?: number;
  finishReason?: string;
  timings?: object;
  error?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    requestLog: RequestLogFields;
    startedAt: number;
    /** Set by streaming routes, which log at the end of the stream themselves. */
    streaming: boolean;
  }
}

export function registerRequestLog(app: FastifyInstance): void {
  app.decorateRequest('requestLog', null as unknown as RequestLogFields);
  app.decorateRequest('startedAt', 0);
  app.decorateRequest('streaming', false);
  app.addHook('onRequest', async (request) => {
    request.requestLog = {};
    request.startedAt = performance.now();
  });
  app.addHook('onResponse', async (request, reply) => {
    if (!request.streaming) logRequest(request, reply.statusCode);
  });
}

/** Streaming routes hijack the reply, so onResponse never sees them: they call this at the end. */
export function logRequest(request: FastifyRequest, status: number): void {
  const route = request.routeOptions.url ?? 'unmatched';
  if (route !== '/metrics') request.server.metrics?.observeRequest(route, request.requestLog.adapter, status, (performance.now() - request.startedAt) / 1000);
  request.log.info(
    { ...request.requestLog, method: request.method, url: request.url.split('?')[0], status, ms: Math.round(performance.now() - request.startedAt) },
    'request',
  );
}
