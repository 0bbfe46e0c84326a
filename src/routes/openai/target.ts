/**
 * What every OpenAI generation route does first: the engine, the adapter (or base model) that `model` names,
 * fetched from the adapter store when it is remote and not seen yet, the requested route checked, and the
 * common parameters this server refuses.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requireEngine } from '../engine-state.js';
import { parseRequestedRoute } from '../../fallback/route-policy.js';
import { prepareModel } from '../prepare-adapter.js';
import { resolveModel } from './models.js';
import { rejectUnsupported } from './parameters.js';
import type { CommonBody, RouteQuery } from './schemas.js';

export async function openAiTarget(app: FastifyInstance, request: FastifyRequest<{ Querystring: RouteQuery }>, body: CommonBody & { model: string }) {
  const engine = requireEngine(app);
  await prepareModel(app, request, engine, body.model);
  const adapter = resolveModel(request, engine, body.model, app.bedrock);
  parseRequestedRoute(request.query.route);
  request.requestLog.adapter = adapter;
  rejectUnsupported(body);
  return { engine, adapter, limits: app.config.limits };
}
