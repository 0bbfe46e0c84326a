/**
 * The choices of both OpenAI endpoints: n choices per prompt dispatched as /v1/generate dispatches (the one
 * engine's batching and adapters, or the adapter's Bedrock target), their events merged for streaming or
 * collected for a JSON reply. Request parameters -> engine terms: parameters.ts; ids and offsets: response-fields.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../errors.js';
import { EngineError } from '../../engine/errors.js';
import { logRequest } from '../../request-log.js';
import { ROUTE_HEADER, type Route } from '../../fallback/route-policy.js';
import { dispatchGeneration, type Dispatched } from '../dispatch.js';
import { endSse, sendSse, startSse } from '../sse.js';
import type { FinishEvent, GenerateRequest, GenerationEvent, TokenEvent } from '../../engine/types.js';
import { invalidParam, toOpenAIBody, toOpenAIError } from './errors.js';
import type { ResponseFormatData } from '../../engine/engine.js';
import { choiceSeed, type Sampling } from './parameters.js';

/** Choices one request may start in all (prompts x n). */
export const MAX_TOTAL_CHOICES = 64;

export interface Choice {
  /** OpenAI's choice index: promptIndex * n + i. */
  index: number;
  promptIndex: number;
  /** The dispatched generation (local engine or Bedrock); its route is final after its first event. */
  dispatched: Dispatched;
  /** Prompt tokens: known up front on the local route, taken from the finish event's usage otherwise. */
  promptTokens: number | null;
  /** The first event, read before the headers went out (see peekChoices), handed out again first. */
  peeked?: IteratorResult<GenerationEvent>;
}

/**
 * One prompt: its token ids for the local engine and, when it was given (or rendered) as text, that text,
 * which is what Bedrock gets. A prompt without text (token ids) can only run locally.
 */
export interface PromptInput {
  ids: number[];
  text?: string;
}

export interface StartOptions {
  adapter: string | null;
  prompts: PromptInput[];
  n: number;
  /** Per prompt. */
  maxTokens: (promptIndex: number) => number;
  sampling: Sampling;
  logprobs: boolean;
  topLogprobs: number;
  /** JSON mode as the engine takes it (jsonModeFor), or null. */
  jsonMode: ResponseFormatData | null;
  abort: AbortController;
  /** The `route` query parameter (auto, local, bedrock; absent is auto). */
  route: unknown;
  /** The client streams (Bedrock is then called with its streaming API). */
  stream: boolean;
}

/**
 * Starts every choice through dispatchGeneration, as /v1/generate does: local engine or the adapter's
 * Bedrock target, with overflow to Bedrock on a full local queue or a local failure before the first token.
 * With a seed, choice i of a prompt uses seed + i, so the n choices differ and a single-choice request with
 * the same seed reproduces choice 0. If one cannot start (queue full without a target, context too long,
 * a route that cannot serve) the ones already started are cancelled and the error is thrown.
 */
export function startChoices(app: FastifyInstance, o: StartOptions): Choice[] {
  if (o.prompts.length * o.n > MAX_TOTAL_CHOICES) {
    throw invalidParam('n', `This request asks for ${o.prompts.length * o.n} choices (prompts x n); the limit is ${MAX_TOTAL_CHOICES}.`);
  }
  const choices: Choice[] = [];
  try {
    o.prompts.forEach((prompt, promptIndex) => {
      for (let i = 0; i < o.n; i++) {
        const request: GenerateRequest = {
          adapter: o.adapter,
          ...(prompt.text !== undefined ? { prompt: prompt.text } : { promptTokenIds: prompt.ids }),
          maxTokens: o.maxTokens(promptIndex),
          temperature: o.sampling.temperature,
          topP: o.sampling.topP,
          topK: o.sampling.topK,
          seed: choiceSeed(o.sampling.seed, i),
          stop: o.sampling.stop,
          ignoreEos: o.sampling.ignoreEos,
          logprobs: o.logprobs,
          topLogprobs: o.topLogprobs,
          signal: o.abort.signal,
        };
        const dispatched = dispatchGeneration(app, request, o.route, {
          stream: o.stream,
          ...(o.jsonMode ? { responseFormat: o.jsonMode } : {}),
          ...(prompt.text !== undefined ? { localPromptTokenIds: prompt.ids } : {}),
        });
        choices.push({ index: promptIndex * o.n + i, promptIndex, dispatched, promptTokens: dispatched.promptTokens });
      }
    });
  } catch (e) {
    if (choices.length) o.abort.abort();
    throw e;
  }
  return choices;
}

/** A choice's next event (the peeked one first); a finish event's usage gives its prompt tokens. */
async function nextEvent(choice: Choice): Promise<IteratorResult<GenerationEvent>> {
  let result: IteratorResult<GenerationEvent>;
  if (choice.peeked) {
    result = choice.peeked;
    choice.peeked = undefined;
  } else {
    result = await choice.dispatched.events.next();
  }
  if (!result.done && result.value.type === 'finish') choice.promptTokens = result.value.usage.promptTokens;
  return result;
}

/**
 * Reads every choice's first event, so that each one's route is final (an overflow to Bedrock happens
 * before the first event) and a failure before any token still gets its HTTP status. A failure cancels the
 * others and is thrown.
 */
export async function peekChoices(abort: AbortController, choices: Choice[]): Promise<void> {
  try {
    await Promise.all(
      choices.map(async (c) => {
        c.peeked = await c.dispatched.events.next();
      }),
    );
  } catch (e) {
    abort.abort();
    throw e;
  }
}

/**
 * The route of the whole response: `bedrock` when any choice was served by Bedrock (with n > 1 the choices
 * may split between the routes when some overflow), `local` otherwise.
 */
export function routeOf(choices: Choice[]): Route {
  return choices.some((c) => c.dispatched.route === 'bedrock') ? 'bedrock' : 'local';
}

export type ChoiceEvent = { choice: Choice; event: TokenEvent | FinishEvent };

/** The events of all choices as they come. Throws the first failure (the caller cancels the rest). */
export async function* mergeEvents(choices: Choice[]): AsyncGenerator<ChoiceEvent> {
  type Settled = { i: number; result?: IteratorResult<GenerationEvent>; error?: unknown };
  const pull = (i: number): Promise<Settled> =>
    nextEvent(choices[i]).then(
      (result) => ({ i, result }),
      (error: unknown) => ({ i, error }),
    );
  const pending = new Map<number, Promise<Settled>>(choices.map((_, i) => [i, pull(i)]));
  while (pending.size) {
    const settled = await Promise.race(pending.values());
    pending.delete(settled.i);
    if (settled.error !== undefined) throw settled.error;
    if (settled.result!.done) continue;
    pending.set(settled.i, pull(settled.i));
    yield { choice: choices[settled.i], event: settled.result!.value };
  }
}

export interface CollectedChoice {
  choice: Choice;
  tokens: TokenEvent[];
  finish: FinishEvent;
}

/** Runs every choice to its end. */
export async function collectChoices(choices: Choice[]): Promise<CollectedChoice[]> {
  return Promise.all(
    choices.map(async (choice) => {
      const tokens: TokenEvent[] = [];
      for (let next = await nextEvent(choice); !next.done; next = await nextEvent(choice)) {
        const event = next.value;
        if (event.type === 'token') tokens.push(event);
        else return { choice, tokens, finish: event };
      }
      throw new Error('the generation ended without a finish event');
    }),
  );
}

export interface UsageBody {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Usage of a request: each prompt counted once, however many choices it has. */
export function usageOf(choices: Choice[], completionTokens: number): UsageBody {
  const seen = new Set<number>();
  let promptTokens = 0;
  for (const c of choices) {
    if (seen.has(c.promptIndex)) continue;
    seen.add(c.promptIndex);
    promptTokens += c.promptTokens ?? 0;
  }
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** Adds a finished choice to the request's log line (token counts summed, the slowest choice's timings). */
export function logFinish(request: FastifyRequest, finish: FinishEvent): void {
  const log = request.requestLog;
  log.completionTokens = (log.completionTokens ?? 0) + finish.usage.completionTokens;
  log.finishReason = finish.finishReason;
  const previous = log.timings as FinishEvent['timings'] | undefined;
  if (!previous || previous.totalMs < finish.timings.totalMs) log.timings = finish.timings;
}

export interface StreamHandlers {
  /** Right after the headers went out (e.g. chat's role chunks). */
  begin(): void;
  event(e: ChoiceEvent): void;
  /** After the last choice finished (e.g. the usage chunk). */
  end(): void;
}

/**
 * Streams the choices as server-sent events ending with `data: [DONE]`. The headers wait for the first
 * event, so a failure before any token (an adapter that fails to load, a timeout in the queue) still gets
 * its HTTP status; a later failure is sent as a `data: {"error": ...}` event, which OpenAI's clients raise.
 */
export async function streamChoices(
  request: FastifyRequest,
  reply: FastifyReply,
  abort: AbortController,
  choices: Choice[],
  handlers: StreamHandlers,
): Promise<FastifyReply> {
  await peekChoices(abort, choices);
  const route = routeOf(choices);
  noteRoute(request, choices);
  const events = mergeEvents(choices);
  let first: IteratorResult<ChoiceEvent>;
  try {
    first = await events.next();
  } catch (e) {
    abort.abort();
    throw e;
  }
  startSse(reply, { [ROUTE_HEADER]: route });
  const handle = (e: ChoiceEvent) => {
    if (e.event.type === 'finish') logFinish(request, e.event);
    handlers.event(e);
  };
  try {
    handlers.begin();
    if (!first.done) handle(first.value);
    for await (const e of events) handle(e);
    handlers.end();
    request.requestLog.promptTokens = usageOf(choices, 0).prompt_tokens;
  } catch (e) {
    abort.abort();
    const known = e instanceof AppError || e instanceof EngineError;
    const error = known ? toOpenAIError(e) : new AppError('internal_error', 'The generation failed.');
    if (!known) request.log.error({ err: e }, 'generation failed mid-stream');
    request.requestLog.error = error.code;
    sendSse(reply, toOpenAIBody(error));
  }
  endSse(reply);
  logRequest(request, 200);
  return reply;
}

/** Runs the choices to their end for a JSON reply; a failure cancels the others and is thrown. */
export async function collectAll(request: FastifyRequest, reply: FastifyReply, abort: AbortController, choices: Choice[]): Promise<CollectedChoice[]> {
  let collected: CollectedChoice[];
  try {
    collected = await collectChoices(choices);
  } catch (e) {
    abort.abort();
    throw e;
  }
  for (const c of collected) logFinish(request, c.finish);
  noteRoute(request, choices);
  request.requestLog.promptTokens = usageOf(choices, 0).prompt_tokens;
  reply.header(ROUTE_HEADER, routeOf(choices));
  return collected;
}

/** The response's route (and the prompt tokens known so far) in the request's log line. */
export function noteRoute(request: FastifyRequest, choices: Choice[]): void {
  request.requestLog.route = routeOf(choices);
  if (choices.every((c) => c.promptTokens !== null)) request.requestLog.promptTokens = usageOf(choices, 0).prompt_tokens;
}
