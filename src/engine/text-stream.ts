/**
 * Turns generated token ids into text as it streams, with constant work per token: holds back an
 * incomplete UTF-8 character and any tail that could still become a stop sequence, and cuts the text at
 * the first stop sequence.
 *
 * Incremental detokenization as vLLM does it: per sequence a prefix offset and a read offset into the ids.
 * Each token decodes only the window ids[prefix..] (the tokens read last time, as context, plus the new
 * ones) and emits what the window's text has beyond the context's own text, once that text no longer ends
 * in U+FFFD (an incomplete character: a byte-level BPE token or a SentencePiece byte-fallback token can
 * carry part of a character). Then the read tokens become the next context. Decoding the context with the
 * window, rather than the new tokens alone, keeps the decoder's start-of-text rules (Llama 2's Strip of the
 * leading space, Metaspace's first token, a byte group's BOM) applying to both texts alike, so their
 * difference is what the new tokens add to the whole text: the concatenation of everything pushed equals
 * decoding the whole sequence (test/unit/text-stream.test.ts checks it against the real tokenizers).
 * Special tokens, which decode() skips before its decoders run, never enter the window (a run of them costs
 * nothing). A context that decodes to nothing on its own is not used as one (the previous context is kept),
 * so that a start-of-text rule cannot apply to the next token's text instead.
 *
 * Bounds: a window never holds more than MAX_PENDING_TOKENS unread tokens: a run that long that never
 * completes a character (not valid text from any model) is released as it decodes, U+FFFD included, and
 * the context never grows beyond MAX_CONTEXT_TOKENS (only a Detokenizer without specialTokenIds, given
 * that many skipped special tokens in a row or more, then loses exactness: Llama 2's Strip takes the
 * next token's leading space). Stop sequences go through the shared
 * StopSequenceFilter (src/text/stop-sequences.ts, also the Bedrock route's), which searches only the new
 * text plus at most (longest stop - 1) held-back characters. `fullText` is accumulated, never re-decoded.
 */
import { StopSequenceFilter, truncateAtStop } from '../text/stop-sequences.js';

export interface Detokenizer {
  decode(ids: number[], skipSpecialTokens?: boolean): string;
  /** Tokens that decode() (skipping special tokens, its default) drops before decoding: never put in a window. */
  readonly specialTokenIds?: ReadonlySet<number>;
}

/** Unread tokens after which text ending in U+FFFD is released anyway (a character spans at most 4 bytes). */
export const MAX_PENDING_TOKENS = 32;
/** Context tokens beyond which the context moves on even if the tokens read decode to nothing. */
export const MAX_CONTEXT_TOKENS = 32;

const REPLACEMENT = '\uFFFD';

export class TextStream {
  private readonly ids: number[] = [];
  /** Start of the window decoded at each token: the context. */
  private prefixOffset = 0;
  /** End of the context: tokens from here on have not been emitted yet. */
  private readOffset = 0;
  /** Length of decode(ids[prefixOffset, readOffset)), the context's own text. */
  private prefixLength = 0;
  /** Everything returned so far (push and flush). */
  private text = '';
  private readonly stops: StopSequenceFilter;
  private readonly stopList: string[];

  constructor(
    private readonly tokenizer: Detokenizer,
    stops: string[],
  ) {
    this.stopList = stops.filter((s) => s.length > 0);
    this.stops = new StopSequenceFilter(this.stopList);
  }

  get stopped(): boolean {
    return this.stops.stopped;
  }

  /** Adds a token; returns the text that is now safe to show ('' once a stop sequence was found). */
  push(tokenId: number): string {
    if (this.stops.stopped || this.tokenizer.specialTokenIds?.has(tokenId)) return '';
    this.ids.push(tokenId);
    const window = this.decodeWindow();
    const complete = window.length > this.prefixLength && !window.endsWith(REPLACEMENT);
    if (!complete && this.ids.length - this.readOffset < MAX_PENDING_TOKENS) return '';
    return this.release(window);
  }

  /** At the end of generation: whatever was held back (an incomplete character decodes as U+FFFD). */
  flush(): string {
    let out = '';
    if (!this.stops.stopped && this.ids.length > this.readOffset) out = this.release(this.decodeWindow());
    const rest = this.stops.flush();
    this.text += rest;
    return out + rest;
  }

  /**
   * The whole text, cut at the first stop sequence: after flush() exactly what push and flush returned;
   * before it, that plus what is held back (without consuming it).
   */
  get fullText(): string {
    if (this.stops.stopped) return this.text;
    const unread = this.ids.length > this.readOffset ? this.decodeWindow().slice(this.prefixLength) : '';
    return this.text + truncateAtStop(this.stops.pending + unread, this.stopList).text;
  }

  private decodeWindow(): string {
    return this.tokenizer.decode(this.ids.slice(this.prefixOffset));
  }

  /** Emits the window's text beyond its context through the stop filter, and moves the offsets on. */
  private release(window: string): string {
    const fresh = window.slice(this.prefixLength);
    const read = this.ids.length;
    // The tokens just read are the next context, unless they decode to nothing on their own: then a
    // decoder's start-of-text rule (Llama 2's Strip) would apply to the next token's text instead.
    const context = this.tokenizer.decode(this.ids.slice(this.readOffset, read));
    if (context.length > 0 || read - this.prefixOffset > MAX_CONTEXT_TOKENS) {
      this.prefixOffset = this.readOffset;
      this.prefixLength = context.length;
    } else {
      this.prefixLength = window.length;
    }
    this.readOffset = read;
    const out = this.stops.push(fresh);
    this.text += out;
    return out;
  }
}
