/**
 * For a vocabulary, a string syntax and a scanner state: which tokens break the string (rejected),
 * which close it part-way (and where), and — implicitly — which stay inside it. This is the
 * same for every string in every schema, so it is computed once per vocabulary and state.
 */
import { STRING_CLOSE, STRING_REJECT, STRING_STATE_COUNT, STRING_TABLES } from './string-scanner.js';
import { buildTokenTrie, type TokenTrie, type TrieEntry } from './token-trie.js';

/** What this needs of a TokenVocabulary (token-vocabulary.ts, which calls this module: no import back). */
export interface VocabularyBytes {
  readonly byteData: Uint8Array;
  readonly byteStart: Int32Array;
  readonly trie: Pick<TokenTrie, 'tokenIds'>;
}

export interface StringTokenClasses {
  /** Tokens that cannot appear from this state, whatever follows the string. */
  readonly rejected: Int32Array;
  /**
   * Tokens containing the closing quote, stored under the bytes that follow it: one walk of
   * this trie with the automaton decides all of them, sharing common prefixes.
   */
  readonly closing: TokenTrie;
}

const classesByVocabulary = new WeakMap<VocabularyBytes, Map<number, StringTokenClasses>>();

export function stringTokenClasses(vocabulary: VocabularyBytes, syntax: number, state: number): StringTokenClasses {
  let byState = classesByVocabulary.get(vocabulary);
  if (!byState) {
    byState = new Map();
    classesByVocabulary.set(vocabulary, byState);
  }
  const key = syntax * STRING_STATE_COUNT + state;
  let classes = byState.get(key);
  if (!classes) {
    classes = classify(vocabulary, STRING_TABLES[syntax], state);
    byState.set(key, classes);
  }
  return classes;
}

function classify(vocabulary: VocabularyBytes, table: Int8Array, start: number): StringTokenClasses {
  const rejected: number[] = [];
  const closing: TrieEntry[] = [];
  const { tokenIds } = vocabulary.trie;
  const { byteData, byteStart } = vocabulary;
  for (let index = 0; index < tokenIds.length; index++) {
    const id = tokenIds[index];
    const end = byteStart[id + 1];
    let state = start;
    for (let offset = byteStart[id]; offset < end; offset++) {
      state = table[state * 256 + byteData[offset]];
      if (state === STRING_REJECT) {
        rejected.push(id);
        break;
      }
      if (state === STRING_CLOSE) {
        closing.push({ id, bytes: byteData.subarray(offset + 1, end) });
        break;
      }
    }
  }
  return { rejected: Int32Array.from(rejected), closing: buildTokenTrie(closing) };
}
