/**
 * GET /healthz (the HTTP thread answers; the engine runs in its own worker thread, so this stays fast while
 * the graph builds and while batches run) and GET /readyz (the model is loaded and the server is not
 * draining; `phase` shows the engine's start-up phase: starting, reading_config, building_graph,
 * creating_session, loading_adapters, ready or failed).
 */
import type { FastifyInstance } from 'fastify';
import { samplingDefaults, type GenerationDefaults } from '../engine/model/generation-config.js';

/** The request defaults in force and where they come from (generation_config.json or the server's own). */
function generationDefaultsBody(g: GenerationDefaults) {
  const s = samplingDefaults(g);
  return {
    source: g.source ?? 'server',
    temperature: s.temperature,
    top_p: s.topP,
    top_k: s.topK,
    ...(g.maxTokens !== undefined ? { chat_max_tokens: g.maxTokens } : {}),
    ...(g.ignored.length ? { ignored: g.ignored } : {}),
  };
}

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const { engine, error, draining, phase, phaseDetail } = app.engineState;
    const ready = engine !== null && !draining;
    // Bedrock circuits show here; model ids (ARNs hold the account id) stay out of this open endpoint.
    const bedrock = app.bedrock?.status().map((s) => ({
      adapter: s.adapter,
      family: s.family,
      circuit: s.circuit,
      consecutive_failures: s.consecutiveFailures,
      ...(s.openUntil ? { open_until: s.openUntil } : {}),
    }));
    const body = {
      status: ready ? 'ready' : draining ? 'draining' : error ? 'failed' : 'loading',
      phase: engine ? 'ready' : error ? 'failed' : (phase ?? 'starting'),
      ...(!engine && !error && phaseDetail ? { phase_detail: phaseDetail } : {}),
      ...(error ? { error } : {}),
      ...(engine
        ? {
            model: engine.modelName,
            provider: engine.provider,
            state_residency: engine.residency,
            dtype: engine.dtype,
            weight_format: engine.baseWeights.format,
            base_weight_bytes: engine.baseWeights.bytes,
            queue_depth: engine.queueDepth,
            batch_size: engine.batchSize,
            adapters: engine.adapters.list().length,
            generation_defaults: generationDefaultsBody(engine.generation),
            eos_token_ids: engine.spec.eosTokenIds,
          }
        : {}),
      ...(bedrock ? { bedrock } : {}),
    };
    return reply.status(ready ? 200 : 503).send(body);
  });
}
