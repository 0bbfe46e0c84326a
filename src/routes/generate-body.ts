/** The /v1/generate body: its JSON schema and its translation into an engine request. */
import { Type, type Static } from 'typebox';
import { AppError } from '../errors.js';
import type { Config } from '../config.js';
import type { GenerateRequest } from '../engine/types.js';
import { samplingDefaults, type GenerationDefaults } from '../engine/model/generation-config.js';

/** The body's JSON schema (checked by fastify), from which its TypeScript type is derived. */
export const generateBodySchema = Type.Object(
  {
    prompt: Type.Optional(Type.String()),
    prompt_token_ids: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 })),
    max_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
    temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })),
    top_p: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    top_k: Type.Optional(Type.Integer({ minimum: 0 })),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 4294967295 })),
    stop: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }))])),
    ignore_eos: Type.Optional(Type.Boolean()),
    logprobs: Type.Optional(Type.Boolean()),
    stream: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export type GenerateBody = Static<typeof generateBodySchema>;

export const DEFAULT_MAX_TOKENS = 64;

/** `defaults`: the served model's generation_config.json values for what the body leaves out. */
export function toGenerateRequest(
  body: GenerateBody,
  adapter: string | null,
  limits: Config['limits'],
  signal?: AbortSignal,
  defaults?: GenerationDefaults,
): GenerateRequest {
  if ((body.prompt === undefined) === (body.prompt_token_ids === undefined)) {
    throw new AppError('invalid_request', 'Send exactly one of prompt (a string) or prompt_token_ids (an array of integers).');
  }
  if (body.prompt !== undefined && body.prompt.length > limits.maxPromptChars) {
    throw new AppError('invalid_request', `prompt has ${body.prompt.length} characters; the limit is ${limits.maxPromptChars}.`);
  }
  const maxTokens = body.max_tokens ?? DEFAULT_MAX_TOKENS;
  if (maxTokens > limits.maxTokens) throw new AppError('invalid_request', `max_tokens ${maxTokens} is above this server's limit of ${limits.maxTokens}.`);
  const stop = body.stop === undefined ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  if (stop.length > limits.maxStopSequences)
    throw new AppError('invalid_request', `stop has ${stop.length} sequences; the limit is ${limits.maxStopSequences}.`);
  if (stop.some((s) => s.length > limits.maxStopLength))
    throw new AppError('invalid_request', `A stop sequence is longer than ${limits.maxStopLength} characters.`);
  return {
    adapter,
    prompt: body.prompt,
    promptTokenIds: body.prompt_token_ids,
    maxTokens,
    temperature: body.temperature ?? samplingDefaults(defaults).temperature,
    topP: body.top_p ?? samplingDefaults(defaults).topP,
    topK: body.top_k ?? samplingDefaults(defaults).topK,
    seed: body.seed,
    stop,
    ignoreEos: body.ignore_eos ?? false,
    logprobs: body.logprobs ?? false,
    signal,
  };
}
