/**
 * The engine-facing API: a schema compiled against a vocabulary, and one decoding state per
 * sequence that masks logits and advances token by token.
 */
import { Frame, JsonAutomaton, stateKey } from './json-automaton.js';
import type { JsonSchema } from './json-schema.js';
import { MaskCache } from './mask-cache.js';
import { compileSchema } from './schema-compiler.js';
import { allowedCount, applyTokenMask, computeTokenMask, type TokenMask } from './token-mask.js';
import type { TokenVocabulary } from './token-vocabulary.js';

export interface JsonConstraintOptions {
  /** OpenAI's json_schema `strict`: never generate undeclared properties. Default false. */
  strict?: boolean;
  /** Longest run of whitespace bytes between two JSON syntax elements. Default 16. */
  maxWhitespaceRun?: number;
  /** Deepest object/array nesting inside free-form values (json_object mode, untyped parts of a schema). Default 32. */
  maxFreeFormNesting?: number;
  /** Token masks cached per automaton state (shared by all sequences of this constraint). Default 4096. */
  maxCachedMasks?: number;
}

export const DEFAULT_MAX_WHITESPACE_RUN = 16;
export const DEFAULT_MAX_FREE_FORM_NESTING = 32;

export interface JsonConstraintState {
  /** Sets the logits of tokens that are not allowed next to -Infinity. EOS is allowed only once the value is complete. */
  maskLogits(logits: Float32Array): void;
  /** Advances by one token; throws if the token is not allowed. */
  accept(tokenId: number): void;
  /** Whether the token would be allowed next (does not advance). */
  allows(tokenId: number): boolean;
  /** A complete JSON value has been produced (EOS is allowed, or was accepted). */
  isComplete(): boolean;
  /** EOS has been accepted. */
  isFinished(): boolean;
  allowedTokenCount(): number;
  /** The allowed token ids, ascending (for tests and debugging; allocates). */
  allowedTokenIds(): number[];
}

export interface JsonConstraint {
  readonly vocabulary: TokenVocabulary;
  start(): JsonConstraintState;
  readonly cacheStats: { readonly hits: number; readonly misses: number; readonly size: number };
}

const compiledByVocabulary = new WeakMap<TokenVocabulary, Map<string, CompiledJsonConstraint>>();
const MAX_COMPILED_PER_VOCABULARY = 16;

/**
 * Compiles `schema` (null: json_object mode, any JSON object) for `vocabulary`. Throws
 * UnsupportedSchemaError for schemas outside the supported subset. Identical requests share
 * one compiled constraint (and its mask cache).
 */
export function compileJsonConstraint(schema: JsonSchema | null, vocabulary: TokenVocabulary, options: JsonConstraintOptions = {}): JsonConstraint {
  const maxWhitespaceRun = options.maxWhitespaceRun ?? DEFAULT_MAX_WHITESPACE_RUN;
  const maxFreeFormNesting = options.maxFreeFormNesting ?? DEFAULT_MAX_FREE_FORM_NESTING;
  for (const [name, value] of Object.entries({ maxWhitespaceRun, maxFreeFormNesting, maxCachedMasks: options.maxCachedMasks ?? 0 })) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  }
  const key = JSON.stringify([schema, options.strict ?? false, maxWhitespaceRun, maxFreeFormNesting, options.maxCachedMasks ?? null]);
  let compiled = compiledByVocabulary.get(vocabulary);
  if (!compiled) {
    compiled = new Map();
    compiledByVocabulary.set(vocabulary, compiled);
  }
  const known = compiled.get(key);
  if (known) {
    compiled.delete(key);
    compiled.set(key, known);
    return known;
  }
  assertVocabularyCanFinishJson(vocabulary);
  const automaton = new JsonAutomaton(compileSchema(schema, options), maxWhitespaceRun, maxFreeFormNesting);
  const constraint = new CompiledJsonConstraint(vocabulary, automaton, options.maxCachedMasks ?? 4096);
  compiled.set(key, constraint);
  if (compiled.size > MAX_COMPILED_PER_VOCABULARY) compiled.delete(compiled.keys().next().value as string);
  return constraint;
}

/**
 * The no-dead-end guarantee is at byte level; it holds for tokens only if every byte the
 * grammar may need next exists as a token of its own (true of byte-level BPE vocabularies).
 */
function assertVocabularyCanFinishJson(vocabulary: TokenVocabulary): void {
  const missing: number[] = [];
  for (let byte = 0x20; byte <= 0x7e; byte++) if (vocabulary.singleByteTokenIds[byte] < 0) missing.push(byte);
  if (vocabulary.hasPartialUtf8Tokens) for (let byte = 0x80; byte <= 0xbf; byte++) if (vocabulary.singleByteTokenIds[byte] < 0) missing.push(byte);
  if (missing.length > 0) {
    const shown = missing
      .slice(0, 8)
      .map((byte) => `0x${byte.toString(16)}`)
      .join(', ');
    throw new Error(
      `JSON mode needs a single-byte token for every printable ASCII byte (and UTF-8 continuation byte); this vocabulary lacks ${missing.length}: ${shown}`,
    );
  }
  if (vocabulary.eosTokenIds.length === 0) throw new Error('JSON mode needs at least one EOS token id');
}

class CompiledJsonConstraint implements JsonConstraint {
  private readonly cache: MaskCache;
  readonly scratch: Float32Array;

  constructor(
    readonly vocabulary: TokenVocabulary,
    readonly automaton: JsonAutomaton,
    maxCachedMasks: number,
  ) {
    // At most ~8 full vocabularies' worth of ids (4 MB of Int32 for a 128k vocabulary) per constraint.
    this.cache = new MaskCache(maxCachedMasks, 8 * vocabulary.size);
    this.scratch = new Float32Array(vocabulary.size);
  }

  start(): JsonConstraintState {
    return new SequenceState(this, this.automaton.initial());
  }

  maskFor(state: Frame): TokenMask {
    const key = stateKey(state, this.vocabulary.maxTokenLength);
    let mask = this.cache.get(key);
    if (!mask) {
      mask = computeTokenMask(this.automaton, this.vocabulary, state);
      this.cache.set(key, mask);
    }
    return mask;
  }

  get cacheStats() {
    return { hits: this.cache.hits, misses: this.cache.misses, size: this.cache.size };
  }
}

const EOS_ACCEPTED = Symbol('finished');

class SequenceState implements JsonConstraintState {
  private finished = false;

  constructor(
    private readonly constraint: CompiledJsonConstraint,
    private state: Frame,
  ) {}

  maskLogits(logits: Float32Array): void {
    applyTokenMask(this.currentMask(), logits, this.constraint.vocabulary.size, this.constraint.scratch);
  }

  accept(tokenId: number): void {
    const next = this.next(tokenId);
    if (next === null) throw new Error(`token ${tokenId} is not allowed here by the JSON constraint`);
    if (next === EOS_ACCEPTED) this.finished = true;
    else this.state = next;
  }

  allows(tokenId: number): boolean {
    return this.next(tokenId) !== null;
  }

  isComplete(): boolean {
    return this.finished || this.constraint.automaton.canEnd(this.state);
  }

  isFinished(): boolean {
    return this.finished;
  }

  allowedTokenCount(): number {
    return allowedCount(this.currentMask(), this.constraint.vocabulary.size);
  }

  allowedTokenIds(): number[] {
    const mask = this.currentMask();
    if (mask.kind === 'allow') return Array.from(mask.ids).sort((a, b) => a - b);
    const denied = new Uint8Array(this.constraint.vocabulary.size);
    for (const id of mask.ids) denied[id] = 1;
    const allowed: number[] = [];
    denied.forEach((isDenied, id) => {
      if (!isDenied) allowed.push(id);
    });
    return allowed;
  }

  private currentMask(): TokenMask {
    if (this.finished) return { kind: 'allow', ids: this.constraint.vocabulary.eosTokenIds };
    return this.constraint.maskFor(this.state);
  }

  /** The state after `tokenId`, EOS_ACCEPTED when it is an accepted EOS, or null. */
  private next(tokenId: number): Frame | typeof EOS_ACCEPTED | null {
    const vocabulary = this.constraint.vocabulary;
    if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= vocabulary.size) return null;
    if (vocabulary.isEos[tokenId]) return this.isComplete() ? EOS_ACCEPTED : null;
    if (this.finished) return null;
    const bytes = vocabulary.tokenBytes[tokenId];
    if (bytes.length === 0) return null;
    return this.constraint.automaton.stepBytes(this.state, bytes);
  }
}
