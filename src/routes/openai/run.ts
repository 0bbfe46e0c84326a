/**
 * What both OpenAI endpoints share: sampling parameters -> engine requests, n choices per prompt started
 * on the one engine (same batching and adapters as /v1/generate), their events merged for streaming or
 * collected for a JSON reply.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../errors.js';
import { logRequest } from '../../request-log.js';
import { ROUTE_HEADER } from '../../fallback/route-policy.js';
import { endSse, sendSse, startSse } from '../sse.js';
import type { Config } from '../../config.js';
import type { Engine, Generation } from '../../engine/engine.js';
import type { FinishEvent, GenerateRequest, TokenEvent } from '../../engine/types.js';
import { invalidParam, toOpenAIBody } from './errors.js';
import type { JsonMode } from './json-mode.js';
import type { CommonBody } from './schemas.js';

/** Choices one request may start in all (prompts x n). */
export const MAX_TOTAL_CHOICES = 64;

export interface Sampling {
  temperature: number;
  topP: number;
  topK: number;
  seed?: number;
  stop: string[];
  ignoreEos: boolean;
}

/** Refuses OpenAI parameters this server does not implement when set to anything but their no-op value. */
export function rejectUnsupported(body: CommonBody): void {
  if (body.frequency_penalty) throw invalidParam('frequency_penalty', 'frequency_penalty is not supported by this server; leave it out or send 0.');
  if (body.presence_penalty) throw invalidParam('presence_penalty', 'presence_penalty is not supported by this server; leave it out or send 0.');
  if (body.logit_bias && Object.keys(body.logit_bias).length) throw invalidParam('logit_bias', 'logit_bias is not supported by this server; leave it out or send {}.');
}

export function samplingFrom(body: CommonBody, limits: Config['limits']): Sampling {
  const stop = body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  if (stop.length > limits.maxStopSequences) throw invalidParam('stop', `stop has ${stop.length} sequences; the limit is ${limits.maxStopSequences}.`);
  if (stop.some((s) => s.length > limits.maxStopLength)) throw invalidParam('stop', `A stop sequence is longer than ${limits.maxStopLength} characters.`);
  return {
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    topK: body.top_k ?? 0,
    seed: body.seed ?? undefined,
    stop,
    ignoreEos: body.ignore_eos ?? false,
  };
}

/** max_tokens checked against the server limit; `fallback` when the request leaves it out. */
export function maxTokensFrom(value: number | null | undefined, param: string, limits: Config['limits'], fallback: number): number {
  if (value === null || value === undefined) return Math.max(1, Math.min(fallback, limits.maxTokens));
  if (value > limits.maxTokens) throw invalidParam(param, `${param} ${value} is above this server's limit of ${limits.maxTokens}.`);
  return value;
}

/** Seeds are 32-bit for the engine's generator; any integer is taken modulo 2^32. */
export function choiceSeed(seed: number | undefined, i: number): number | undefined {
  if (seed === undefined) return undefined;
  const m = 2 ** 32;
  return (((seed + i) % m) + m) % m;
}

export interface Choice {
  /** OpenAI's choice index: promptIndex * n + i. */
  index: number;
  promptIndex: number;
  generation: Generation;
}

export interface StartOptions {
  adapter: string | null;
  prompts: number[][];
  n: number;
  /** Per prompt. */
  maxTokens: (promptIndex: number) => number;
  sampling: Sampling;
  logprobs: boolean;
  topLogprobs: number;
  jsonMode: JsonMode | null;
  abort: AbortController;
}

/**
 * Starts every choice. With a seed, choice i of a prompt uses seed + i, so the n choices differ and a
 * single-choice request with the same seed reproduces choice 0. If one cannot start (queue full, context
 * too long) the ones already started are cancelled and the error is thrown.
 */
export function startChoices(engine: Engine, o: StartOptions): Choice[] {
  if (o.prompts.length * o.n > MAX_TOTAL_CHOICES) {
    throw invalidParam('n', `This request asks for ${o.prompts.length * o.n} choices (prompts x n); the limit is ${MAX_TOTAL_CHOICES}.`);
  }
  const choices: Choice[] = [];
  try {
    o.prompts.forEach((promptTokenIds, promptIndex) => {
      for (let i = 0; i < o.n; i++) {
        const request: GenerateRequest = {
          adapter: o.adapter,
          promptTokenIds,
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
        const generation = engine.start(request, o.jsonMode ? { constraint: o.jsonMode.start() } : {});
        choices.push({ index: promptIndex * o.n + i, promptIndex, generation });
      }
    });
  } catch (e) {
    if (choices.length) o.abort.abort();
    throw e;
  }
  return choices;
}

export type ChoiceEvent = { choice: Choice; event: TokenEvent | FinishEvent };

/** The events of all choices as they come. Throws the first failure (the caller cancels the rest). */
export async function* mergeEvents(choices: Choice[]): AsyncGenerator<ChoiceEvent> {
  const iterators = choices.map((c) => c.generation.events[Symbol.asyncIterator]());
  type Settled = { i: number; result?: IteratorResult<TokenEvent | FinishEvent>; error?: unknown };
  const pull = (i: number): Promise<Settled> =>
    iterators[i].next().then(
      (result) => ({ i, result }),
      (error: unknown) => ({ i, error }),
    );
  const pending = new Map<number, Promise<Settled>>(iterators.map((_, i) => [i, pull(i)]));
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
      for await (const event of choice.generation.events) {
        if (event.type === 'token') tokens.push(event);
        else return { choice, tokens, finish: event };
      }
      throw new Error('the generation ended without a finish event');
    }),
  );
}

export function completionId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Length in code points (OpenAI's text_offset counts characters as Python does). */
export function codePoints(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff || i + 1 >= text.length) n++;
    else {
      const d = text.charCodeAt(i + 1);
      n++;
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  return n;
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
    promptTokens += c.generation.promptTokens;
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
export async function streamChoices(request: FastifyRequest, reply: FastifyReply, abort: AbortController, choices: Choice[], handlers: StreamHandlers): Promise<FastifyReply> {
  const events = mergeEvents(choices);
  let first: IteratorResult<ChoiceEvent>;
  try {
    first = await events.next();
  } catch (e) {
    abort.abort();
    throw e;
  }
  startSse(reply, { [ROUTE_HEADER]: 'local' });
  const handle = (e: ChoiceEvent) => {
    if (e.event.type === 'finish') logFinish(request, e.event);
    handlers.event(e);
  };
  try {
    handlers.begin();
    if (!first.done) handle(first.value);
    for await (const e of events) handle(e);
    handlers.end();
  } catch (e) {
    abort.abort();
    const error = e instanceof AppError ? e : new AppError('internal_error', 'The generation failed.');
    if (!(e instanceof AppError)) request.log.error({ err: e }, 'generation failed mid-stream');
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
  reply.header(ROUTE_HEADER, 'local');
  return collected;
}
