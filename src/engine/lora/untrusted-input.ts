/**
 * Guards for files that come from users (adapter directories): bounded JSON reading (size and nesting
 * checked before parsing) and PEFT module-name patterns that cannot backtrack catastrophically.
 * Problems are thrown as UntrustedInputError with a message that the caller prefixes with the file.
 */
import { readFileSync, statSync } from 'node:fs';

export class UntrustedInputError extends Error {
  constructor(problem: string) {
    super(problem);
    this.name = 'UntrustedInputError';
  }
}

/** adapter_config.json files are a few KiB; even per-layer rank patterns for 100 layers stay far below this. */
export const MAX_ADAPTER_CONFIG_BYTES = 256 * 1024;
/** Real configs nest 2-3 levels; deeper nesting only serves to exhaust the stack of recursive code. */
export const MAX_JSON_DEPTH = 64;

/** True when the JSON text nests objects/arrays deeper than `max` (a linear scan, strings skipped). */
export function jsonNestingExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** Reads and parses a JSON file of at most maxBytes, nested at most maxDepth levels. */
export function readUntrustedJson(file: string, maxBytes = MAX_ADAPTER_CONFIG_BYTES, maxDepth = MAX_JSON_DEPTH): unknown {
  const size = statSync(file).size;
  if (size > maxBytes) throw new UntrustedInputError(`is ${size} bytes; adapter configs over ${maxBytes} bytes are refused`);
  const text = readFileSync(file, 'utf8');
  if (jsonNestingExceeds(text, maxDepth)) throw new UntrustedInputError(`is nested more than ${maxDepth} levels deep`);
  return JSON.parse(text);
}

/** Pattern maps (rank_pattern, alpha_pattern) hold at most this many keys, ... */
export const MAX_PATTERN_ENTRIES = 2048;
/** ... of which at most this many use regular-expression syntax beyond a plain module name. */
export const MAX_REGEX_PATTERNS = 64;
const MAX_PATTERN_LENGTH = 256;
const MAX_UNBOUNDED_QUANTIFIERS = 2;
/** |lora_alpha| above this folds weights into float32 overflow territory; no real adapter is near it. */
export const MAX_LORA_ALPHA = 1e6;
const PLAIN_KEY = /^[A-Za-z0-9_.-]+$/;

/**
 * Why a PEFT pattern key is unsafe to run as a regular expression against module names, or null.
 * PEFT matches keys as regexes (`(.*\.)?KEY$`); a key like `(.*)*x` would hang the event loop, so keys
 * may not quantify a group (other than `?`), use backreferences or more than two unbounded quantifiers.
 */
export function patternKeyProblem(key: string): string | null {
  if (key.length === 0) return 'it is empty';
  if (key.length > MAX_PATTERN_LENGTH) return `it is longer than ${MAX_PATTERN_LENGTH} characters`;
  if (PLAIN_KEY.test(key)) return null;
  if (/\\[1-9]|\\k</.test(key)) return 'backreferences are not accepted';
  let unbounded = 0;
  let prev: 'none' | 'atom' | 'group' | 'quantifier' = 'none';
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (c === '\\') {
      i++;
      prev = 'atom';
      continue;
    }
    if (c === '[') {
      i++;
      if (key[i] === '^') i++;
      if (key[i] === ']') i++;
      while (i < key.length && key[i] !== ']') i += key[i] === '\\' ? 2 : 1;
      prev = 'atom';
      continue;
    }
    if (c === '(') {
      if (key[i + 1] === '?') {
        i += 2; // (?:  (?=  (?!  (?<=  (?<!  (?<name>
        if (key[i] === '<' && key[i + 1] !== '=' && key[i + 1] !== '!') while (i < key.length && key[i] !== '>') i++;
        else if (key[i] === '<') i++;
      }
      prev = 'none';
      continue;
    }
    if (c === ')') {
      prev = 'group';
      continue;
    }
    if (c === '|') {
      prev = 'none';
      continue;
    }
    const brace = c === '{' ? /^\{\d+(,\d*)?\}/.exec(key.slice(i)) : null;
    if (c === '*' || c === '+' || c === '?' || brace) {
      if (prev === 'quantifier') {
        if (c === '?') continue; // lazy modifier
        return 'it has a doubled quantifier';
      }
      if (prev === 'group' && c !== '?') return 'it quantifies a group, which can backtrack catastrophically';
      if (c !== '?') unbounded++;
      if (brace) i += brace[0].length - 1;
      prev = 'quantifier';
      continue;
    }
    prev = 'atom';
  }
  if (unbounded > MAX_UNBOUNDED_QUANTIFIERS)
    return `it has more than ${MAX_UNBOUNDED_QUANTIFIERS} repetitions (*, +, {n,m}), which can backtrack for a long time`;
  try {
    new RegExp(`^(.*\\.)?(${key})$`);
  } catch {
    return 'it is not a valid regular expression';
  }
  return null;
}

const preview = (key: string) => JSON.stringify(key.length > 60 ? `${key.slice(0, 60)}…` : key);

/** Checks rank_pattern / alpha_pattern: a plain object, bounded, safe keys, values of the right type. */
export function patternMapProblem(name: 'rank_pattern' | 'alpha_pattern', value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value))
    return `${name} must be an object of module-name patterns, got ${Array.isArray(value) ? 'an array' : typeof value}`;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > MAX_PATTERN_ENTRIES) return `${name} has ${entries.length} entries; at most ${MAX_PATTERN_ENTRIES} are accepted`;
  let regexKeys = 0;
  for (const [key, v] of entries) {
    if (name === 'rank_pattern' && !(Number.isSafeInteger(v) && (v as number) >= 1))
      return `rank_pattern values must be positive integers (got ${typeof v === 'string' ? preview(v) : typeof v === 'number' ? v : typeof v} for ${preview(key)})`;
    if (name === 'alpha_pattern' && !(typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= MAX_LORA_ALPHA)) {
      return `alpha_pattern values must be finite numbers of magnitude at most ${MAX_LORA_ALPHA} (got ${typeof v === 'string' ? preview(v) : typeof v === 'number' ? v : v === null ? 'null' : typeof v} for ${preview(key)})`;
    }
    const problem = patternKeyProblem(key);
    if (problem) return `${name} key ${preview(key)} is not allowed: ${problem}`;
    if (!PLAIN_KEY.test(key) && ++regexKeys > MAX_REGEX_PATTERNS) return `${name} has more than ${MAX_REGEX_PATTERNS} regular-expression keys`;
  }
  return null;
}
