/**
 * The request gate, one onRequest hook on the root app (so it runs before every route, including the
 * OpenAI routes and the 404 handler), in this order:
 *   1. GET /healthz, /readyz and /metrics pass untouched (probes and scrapes must work under load);
 *   2. while draining, 503 shutting_down (Connection: close);
 *   3. while the load shedder says so, 503 overloaded with Retry-After (every request past step 1, shed
 *      or not, counts as traffic for its event-loop delay signal: an idle server never sheds on delay);
 *   4. when keys are configured: 401 unauthorized without a valid bearer key, 403 forbidden for a
 *      non-admin key on the adapter admin API (POST/DELETE under /v1/adapters); routes marked
 *      `config: { noApiKey: true }` (the playground's static files, src/routes/playground.ts) skip 4 and 5;
 *   5. the key's rate limit (429 rate_limited with Retry-After) and concurrency (429 rate_limited).
 * Routes call assertAdapterAllowed(request, adapter) once they know the adapter ("base" = null).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import { AppError } from '../errors.js';
import { BASE_MODEL, KeyStore, type Principal } from './keys.js';
import { KeyLimiter } from './rate-limit.js';
import { LoadShedder } from './load-shed.js';
import { answerUnsupportedExpectation } from './client-error.js';

declare module 'fastify' {
  interface FastifyInstance {
    security: SecurityState;
  }
  interface FastifyRequest {
    /** The API key that authenticated this request; null when no keys are configured. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** The route needs no API key (static files that hold no data); draining and load shedding still apply. */
    noApiKey?: boolean;
  }
}

export interface SecurityState {
  keys: KeyStore;
  limiter: KeyLimiter;
  shedder: LoadShedder;
}

/** Routes that stay open and are never shed. */
const OPEN_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);
const SHED_RETRY_AFTER_S = 2;

/** The adapter admin API: anything but GET/HEAD on /v1/adapters and below. */
export function isAdminRoute(method: string, routeUrl: string | undefined): boolean {
  return routeUrl !== undefined && (routeUrl === '/v1/adapters' || routeUrl.startsWith('/v1/adapters/')) && method !== 'GET' && method !== 'HEAD';
}

/** The token of `Authorization: Bearer <token>`, or null. */
export function bearerToken(header: string | string[] | undefined): string | null {
  if (typeof header !== 'string') return null;
  const m = /^Bearer[ \t]+(\S{1,4096})[ \t]*$/i.exec(header);
  return m ? m[1] : null;
}

export function registerSecurity(app: FastifyInstance): void {
  const config = app.config;
  const keys = new KeyStore(config.server.apiKeys, config.server.adminKeys);
  const limiter = new KeyLimiter();
  const l = config.limits;
  const shedder = new LoadShedder(
    { eventLoopDelayMs: l.shedEventLoopDelayMs, heapUsedPercent: l.shedHeapUsedPercent, rssMb: l.shedRssMb },
    () => app.engineState.engine !== null,
  );
  app.decorate('security', { keys, limiter, shedder });
  app.decorateRequest('principal', null);

  const registers = [app.metrics.registry];
  const rejected = new Counter({
    name: 'lora_rejected_requests_total',
    help: 'Requests refused before reaching a route, by reason',
    labelNames: ['reason'],
    registers,
  });
  new Gauge({
    name: 'lora_load_shedding',
    help: '1 while new requests are shed (event-loop delay, heap or RSS above their thresholds)',
    registers,
    collect() {
      this.set(shedder.reason ? 1 : 0);
    },
  });
  const refuse = (reason: string, error: AppError) => {
    rejected.inc({ reason });
    return error;
  };

  app.server.on('checkExpectation', answerUnsupportedExpectation);
  shedder.start();
  // Draining: server.close() waits for every connection, and a keep-alive connection whose stream just
  // ended stays open (idle) until the client or the keep-alive timeout closes it. Closing idle ones as
  // they appear lets the drain end when the last in-flight response does.
  let reaper: NodeJS.Timeout | null = null;
  app.addHook('preClose', async () => {
    reaper = setInterval(() => app.server.closeIdleConnections(), 100);
    reaper.unref();
  });
  app.addHook('onClose', async () => {
    shedder.stop();
    if (reaper) clearInterval(reaper);
  });

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const route = request.routeOptions.url;
    if (route !== undefined && OPEN_ROUTES.has(route)) return;
    // Traffic for the shedder's event-loop delay signal until the response is done (or the client left).
    reply.raw.once('close', shedder.requestStarted());

    if (app.engineState.draining) {
      reply.header('connection', 'close');
      throw refuse('shutting_down', new AppError('shutting_down', 'The server is shutting down.', { retryAfter: 1 }));
    }
    if (shedder.reason)
      throw refuse('overloaded', new AppError('overloaded', `The server is overloaded: ${shedder.reason}.`, { retryAfter: SHED_RETRY_AFTER_S }));
    if (!keys.enabled || request.routeOptions.config.noApiKey) return;

    const token = bearerToken(request.headers.authorization);
    if (token === null) {
      reply.header('www-authenticate', 'Bearer');
      throw refuse('unauthorized', new AppError('unauthorized', 'This server needs an API key.'));
    }
    const principal = keys.lookup(token);
    if (!principal) {
      reply.header('www-authenticate', 'Bearer error="invalid_token"');
      throw refuse('unauthorized', new AppError('unauthorized', 'The API key is not valid.'));
    }
    request.principal = principal;
    request.log = request.log.child({ keyName: principal.name });
    if (isAdminRoute(request.method, route) && !principal.admin) {
      throw refuse('forbidden', new AppError('forbidden', 'The adapter admin API needs an admin key.'));
    }
    if (principal.rateLimitPerMinute !== undefined) {
      const wait = limiter.take(principal.name, principal.rateLimitPerMinute);
      if (wait > 0)
        throw refuse(
          'rate_limited',
          new AppError('rate_limited', `This API key is limited to ${principal.rateLimitPerMinute} requests a minute.`, { retryAfter: wait }),
        );
    }
    if (principal.maxConcurrent !== undefined) {
      if (!limiter.enter(principal.name, principal.maxConcurrent)) {
        throw refuse(
          'concurrency',
          new AppError('rate_limited', `This API key may have ${principal.maxConcurrent} requests in flight at once.`, { retryAfter: 1 }),
        );
      }
      // 'close' fires once the response is complete or the client went away, hijacked streams included.
      reply.raw.once('close', () => limiter.leave(principal.name));
    }
  });
}

/**
 * Throws 403 forbidden unless the request's key may use `adapter` (null = the base model, "base" in the
 * allow-list). No-op when no keys are configured. Call it as soon as the adapter is known, before any
 * work starts, so a key never learns whether an adapter it may not use exists.
 */
export function assertAdapterAllowed(request: FastifyRequest, adapter: string | null): void {
  const principal = request.principal;
  if (!principal || principal.adapters === '*') return;
  const name = adapter ?? BASE_MODEL;
  if (!principal.adapters.has(name)) {
    throw new AppError(
      'forbidden',
      adapter === null ? 'This API key may not use the base model.' : `This API key may not use adapter ${JSON.stringify(adapter.slice(0, 80))}.`,
    );
  }
}

/**
 * Throws context_length_exceeded when a prompt is longer than limits.maxPromptTokens (0 = no limit
 * other than the model's context, which the engine enforces). For routes that hold the prompt's tokens.
 */
export function assertPromptTokens(request: FastifyRequest, promptTokens: number): void {
  const max = request.server.config.limits.maxPromptTokens;
  if (max > 0 && promptTokens > max) {
    throw new AppError('context_length_exceeded', `The prompt has ${promptTokens} tokens; this server accepts at most ${max} (limits.maxPromptTokens).`);
  }
}

/**
 * For routes that hold the request body (`prompt` or `prompt_token_ids`): checks limits.maxPromptTokens
 * before any work starts. With the limit on, a text prompt is tokenized here once more than usual (the
 * engine tokenizes it again; the cost is one pass of the tokenizer, bounded by limits.maxPromptChars).
 */
export function checkPromptTokens(request: FastifyRequest, body: { prompt?: unknown; prompt_token_ids?: unknown }): void {
  const max = request.server.config.limits.maxPromptTokens;
  if (max <= 0) return;
  if (Array.isArray(body.prompt_token_ids)) return assertPromptTokens(request, body.prompt_token_ids.length);
  if (typeof body.prompt !== 'string') return;
  const tokenizer = request.server.engineState.engine?.tokenizer;
  if (tokenizer) assertPromptTokens(request, tokenizer.encode(body.prompt).length);
}
