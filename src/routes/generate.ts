/** POST /v1/generate?adapter=NAME — native generation API, JSON or server-sent events. */
import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import { checkAdapterName } from '../engine/lora/adapter-manager.js';
import { generateBodySchema, toGenerateRequest, type GenerateBody } from './generate-body.js';
import { abortOnDisconnect, endSse, sendSse, startSse } from './sse.js';
import { requireEngine } from './engine-state.js';
import { logRequest } from '../request-log.js';

export async function generateRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: GenerateBody; Querystring: { adapter?: string } }>(
    '/v1/generate',
    { schema: { body: generateBodySchema, querystring: { type: 'object', properties: { adapter: { type: 'string' }, route: { type: 'string' } } } } },
    async (request, reply) => {
      const engine = requireEngine(app);
      const adapter = request.query.adapter || null;
      if (adapter !== null) checkAdapterName(adapter);
      const abort = abortOnDisconnect(reply);
      const genRequest = toGenerateRequest(request.body, adapter, app.config.limits, abort.signal);
      const generation = engine.start(genRequest);
      request.requestLog = { adapter, route: 'local', promptTokens: generation.promptTokens };

      if (request.body.stream) {
        startSse(reply, { 'x-served-by': 'local' });
        try {
          for await (const event of generation.events) {
            if (event.type === 'token') {
              sendSse(reply, { token_id: event.tokenId, text: event.text, ...(event.logprob !== undefined ? { logprob: event.logprob } : {}) });
            } else {
              Object.assign(request.requestLog, { completionTokens: event.usage.completionTokens, timings: event.timings, finishReason: event.finishReason });
              sendSse(reply, { finish_reason: event.finishReason, usage: { prompt_tokens: event.usage.promptTokens, completion_tokens: event.usage.completionTokens }, adapter, route: 'local' });
            }
          }
        } catch (e) {
          const error = e instanceof AppError ? e : new AppError('internal_error', 'The generation failed.');
          if (!(e instanceof AppError)) request.log.error({ err: e }, 'generation failed mid-stream');
          request.requestLog.error = error.code;
          sendSse(reply, error.toBody(), 'error');
        }
        endSse(reply);
        logRequest(request, 200);
        return reply;
      }

      let result;
      for await (const event of generation.events) {
        if (event.type === 'finish') result = event;
      }
      if (!result) throw new AppError('internal_error', 'The generation ended without a result.');
      Object.assign(request.requestLog, { completionTokens: result.usage.completionTokens, timings: result.timings, finishReason: result.finishReason });
      reply.header('x-served-by', 'local');
      return {
        text: result.text,
        token_ids: result.tokenIds,
        ...(result.logprobs ? { logprobs: result.logprobs } : {}),
        finish_reason: result.finishReason,
        adapter,
        route: 'local',
        usage: { prompt_tokens: result.usage.promptTokens, completion_tokens: result.usage.completionTokens },
      };
    },
  );
}

