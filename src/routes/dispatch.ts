/**
 * Chooses the route that serves a generation (the local engine or the adapter's Bedrock target) and
 * overflows to Bedrock, for adapters that have a target, when the local queue is full or the local engine
 * fails before the first token. Shared by the native and the OpenAI-compatible APIs.
 */
import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import { decideRoute, parseRequestedRoute, type LocalOutcome, type Route, type RouteInput } from '../fallback/route-policy.js';
import { bedrockIncompatibility } from '../fallback/request-params.js';
import type { BedrockFallback } from '../fallback/bedrock-client.js';
import type { GenerateRequest, GenerateResult, GenerationEvent } from '../engine/types.js';
import type { ResponseFormatData } from '../engine/engine.js';
import { EngineError } from '../engine/errors.js';
import { requireEngine } from './engine-state.js';

declare module 'fastify' {
  interface FastifyInstance {
    bedrock: BedrockFallback | null;
  }
}

export interface Dispatched {
  /** The route serving the request; may turn from local to bedrock before the first event. */
  readonly route: Route;
  /** Known up front on the local route; Bedrock reports it in the finish event. */
  readonly promptTokens: number | null;
  /** Events; peek the first one before sending headers so that `route` is final. */
  readonly events: AsyncIterator<GenerationEvent>;
}

export interface DispatchOptions {
  /** JSON mode, as data: the engine builds the constraint in its worker. */
  responseFormat?: ResponseFormatData;
  /** The client streams: Bedrock is called with its streaming API; otherwise with InvokeModel / Converse. */
  stream: boolean;
  /**
   * Token ids the local engine uses instead of tokenizing `request.prompt` itself (e.g. a rendered chat,
   * tokenized without special tokens); Bedrock still gets the text `prompt`.
   */
  localPromptTokenIds?: number[];
}

export function dispatchGeneration(app: FastifyInstance, request: GenerateRequest, routeParam: unknown, options: DispatchOptions): Dispatched {
  const extras = options.responseFormat ? { responseFormat: options.responseFormat } : {};
  const bedrock = app.bedrock;
  const { adapter } = request;
  const engine = app.engineState.engine;
  const facts: RouteInput = {
    requested: parseRequestedRoute(routeParam),
    adapter,
    servedLocally: adapter === null || (engine?.adapters.has(adapter) ?? false),
    hasBedrockTarget: adapter !== null && (bedrock?.hasTarget(adapter) ?? false),
    bedrockCompatible: bedrockIncompatibility(request) === null && !extras.responseFormat,
    bedrockAvailable: adapter !== null && (bedrock?.isAvailable(adapter) ?? false),
  };
  const decide = (localOutcome?: LocalOutcome): Route => {
    const decision = decideRoute({ ...facts, localOutcome });
    if (decision instanceof AppError) throw decision;
    return decision;
  };
  const viaBedrock = (): AsyncIterator<GenerationEvent> =>
    (options.stream ? bedrock!.stream(request) : finishOnly(bedrock!.generate(request)))[Symbol.asyncIterator]();

  if (decide() === 'bedrock') return { route: 'bedrock', promptTokens: null, events: viaBedrock() };

  const localRequest = options.localPromptTokenIds ? { ...request, promptTokenIds: options.localPromptTokenIds } : request;
  let local;
  try {
    local = requireEngine(app).start(localRequest, extras);
  } catch (e) {
    const outcome = localOutcomeOf(e);
    if (outcome && decide(outcome) === 'bedrock') return { route: 'bedrock', promptTokens: null, events: viaBedrock() };
    throw e;
  }
  const state = { route: 'local' as Route, promptTokens: local.promptTokens as number | null };
  const localEvents = local.events[Symbol.asyncIterator]();
  let delivered = false;
  let current: AsyncIterator<GenerationEvent> = localEvents;
  const events: AsyncIterator<GenerationEvent> = {
    next: async () => {
      try {
        const next = await current.next();
        delivered = true;
        return next;
      } catch (e) {
        // Only before anything reached the client: afterwards the client gets the error. The engine's worker
        // reports a full queue or a failure through the events, before the first token.
        const outcome = localOutcomeOf(e);
        if (delivered || state.route !== 'local' || outcome === undefined || decide(outcome) !== 'bedrock') throw e;
        state.route = 'bedrock';
        state.promptTokens = null;
        current = viaBedrock();
        delivered = true;
        return current.next();
      }
    },
    return: async () => (current.return ? current.return() : { value: undefined, done: true }),
  };
  return {
    get route() {
      return state.route;
    },
    get promptTokens() {
      return state.promptTokens;
    },
    events,
  };
}

/** A non-streamed Bedrock answer as the one finish event the non-streaming routes read. */
async function* finishOnly(result: Promise<GenerateResult>): AsyncGenerator<GenerationEvent> {
  const started = performance.now();
  const r = await result;
  const totalMs = performance.now() - started;
  yield {
    type: 'finish',
    finishReason: r.finishReason,
    usage: r.usage,
    text: r.text,
    tokenIds: r.tokenIds,
    timings: { queuedMs: 0, prefillMs: 0, decodeMs: 0, totalMs },
  };
}

function localOutcomeOf(e: unknown): LocalOutcome | undefined {
  if (e instanceof EngineError) {
    if (e.code === 'queue_full') return 'queue_full';
    if (e.code === 'internal' || e.code === 'not_ready' || e.code === 'unavailable') return 'engine_error';
    return undefined;
  }
  if (!(e instanceof AppError)) return 'engine_error';
  if (e.code === 'queue_full') return 'queue_full';
  if (e.code === 'internal_error' || e.code === 'model_not_ready' || e.code === 'model_unavailable') return 'engine_error';
  return undefined;
}
