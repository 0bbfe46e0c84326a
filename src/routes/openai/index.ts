/**
 * The OpenAI-compatible API: GET /v1/models, GET /v1/models/:model, POST /v1/completions and
 * POST /v1/chat/completions, served by the same engine (batching, adapters) and the same routing (local
 * engine or an adapter's Bedrock target, ?route=auto|local|bedrock) as /v1/generate.
 * Errors inside this plugin take OpenAI's shape through a route-scoped error handler; the rest of the
 * server keeps the native shape. See docs/openai.md.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requireEngine } from '../engine-state.js';
import { chatRoutes } from './chat.js';
import { completionRoutes } from './completions.js';
import { openaiErrorHandler } from './errors.js';
import { bedrockOnlyModels, listModels, mayUse, modelNotFound, type ExtraModel } from './models.js';

export interface OpenAIRoutesOptions {
  /** Models served elsewhere (e.g. Bedrock targets) to list in GET /v1/models next to the local ones. */
  extraModels?: () => ReadonlyArray<string | ExtraModel>;
}

export async function openaiRoutes(app: FastifyInstance, options: OpenAIRoutesOptions = {}): Promise<void> {
  // Not wrapped in fastify-plugin: this handler applies to the routes below only.
  app.setErrorHandler(openaiErrorHandler);

  /** The models this request's API key may use. */
  const models = (request: FastifyRequest) => {
    const engine = requireEngine(app);
    return listModels(engine, [...bedrockOnlyModels(engine, app.bedrock), ...(options.extraModels?.() ?? [])]).filter((m) => mayUse(request, engine, m.id));
  };

  app.get('/v1/models', async (request) => ({ object: 'list', data: models(request) }));

  // A wildcard, not :model, so that ids with slashes (e.g. Bedrock ARNs) can be looked up too.
  app.get<{ Params: { '*': string } }>('/v1/models/*', async (request) => {
    const id = request.params['*'];
    const card = models(request).find((m) => m.id === id);
    if (!card) throw modelNotFound(id);
    return card;
  });

  await app.register(completionRoutes);
  await app.register(chatRoutes);
}

export { listModels, type ExtraModel, type ModelCard } from './models.js';
