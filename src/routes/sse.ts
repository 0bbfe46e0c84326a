/** Server-sent events on a raw response: one `data:` line per event, `data: [DONE]` at the end. */
import type { FastifyReply } from 'fastify';

export function startSse(reply: FastifyReply, headers: Record<string, string> = {}): void {
  reply.request.streaming = true;
  reply.hijack();
  reply.raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    ...headers,
  });
}

export function sendSse(reply: FastifyReply, data: unknown, event?: string): void {
  if (reply.raw.writableEnded || reply.raw.destroyed) return;
  reply.raw.write(`${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
}

export function endSse(reply: FastifyReply): void {
  if (reply.raw.writableEnded || reply.raw.destroyed) return;
  reply.raw.end('data: [DONE]\n\n');
}

/** An AbortController that fires when the client goes away before the response is complete. */
export function abortOnDisconnect(reply: FastifyReply): AbortController {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller;
}
