/**
 * Which route serves a request: the local engine or the adapter's Bedrock target. Pure; the HTTP
 * layer gathers the facts and acts on the answer. docs/bedrock.md has the table.
 *
 * Call it once before trying anything (no localOutcome), and again with the local outcome when the
 * local engine refused (queue_full) or failed (engine_error): 'bedrock' then means overflow, 'local'
 * means answer with the local error as it is.
 */
import { AppError } from '../errors.js';

export const REQUESTED_ROUTES = ['auto', 'local', 'bedrock'] as const;
export type RequestedRoute = (typeof REQUESTED_ROUTES)[number];
export type Route = 'local' | 'bedrock';

/** Header that tells the client which route served the response. */
export const ROUTE_HEADER = 'x-inference-route';

/**
 * What happened on the local engine. `engine_error` is for server-side failures (5xx); a request the
 * engine rejected as invalid (4xx) is the caller's to fix and never overflows.
 */
export type LocalOutcome = 'queue_full' | 'engine_error';

export interface RouteInput {
  requested: RequestedRoute;
  /** null: the bare base model. */
  adapter: string | null;
  /** The local engine knows this adapter (always true for the base model on a serving replica). */
  servedLocally: boolean;
  hasBedrockTarget: boolean;
  /** False when the request needs what only the local engine gives (logprobs, token-id prompts). Default true. */
  bedrockCompatible?: boolean;
  /** False while the target's circuit is open; overflow is then pointless. Default true. */
  bedrockAvailable?: boolean;
  localOutcome?: LocalOutcome;
}

/** Parses the `route` query parameter; absent means auto. */
export function parseRequestedRoute(value: unknown): RequestedRoute {
  if (value === undefined || value === null || value === '') return 'auto';
  if (typeof value === 'string' && (REQUESTED_ROUTES as readonly string[]).includes(value)) {
    return value as RequestedRoute;
  }
  throw new AppError('invalid_request', `route must be one of ${REQUESTED_ROUTES.join(', ')}; got ${JSON.stringify(value)}.`);
}

export function decideRoute(input: RouteInput): Route | AppError {
  const { requested, adapter, servedLocally, hasBedrockTarget, localOutcome } = input;
  const bedrockCompatible = input.bedrockCompatible ?? true;
  const bedrockAvailable = input.bedrockAvailable ?? true;

  // The base model is never sent to Bedrock, and no adapter request ever falls back to it.
  if (adapter === null) {
    if (requested === 'bedrock') {
      return new AppError('invalid_request', 'route=bedrock needs an adapter with a Bedrock target; the base model is served only locally.');
    }
    return 'local';
  }

  if (!servedLocally && !hasBedrockTarget) {
    return new AppError('adapter_not_found', `Adapter "${adapter}" is not known to this server.`);
  }

  if (requested === 'local') {
    if (!servedLocally) {
      return new AppError('invalid_request', `Adapter "${adapter}" is served only by Bedrock; use route=auto or route=bedrock.`);
    }
    return 'local';
  }

  if (requested === 'bedrock' || !servedLocally) {
    if (!hasBedrockTarget) {
      return new AppError('invalid_request', `Adapter "${adapter}" has no Bedrock target; use route=auto or route=local.`);
    }
    if (!bedrockCompatible) {
      return new AppError('invalid_request', `Adapter "${adapter}" would be served by Bedrock, which returns no logprobs and takes only text prompts.`);
    }
    return 'bedrock';
  }

  // auto, served locally: local first; overflow when the local engine is full or failed.
  if (localOutcome !== undefined && hasBedrockTarget && bedrockCompatible && bedrockAvailable) return 'bedrock';
  return 'local';
}
