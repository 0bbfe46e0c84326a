/**
 * The OpenAI endpoints' request parameters in the engine's terms: sampling (with the model's generation_config
 * defaults), max_tokens against the server's limit, per-choice seeds, and the parameters this server refuses.
 */
import type { Config } from '../../config.js';
import { samplingDefaults, type GenerationDefaults } from '../../engine/model/generation-config.js';
import { invalidParam } from './errors.js';
import type { CommonBody } from './schemas.js';

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
  if (body.logit_bias && Object.keys(body.logit_bias).length)
    throw invalidParam('logit_bias', 'logit_bias is not supported by this server; leave it out or send {}.');
}

/** `defaults`: the served model's generation_config.json values for what the body leaves out. */
export function samplingFrom(body: CommonBody, limits: Config['limits'], defaults?: GenerationDefaults): Sampling {
  const stop = body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  if (stop.length > limits.maxStopSequences) throw invalidParam('stop', `stop has ${stop.length} sequences; the limit is ${limits.maxStopSequences}.`);
  if (stop.some((s) => s.length > limits.maxStopLength)) throw invalidParam('stop', `A stop sequence is longer than ${limits.maxStopLength} characters.`);
  return {
    temperature: body.temperature ?? samplingDefaults(defaults).temperature,
    topP: body.top_p ?? samplingDefaults(defaults).topP,
    topK: body.top_k ?? samplingDefaults(defaults).topK,
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
