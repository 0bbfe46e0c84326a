/**
 * A checkpoint's generation_config.json, used as transformers and vLLM use it (vLLM's `--generation-config auto`):
 * its `eos_token_id` (one id or a list) joins config.json's stop tokens, and the sampling values it sets become the
 * defaults of requests that leave them out: `temperature`, `top_p`, `top_k`, and `max_new_tokens` as the default
 * `max_tokens` where the API has none (chat completions). Values the file does not set keep the server's own
 * defaults (temperature 1, top_p 1, top_k off). `do_sample` is not read (vLLM does not either: a request's
 * temperature decides). `repetition_penalty` is not implemented: a value other than 1 is reported as ignored.
 * `none` (`--generation-config none`) ignores the file for sampling; its stop tokens still count, since a model that
 * does not stop at the end of its turn is wrong whatever the sampling.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelConfigError } from './hf-config.js';

/** `--generation-config`: auto = the checkpoint's sampling values are request defaults; none = ignored. */
export type GenerationConfigMode = 'auto' | 'none';

/** Request defaults from generation_config.json (plain data: it crosses the worker boundary). */
export interface GenerationDefaults {
  /** `generation_config.json` when sampling defaults come from it; null when none do (no file, mode none, or no values). */
  source: string | null;
  temperature?: number;
  topP?: number;
  topK?: number;
  /** The default max_tokens where the API has none (chat completions). */
  maxTokens?: number;
  /** Stop tokens the file adds to config.json's. */
  eosTokenIds: number[];
  /** Settings the file holds that this server does not apply, with why (for the start-up log and /readyz). */
  ignored: string[];
}

export const NO_GENERATION_DEFAULTS: GenerationDefaults = { source: null, eosTokenIds: [], ignored: [] };

export function readGenerationConfig(modelDir: string, mode: GenerationConfigMode = 'auto'): GenerationDefaults {
  const file = join(modelDir, 'generation_config.json');
  if (!existsSync(file)) return { ...NO_GENERATION_DEFAULTS };
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ModelConfigError(file, `cannot read or parse: ${(e as Error).message}; fix it, or remove it`);
  }
  return parseGenerationConfig(raw, mode, file);
}

export function parseGenerationConfig(raw: Record<string, unknown>, mode: GenerationConfigMode, file = 'generation_config.json'): GenerationDefaults {
  const eos = raw.eos_token_id;
  const eosTokenIds = eos == null ? [] : Array.isArray(eos) ? eos : [eos];
  if (!eosTokenIds.every((id) => Number.isInteger(id) && (id as number) >= 0))
    throw new ModelConfigError(file, `eos_token_id must be a token id or a list of them, got ${JSON.stringify(eos)}`);
  const defaults: GenerationDefaults = { source: null, eosTokenIds: eosTokenIds as number[], ignored: [] };
  if (mode === 'none') return defaults;

  const problem = (key: string, range: string) =>
    new ModelConfigError(
      file,
      `${key} ${JSON.stringify(raw[key])} is outside what this server accepts (${range}); fix the file or start with --generation-config none`,
    );
  const number = (key: string, ok: (v: number) => boolean, range: string): number | undefined => {
    if (raw[key] == null) return undefined;
    const v = raw[key];
    if (typeof v !== 'number' || !ok(v)) throw problem(key, range);
    return v;
  };
  const temperature = number('temperature', (v) => v >= 0 && v <= 2, '0 to 2');
  const topP = number('top_p', (v) => v > 0 && v <= 1, 'above 0, at most 1');
  const topK = number('top_k', (v) => Number.isInteger(v) && v >= 0, 'an integer, 0 = off');
  const maxTokens = number('max_new_tokens', (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  const penalty = number('repetition_penalty', (v) => v > 0, 'above 0');
  if (penalty !== undefined && penalty !== 1) defaults.ignored.push(`repetition_penalty ${penalty} (not implemented by this server)`);
  Object.assign(defaults, {
    ...(temperature !== undefined ? { temperature } : {}),
    ...(topP !== undefined ? { topP } : {}),
    ...(topK !== undefined ? { topK } : {}),
    ...(maxTokens !== undefined ? { maxTokens } : {}),
  });
  if (temperature !== undefined || topP !== undefined || topK !== undefined || maxTokens !== undefined) defaults.source = 'generation_config.json';
  return defaults;
}

/** The sampling values a request gets when it leaves them out: the file's where it sets them, the server's otherwise. */
export function samplingDefaults(d: GenerationDefaults | null | undefined): { temperature: number; topP: number; topK: number } {
  return { temperature: d?.temperature ?? 1, topP: d?.topP ?? 1, topK: d?.topK ?? 0 };
}
