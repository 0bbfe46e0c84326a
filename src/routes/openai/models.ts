/** OpenAI model names: the base model and its adapters (plus names served elsewhere, e.g. Bedrock targets). */
import type { FastifyRequest } from 'fastify';
import type { AdapterInfo } from '../../engine/lora/adapter-manager.js';

/** What the model list needs of the engine (its EngineClient, or an in-process Engine). */
export interface ModelSource {
  modelName: string;
  adapters: { list(): AdapterInfo[]; has(name: string): boolean };
}
import type { BedrockFallback } from '../../fallback/bedrock-client.js';
import { assertAdapterAllowed } from '../../security/plugin.js';
import { ParamError } from './errors.js';

export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /** The base model an adapter applies to; null for a base model. */
  parent: string | null;
  root: string;
}

/** A model served by something other than the local engine (e.g. a Bedrock target), listed as given. */
export interface ExtraModel {
  id: string;
  owned_by?: string;
  parent?: string | null;
}

const STARTED = Math.floor(Date.now() / 1000);
export const LOCAL_OWNER = 'lora-inference-server';

/**
 * Every model a client may name: the base, each adapter that can serve (errored adapters are left out;
 * GET /v1/adapters shows them with their reason), then `extra` names not already listed.
 */
export function listModels(engine: ModelSource, extra: ReadonlyArray<string | ExtraModel> = []): ModelCard[] {
  const base = engine.modelName;
  const cards: ModelCard[] = [{ id: base, object: 'model', created: STARTED, owned_by: LOCAL_OWNER, parent: null, root: base }];
  for (const a of engine.adapters.list()) {
    if (a.status === 'errored' || a.name === base) continue;
    cards.push({ id: a.name, object: 'model', created: STARTED, owned_by: LOCAL_OWNER, parent: base, root: base });
  }
  const seen = new Set(cards.map((c) => c.id));
  for (const e of extra) {
    const m = typeof e === 'string' ? { id: e } : e;
    if (seen.has(m.id)) continue;
    seen.add(m.id);
    cards.push({ id: m.id, object: 'model', created: STARTED, owned_by: m.owned_by ?? 'bedrock', parent: m.parent ?? null, root: m.parent ?? m.id });
  }
  return cards;
}

/**
 * Adapters served only by Bedrock: a Bedrock target, and no local adapter of that name. Listed with
 * `owned_by: "bedrock"` and the base model as parent (they stand in for an adapter of it).
 */
export function bedrockOnlyModels(engine: ModelSource, bedrock: BedrockFallback | null): ExtraModel[] {
  if (!bedrock) return [];
  return bedrock
    .status()
    .map((s) => s.adapter)
    .filter((name) => name !== engine.modelName && !engine.adapters.has(name))
    .map((id) => ({ id, owned_by: BEDROCK_OWNER, parent: engine.modelName }));
}

export const BEDROCK_OWNER = 'bedrock';

export function modelNotFound(model: string): ParamError {
  return new ParamError(
    'adapter_not_found',
    `The model ${JSON.stringify(model.slice(0, 200))} does not exist.`,
    'model',
    'model_not_found',
    'GET /v1/models lists the models this server serves.',
  );
}

/**
 * The engine adapter a model name stands for: null for the base model, the adapter's name otherwise.
 * The API key's allow-list is checked first (403 forbidden), so that a key never learns whether a model it
 * may not use exists; then unknown names are a 404 (model_not_found). An adapter that failed validation is
 * the catalogue's adapter_errored (422), raised by the engine. An adapter with a Bedrock target (`bedrock`) is
 * accepted even when the local engine does not serve it: the route is chosen when the request is dispatched.
 */
export function resolveModel(request: FastifyRequest, engine: ModelSource, model: string, bedrock: BedrockFallback | null = null): string | null {
  const adapter = model === engine.modelName ? null : model;
  assertAdapterAllowed(request, adapter);
  if (adapter === null || engine.adapters.has(adapter) || (bedrock?.hasTarget(adapter) ?? false)) return adapter;
  throw modelNotFound(model);
}

/** Whether the request's API key may use a listed model (all of them when no keys are configured). */
export function mayUse(request: FastifyRequest, engine: ModelSource, id: string): boolean {
  try {
    assertAdapterAllowed(request, id === engine.modelName ? null : id);
    return true;
  } catch {
    return false;
  }
}
