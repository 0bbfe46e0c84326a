/**
 * A model's tokens as byte strings, prepared once per model for JSON-constrained decoding:
 * a byte trie of all tokens and the token classes of the plain inside of a JSON string.
 */
import { STRING_CHAR, StringSyntax } from './string-scanner.js';
import { stringTokenClasses } from './string-token-classes.js';
import { buildTokenTrie, type TokenTrie, type TrieEntry } from './token-trie.js';

export interface TokenVocabulary {
  /** Number of token ids (the length of the tokenBytes array it was built from). */
  readonly size: number;
  readonly tokenBytes: readonly Uint8Array[];
  /** All token bytes back to back (token id order): bytes of id i are byteData[byteStart[i] .. byteStart[i + 1]). */
  readonly byteData: Uint8Array;
  readonly byteStart: Int32Array;
  readonly eosTokenIds: Int32Array;
  /** Tokens with no bytes (special tokens) and the EOS tokens; none of them is in the trie. */
  readonly specialTokenIds: Int32Array;
  readonly isEos: Uint8Array;
  readonly trie: TokenTrie;
  /** For each byte value, a token consisting of exactly that byte, or -1. */
  readonly singleByteTokenIds: Int32Array;
  /** Some token ends inside a multi-byte UTF-8 character. */
  readonly hasPartialUtf8Tokens: boolean;
  readonly maxTokenLength: number;
}

export function buildTokenVocabulary(tokenBytes: readonly Uint8Array[], eosTokenIds: readonly number[]): TokenVocabulary {
  const size = tokenBytes.length;
  const isEos = new Uint8Array(size);
  for (const id of eosTokenIds) {
    if (!Number.isInteger(id) || id < 0 || id >= size) throw new Error(`EOS token id ${id} is outside the vocabulary (size ${size})`);
    isEos[id] = 1;
  }

  const specialTokenIds: number[] = [];
  const entries: TrieEntry[] = [];
  const singleByteTokenIds = new Int32Array(256).fill(-1);
  let hasPartialUtf8Tokens = false;
  let maxTokenLength = 0;
  for (let id = 0; id < size; id++) {
    const bytes = tokenBytes[id];
    if (bytes.length === 0 || isEos[id]) {
      specialTokenIds.push(id);
      continue;
    }
    if (bytes.length === 1 && singleByteTokenIds[bytes[0]] < 0) singleByteTokenIds[bytes[0]] = id;
    if (!hasPartialUtf8Tokens && endsInsideUtf8Character(bytes)) hasPartialUtf8Tokens = true;
    maxTokenLength = Math.max(maxTokenLength, bytes.length);
    entries.push({ id, bytes });
  }

  const byteStart = new Int32Array(size + 1);
  for (let id = 0; id < size; id++) byteStart[id + 1] = byteStart[id] + tokenBytes[id].length;
  const byteData = new Uint8Array(byteStart[size]);
  for (let id = 0; id < size; id++) byteData.set(tokenBytes[id], byteStart[id]);

  const vocabulary: TokenVocabulary = {
    size,
    tokenBytes,
    byteData,
    byteStart,
    eosTokenIds: Int32Array.from(new Set(eosTokenIds)),
    specialTokenIds: Int32Array.from(specialTokenIds),
    isEos,
    trie: buildTokenTrie(entries),
    singleByteTokenIds,
    hasPartialUtf8Tokens,
    maxTokenLength,
  };
  // Needed by the first token inside any string; other scanner states are prepared on first use.
  stringTokenClasses(vocabulary, StringSyntax.ANY, STRING_CHAR);
  return vocabulary;
}

function endsInsideUtf8Character(bytes: Uint8Array): boolean {
  // Look back at most 3 bytes for the lead byte of the last character.
  for (let back = 1; back <= Math.min(4, bytes.length); back++) {
    const byte = bytes[bytes.length - back];
    if ((byte & 0xc0) === 0x80) continue;
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back;
  }
  return false;
}
