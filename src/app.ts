/**
 * The fastify app: error handling, request logging and routes. The engine runs in its own worker thread;
 * the routes use its EngineClient, attached when the engine has loaded.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import type { EngineClient } from './engine/worker/engine-client.js';
import type { StartPhase } from './engine/engine.js';
import { toAppError } from './routes/to-app-error.js';
import { AppError } from './errors.js';
import { registerRequestLog } from './request-log.js';
import { registerMetrics } from './metrics.js';
import { registerSecurity } from './security/plugin.js';
import { clientErrorHandler, frameworkErrors } from './security/client-error.js';
import { BedrockFallback } from './fallback/bedrock-client.js';
import { generateRoutes } from './routes/generate.js';
import { adapterRoutes } from './routes/adapters.js';
import { healthRoutes } from './routes/health.js';
import { playgroundRoutes } from './routes/playground.js';
import { openaiRoutes } from './routes/openai/index.js';

export interface EngineState {
  /** The engine's client, set once the engine is ready. */
  engine: EngineClient | null;
  error: string | null;
  draining: boolean;
  /** The engine's start-up phase (shown by /readyz); `ready` once attached. */
  phase?: StartPhase;
  phaseDetail?: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    engineState: EngineState;
  }
}

export interface AppOptions {
  config: Config;
  engine?: EngineClient | null;
  /** The Bedrock route; built from config.bedrock when not given and targets are configured. */
  bedrock?: BedrockFallback | null;
  logger?: FastifyBaseLogger;
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.config.server.bodyLimitBytes,
    // While draining, src/security/plugin.ts answers 503 shutting_down in the catalogue's shape.
    return503OnClosing: false,
    clientErrorHandler,
    frameworkErrors,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  app.decorate('config', options.config);
  app.decorate('engineState', { engine: null, error: null, draining: false });
  registerMetrics(app);
  const bedrock =
    options.bedrock !== undefined
      ? options.bedrock
      : Object.keys(options.config.bedrock.targets).length
        ? new BedrockFallback(options.config.bedrock, { logger: options.logger as never })
        : null;
  app.decorate('bedrock', bedrock);
  if (bedrock) {
    app.metrics.sources.bedrock = () => {
      const counters = bedrock.counters();
      return {
        calls: Object.fromEntries(Object.entries(counters.byAdapter).map(([a, c]) => [a, c.calls])),
        errors: counters.errors as Record<string, number>,
        circuits: bedrock.status().map((s) => ({ adapter: s.adapter, state: s.circuit })),
      };
    };
    app.addHook('onClose', async () => bedrock.close());
  }
  registerRequestLog(app);
  registerSecurity(app);
  app.setErrorHandler((error, request, reply) => {
    const appError = toAppError(error);
    if (appError.status >= 500 && appError.code === 'internal_error') request.log.error({ err: error }, 'unexpected error');
    request.requestLog.error = appError.code;
    if (appError.retryAfter !== undefined) reply.header('retry-after', String(appError.retryAfter));
    return reply.status(appError.status).send(appError.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const e = new AppError('not_found', `No route for ${request.method} ${request.url.split('?')[0]}.`);
    return reply.status(e.status).send(e.toBody());
  });
  if (options.engine) attachEngine(app, options.engine);
  await app.register(healthRoutes);
  await app.register(generateRoutes);
  await app.register(adapterRoutes);
  await app.register(openaiRoutes);
  await app.register(playgroundRoutes);
  return app;
}

/** Makes a ready engine serve requests and feeds its counters (the client's mirror) to /metrics. */
export function attachEngine(app: FastifyInstance, engine: EngineClient): void {
  app.engineState.engine = engine;
  app.engineState.phase = 'ready';
  app.engineState.phaseDetail = undefined;
  engine.observer = app.metrics;
  Object.assign(app.metrics.sources, {
    queueDepth: () => engine.queueDepth,
    batchSize: () => engine.batchSize,
    adapterCounters: () => ({ ...engine.adapters.counters }),
    protocol: () => ({
      kvBlockTokens: engine.info?.kvBlockTokens ?? 0,
      kvBlocks: engine.info?.kvBlocks ?? 0,
      waiting: engine.queueDepth,
      running: engine.batchSize,
      kvUsage: engine.kvUsage,
      maxLoras: engine.adapters.maxLoras,
      runningAdapters: engine.adapters.lora.running,
      waitingAdapters: engine.adapters.lora.waiting,
    }),
    adapterTiers: () => {
      const { hostBytes, diskCacheBytes, ...counts } = engine.adapters.tiers;
      return { counts, bytes: { host: hostBytes, disk_cache: diskCacheBytes } };
    },
    adaptersByStatus: () => {
      const counts: Record<string, number> = { remote: 0, available: 0, loading: 0, host: 0, device: 0, errored: 0 };
      for (const a of engine.adapters.list()) counts[a.status]++;
      return counts;
    },
    isKnownAdapter: (name: string) => engine.adapters.has(name),
  });
}
