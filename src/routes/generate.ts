/** POST /v1/generate?adapter=NAME[&route=auto|local|bedrock] — native generation API, JSON or server-sent events. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { AppError } from '../errors.js';
import { checkAdapterName } from '../engine/lora/adapter-manager.js';
import type { FinishEvent } from '../engine/types.js';
import { ROUTE_HEADER } from '../fallback/route-policy.js';
import { generateBodySchema, toGenerateRequest } from './generate-body.js';
import { abortOnDisconnect, endSse, sendSse, startSse } from './sse.js';
import { dispatchGeneration } from './dispatch.js';
import { logRequest } from '../request-log.js';
import { assertAdapterAllowed, checkPromptTokens } from '../security/plugin.js';
import { catalogueError } from './engine-errors.js';
import { prepareAdapter } from './prepare-adapter.js';
import { requireEngine } from './engine-state.js';

const generateQuerySchema = Type.Object({ adapter: Type.Optional(Type.String()), route: Type.Optional(Type.String()) });

export async function generateRoutes(app: FastifyInstance): Promise<void> {
  // The body's and query's types come from their schemas (TypeBox through fastify's type provider).
  app
    .withTypeProvider<TypeBoxTypeProvider>()
    .post('/v1/generate', { schema: { body: generateBodySchema, querystring: generateQuerySchema } }, async (request, reply) => {
      const adapter = request.query.adapter || null;
      if (adapter !== null) checkAdapterName(adapter);
      assertAdapterAllowed(request, adapter);
      if (adapter !== null && app.engineState.engine) await prepareAdapter(app, request, requireEngine(app), adapter);
      checkPromptTokens(request, request.body);
      request.requestLog.adapter = adapter;
      const abort = abortOnDisconnect(reply);
      const dispatched = dispatchGeneration(
        app,
        toGenerateRequest(request.body, adapter, app.config.limits, abort.signal, app.engineState.engine?.generation),
        request.query.route,
        { stream: request.body.stream === true },
      );
      const first = await dispatched.events.next();
      const { route } = dispatched;
      Object.assign(request.requestLog, { route, promptTokens: dispatched.promptTokens ?? undefined });
      const usageOf = (finish: FinishEvent) => ({ prompt_tokens: finish.usage.promptTokens, completion_tokens: finish.usage.completionTokens });
      const noteFinish = (finish: FinishEvent) =>
        Object.assign(request.requestLog, {
          promptTokens: finish.usage.promptTokens,
          completionTokens: finish.usage.completionTokens,
          timings: finish.timings,
          finishReason: finish.finishReason,
        });

      if (request.body.stream) {
        startSse(reply, { [ROUTE_HEADER]: route });
        try {
          for (let next = first; !next.done; next = await dispatched.events.next()) {
            const event = next.value;
            if (event.type === 'token') {
              sendSse(reply, { token_id: event.tokenId, text: event.text, ...(event.logprob !== undefined ? { logprob: event.logprob } : {}) });
            } else {
              noteFinish(event);
              sendSse(reply, { finish_reason: event.finishReason, usage: usageOf(event), adapter, route });
            }
          }
        } catch (e) {
          const error = catalogueError(e) ?? new AppError('internal_error', 'The generation failed.');
          if (!catalogueError(e)) request.log.error({ err: e }, 'generation failed mid-stream');
          request.requestLog.error = error.code;
          sendSse(reply, error.toBody(), 'error');
        }
        logRequest(request, 200);
        endSse(reply);
        return reply;
      }

      let finish: FinishEvent | undefined;
      for (let next = first; !next.done; next = await dispatched.events.next()) if (next.value.type === 'finish') finish = next.value;
      if (!finish) throw new AppError('internal_error', 'The generation ended without a result.');
      noteFinish(finish);
      reply.header(ROUTE_HEADER, route);
      return {
        text: finish.text,
        token_ids: finish.tokenIds,
        ...(finish.logprobs ? { logprobs: finish.logprobs } : {}),
        finish_reason: finish.finishReason,
        adapter,
        route,
        usage: usageOf(finish),
      };
    });
}
