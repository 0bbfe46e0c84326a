/** The engine may still be loading when the server starts listening; routes ask for it here. */
import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import { notReadyError, type EngineClient } from '../engine/worker/engine-client.js';
import { engineErrorToAppError } from './engine-errors.js';

export function requireEngine(app: FastifyInstance): EngineClient {
  const engine = app.engineState.engine;
  if (!engine) {
    const { error, phase } = app.engineState;
    throw engineErrorToAppError(notReadyError(phase, error));
  }
  if (app.engineState.draining) throw new AppError('shutting_down', 'The server is shutting down.', { retryAfter: 1 });
  return engine;
}
