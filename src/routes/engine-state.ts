/** The engine may still be loading when the server starts listening; routes ask for it here. */
import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import type { Engine } from '../engine/engine.js';

export function requireEngine(app: FastifyInstance): Engine {
  const engine = app.engineState.engine;
  if (!engine) {
    const reason = app.engineState.error ? `The model failed to load: ${app.engineState.error}.` : 'The model is still loading.';
    throw new AppError('model_not_ready', reason, { retryAfter: 5 });
  }
  if (app.engineState.draining) throw new AppError('shutting_down', 'The server is shutting down.', { retryAfter: 1 });
  return engine;
}
