/**
 * Log-probabilities in OpenAI's two shapes. A token is shown as the text of its own bytes (U+FFFD where a
 * token ends inside a UTF-8 character; chat's `bytes` then holds the exact bytes); special tokens, which
 * have no bytes, are shown by their name.
 */
import { TextTokenizer } from '../../engine/model/tokenizer.js';
import type { TokenEvent, TopLogprob } from '../../engine/types.js';

const decoder = new TextDecoder('utf-8');
const encoder = new TextEncoder();

export class TokenStrings {
  private readonly bytesTable: Uint8Array[];
  private readonly texts = new Map<number, string>();

  constructor(
    private readonly tokenizer: TextTokenizer,
    /** vLLM's return_tokens_as_token_ids: show tokens as `token_id:<id>`. */
    private readonly asIds = false,
    /** Every token's bytes; the engine client's table (built in the worker) where there is one. */
    bytesTable: Uint8Array[] = tokenizer.tokenBytes(),
  ) {
    this.bytesTable = bytesTable;
  }

  /** The same strings, or `token_id:<id>` ones. */
  withIds(asIds: boolean): TokenStrings {
    return asIds === this.asIds ? this : new TokenStrings(this.tokenizer, asIds, this.bytesTable);
  }

  text(id: number): string {
    if (this.asIds) return `token_id:${id}`;
    let text = this.texts.get(id);
    if (text === undefined) {
      const bytes = this.bytesTable[id];
      text = bytes && bytes.length ? decoder.decode(bytes) : (this.tokenizer.idToToken(id) ?? this.tokenizer.decode([id], false));
      this.texts.set(id, text);
    }
    return text;
  }

  bytes(id: number): number[] {
    const bytes = this.bytesTable[id];
    if (bytes && bytes.length) return Array.from(bytes);
    return Array.from(encoder.encode(this.tokenizer.idToToken(id) ?? this.tokenizer.decode([id], false)));
  }
}

const tokenStrings = new WeakMap<TextTokenizer, TokenStrings>();

/** The token strings of an engine (its client: token bytes from the worker) or of a bare tokenizer. */
export function tokenStringsFor(source: TextTokenizer | { tokenizer: TextTokenizer; tokenBytes(): Uint8Array[] }, asIds = false): TokenStrings {
  const tokenizer = source instanceof TextTokenizer ? source : source.tokenizer;
  let strings = tokenStrings.get(tokenizer);
  if (!strings) {
    strings = new TokenStrings(tokenizer, false, source.tokenBytes());
    tokenStrings.set(tokenizer, strings);
  }
  return strings.withIds(asIds);
}

/** /v1/completions `logprobs` (the legacy shape): parallel arrays. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

export function emptyCompletionLogprobs(): CompletionLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/**
 * Adds one generated token. `offset` is where its text starts in the choice's text: the length of the
 * text sent before it (a token whose text is held back, e.g. inside a UTF-8 character or a possible stop
 * sequence, gets the position the text had reached). The top dictionary holds the k most likely tokens
 * and the sampled one (so up to k + 1 entries, as OpenAI documents).
 */
export function addCompletionLogprob(into: CompletionLogprobs, strings: TokenStrings, event: TokenEvent, offset: number): void {
  const token = strings.text(event.tokenId);
  into.tokens.push(token);
  into.token_logprobs.push(event.logprob ?? 0);
  const top: Record<string, number> = {};
  for (const alt of event.topLogprobs ?? []) {
    const name = strings.text(alt.tokenId);
    if (!(name in top) || top[name] < alt.logprob) top[name] = alt.logprob;
  }
  if (!(token in top) && event.logprob !== undefined) top[token] = event.logprob;
  into.top_logprobs.push(top);
  into.text_offset.push(offset);
}

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

export function chatLogprob(strings: TokenStrings, event: TokenEvent): ChatTokenLogprob {
  const alt = (a: TopLogprob): ChatTopLogprob => ({ token: strings.text(a.tokenId), logprob: a.logprob, bytes: strings.bytes(a.tokenId) });
  return {
    token: strings.text(event.tokenId),
    logprob: event.logprob ?? 0,
    bytes: strings.bytes(event.tokenId),
    top_logprobs: (event.topLogprobs ?? []).map(alt),
  };
}
