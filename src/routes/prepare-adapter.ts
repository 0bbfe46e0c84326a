/**
 * Just-in-time adapters: with adapters in a remote store (S3), a name this server has not seen yet is looked up
 * there, and an adapter only in the store is downloaded, before the request is checked, so that a missing name
 * is the usual 404 and a store failure its own error code (adapter_store_unavailable, adapter_store_denied).
 * Nothing happens with a local adapters directory.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ADAPTER_NAME } from '../engine/lora/adapter-manager.js';
import type { EngineClient } from '../engine/worker/engine-client.js';
import { assertAdapterAllowed } from '../security/plugin.js';

/**
 * The API key's allow-list is checked first, so that a key never makes the server look up a name it may not
 * use. A name that is not an adapter name at all is left to the route (model_not_found / invalid_adapter_name).
 * A store failure for an adapter that also has a Bedrock target is not fatal: the route may still send it there.
 */
export async function prepareAdapter(app: FastifyInstance, request: FastifyRequest, engine: EngineClient, adapter: string | null): Promise<void> {
  if (adapter === null || !engine.adapters.store || !ADAPTER_NAME.test(adapter) || adapter.includes('..')) return;
  assertAdapterAllowed(request, adapter);
  try {
    await engine.adapters.prepare(adapter);
  } catch (e) {
    if (!app.bedrock?.hasTarget(adapter)) throw e;
  }
}

/** An OpenAI `model`: the base model's name needs nothing, anything else may be an adapter. */
export function prepareModel(app: FastifyInstance, request: FastifyRequest, engine: EngineClient, model: string): Promise<void> {
  return prepareAdapter(app, request, engine, model === engine.modelName ? null : model);
}
