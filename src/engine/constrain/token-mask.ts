/**
 * Computes which tokens the automaton allows from a state, by walking a trie of token bytes
 * (a rejected prefix prunes its whole subtree), and applies such a mask to logits.
 */
import { Frame, FrameKind, JsonAutomaton, stringSyntaxOf } from './json-automaton.js';
import { STRING_CLOSE, STRING_REJECT, STRING_TABLES } from './string-scanner.js';
import { stringTokenClasses } from './string-token-classes.js';
import type { TokenTrie } from './token-trie.js';
import type { TokenVocabulary } from './token-vocabulary.js';

/** Either the allowed token ids or the disallowed ones, whichever was cheaper to produce. */
export interface TokenMask {
  readonly kind: 'allow' | 'deny';
  readonly ids: Int32Array;
}

export function computeTokenMask(automaton: JsonAutomaton, vocabulary: TokenVocabulary, state: Frame): TokenMask {
  if (state.kind === FrameKind.STRING) return stringStateMask(automaton, vocabulary, state);
  const allowed: number[] = [];
  new TrieWalk(automaton, vocabulary.trie, allowed, false).walk(0, state);
  if (automaton.canEnd(state)) for (const id of vocabulary.eosTokenIds) allowed.push(id);
  return { kind: 'allow', ids: Int32Array.from(allowed) };
}

/**
 * Inside a string almost every token is allowed. Denied are the tokens that break the string
 * (known per vocabulary) and those that close it and go on with bytes this context rejects.
 */
function stringStateMask(automaton: JsonAutomaton, vocabulary: TokenVocabulary, state: Frame): TokenMask {
  const classes = stringTokenClasses(vocabulary, stringSyntaxOf(state), state.phase);
  if (classes.rejected.length > vocabulary.size / 2) {
    // E.g. in the middle of a multi-byte character: few tokens fit, so list those instead.
    const allowed: number[] = [];
    new TrieWalk(automaton, vocabulary.trie, allowed, false).walkString(0, state.phase, state, null);
    return { kind: 'allow', ids: Int32Array.from(allowed) };
  }
  const denied: number[] = Array.from(classes.rejected);
  new TrieWalk(automaton, classes.closing, denied, true).walk(0, automaton.closeString(state));
  for (const id of vocabulary.specialTokenIds) denied.push(id);
  return { kind: 'deny', ids: Int32Array.from(denied) };
}

/** Depth-first walk of a token trie in step with the automaton; collects either the allowed or the denied tokens. */
class TrieWalk {
  private readonly edgeStart: Int32Array;
  private readonly edgeByte: Uint8Array;
  private readonly edgeTarget: Int32Array;
  private readonly tokenStart: Int32Array;
  private readonly tokenIds: Int32Array;
  private readonly subtreeEnd: Int32Array;

  constructor(
    private readonly automaton: JsonAutomaton,
    trie: TokenTrie,
    private readonly out: number[],
    private readonly collectDenied: boolean,
  ) {
    this.edgeStart = trie.edgeStart;
    this.edgeByte = trie.edgeByte;
    this.edgeTarget = trie.edgeTarget;
    this.tokenStart = trie.tokenStart;
    this.tokenIds = trie.tokenIds;
    this.subtreeEnd = trie.subtreeEnd;
  }

  walk(trieNode: number, state: Frame): void {
    for (let edge = this.edgeStart[trieNode]; edge < this.edgeStart[trieNode + 1]; edge++) {
      const child = this.edgeTarget[edge];
      const next = this.automaton.step(state, this.edgeByte[edge]);
      if (next === null) {
        if (this.collectDenied) this.pushSubtree(child);
        continue;
      }
      if (!this.collectDenied) this.pushTokensAt(child);
      if (next.kind === FrameKind.STRING) this.walkString(child, next.phase, next, null);
      else this.walk(child, next);
    }
  }

  /** Inside a string only the scanner state changes, so the walk steps a table instead of frames. */
  walkString(trieNode: number, scannerState: number, stringFrame: Frame, afterCloseCache: Frame | null): void {
    const table = STRING_TABLES[stringSyntaxOf(stringFrame)];
    let afterClose = afterCloseCache;
    for (let edge = this.edgeStart[trieNode]; edge < this.edgeStart[trieNode + 1]; edge++) {
      const child = this.edgeTarget[edge];
      const next = table[scannerState * 256 + this.edgeByte[edge]];
      if (next === STRING_REJECT) {
        if (this.collectDenied) this.pushSubtree(child);
        continue;
      }
      if (!this.collectDenied) this.pushTokensAt(child);
      if (next === STRING_CLOSE) {
        afterClose ??= this.automaton.closeString(stringFrame);
        this.walk(child, afterClose);
      } else {
        this.walkString(child, next, stringFrame, afterClose);
      }
    }
  }

  private pushTokensAt(trieNode: number): void {
    for (let index = this.tokenStart[trieNode]; index < this.tokenStart[trieNode + 1]; index++) this.out.push(this.tokenIds[index]);
  }

  private pushSubtree(trieNode: number): void {
    const end = this.tokenStart[this.subtreeEnd[trieNode]];
    for (let index = this.tokenStart[trieNode]; index < end; index++) this.out.push(this.tokenIds[index]);
  }
}

/** Sets the logits of disallowed tokens (and of ids beyond the vocabulary) to -Infinity. */
export function applyTokenMask(mask: TokenMask, logits: Float32Array, vocabularySize: number, scratch: Float32Array): void {
  const ids = mask.ids;
  if (mask.kind === 'deny') {
    for (let index = 0; index < ids.length; index++) logits[ids[index]] = -Infinity;
    if (logits.length > vocabularySize) logits.fill(-Infinity, vocabularySize);
    return;
  }
  for (let index = 0; index < ids.length; index++) scratch[index] = logits[ids[index]];
  logits.fill(-Infinity);
  for (let index = 0; index < ids.length; index++) logits[ids[index]] = scratch[index];
}

export function allowedCount(mask: TokenMask, vocabularySize: number): number {
  return mask.kind === 'allow' ? mask.ids.length : vocabularySize - mask.ids.length;
}
