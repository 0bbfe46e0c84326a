/** The engine may still be loading when the server starts listening; routes ask for it here. */
import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import type { EngineClient } from '../engine/worker/engine-client.js';

export function requireEngine(app: FastifyInstance): EngineClient {
  const engine = app.engineState.engine;
  if (!engine) {
    const { error, phase } = app.engineState;
    const reason = error ? `The model failed to load: ${error}.` : `The model is still loading${phase ? ` (${phase.replace(/_/g, ' ')})` : ''}.`;
    throw new AppError('model_not_ready', reason, { retryAfter: 5 });
  }
  if (app.engineState.draining) throw new AppError('shutting_down', 'The server is shutting down.', { retryAfter: 1 });
  return engine;
}
