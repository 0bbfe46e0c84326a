/**
 * A byte-level pushdown automaton for JSON values that follow a compiled schema.
 *
 * A state is an immutable stack of frames (the top frame points to the one below), so a
 * state can be kept, shared and stepped from many times — the token-mask walk relies on it.
 * `step` never returns a state from which no valid completion exists: every rejection that
 * would otherwise be discovered later (a property name already used, an array that may not
 * grow, a number that may not get longer) is made on the byte that would lead there.
 */
import { CLOSE_BRACE, CLOSE_BRACKET, COLON, COMMA, isJsonWhitespace, OPEN_BRACE, OPEN_BRACKET, QUOTE } from './json-bytes.js';
import { continueNumber, isNumberComplete, startNumber } from './number-scanner.js';
import type { ArrayNode, LiteralNode, NumberNode, ObjectNode, SchemaNode } from './schema-nodes.js';
import { resolveRef } from './schema-nodes.js';
import { CANONICAL_KEY_TABLE, STRING_CHAR, STRING_CLOSE, STRING_REJECT, STRING_TABLES, StringSyntax } from './string-scanner.js';

export const FrameKind = {
  ROOT: 0,
  OBJECT: 1,
  ARRAY: 2,
  /** A key of an object that declares properties, while it may still spell one of their names. */
  KEY: 3,
  /** A string value, or a key that is not (or can no longer become) a declared name. */
  STRING: 4,
  NUMBER: 5,
  LITERAL: 6,
} as const;

export const RootPhase = { BEFORE_VALUE: 0, IN_VALUE: 1, DONE: 2 } as const;
export const ObjectPhase = { AFTER_OPEN: 0, IN_KEY: 1, AFTER_KEY: 2, BEFORE_VALUE: 3, IN_VALUE: 4, AFTER_VALUE: 5, AFTER_COMMA: 6 } as const;
export const ArrayPhase = { AFTER_OPEN: 0, IN_VALUE: 1, AFTER_VALUE: 2, AFTER_COMMA: 3 } as const;
/**
 * What a STRING frame is: a value; a key of an object without declared properties; or an
 * extra key of an object with declared properties, once it can no longer spell one of them.
 */
export const StringRole = { VALUE: 0, KEY: 1, EXTRA_KEY: 2 } as const;

/** The string syntax (index into STRING_TABLES) of a STRING frame. */
export function stringSyntaxOf(frame: Frame): number {
  return frame.counter === StringRole.EXTRA_KEY ? StringSyntax.CANONICAL_KEY : StringSyntax.ANY;
}

/** Property index meaning "an undeclared (additional) property". */
const EXTRA_PROPERTY = -1;

/**
 * One level of the stack. Field meaning depends on `kind`:
 * - ROOT: phase (RootPhase), ws
 * - OBJECT: phase (ObjectPhase), ws, counter = property being read (-1: extra), used = bit set of declared properties written
 * - ARRAY: phase (ArrayPhase), ws, counter = items so far (capped at node.countCap)
 * - KEY: phase = node of the name trie reached so far, counter = extra-key string state (-1: extra keys not allowed)
 * - STRING: phase = string-scanner state, counter = StringRole
 * - NUMBER: phase = number-scanner phase, counter = digits
 * - LITERAL: phase = node of the literal trie
 */
export class Frame {
  /** Cache key of the whole stack from this frame down; computed on demand. */
  key: string | undefined = undefined;

  constructor(
    readonly kind: number,
    readonly node: SchemaNode | null,
    readonly phase: number,
    readonly ws: number,
    readonly counter: number,
    readonly used: bigint,
    readonly below: Frame | null,
  ) {}
}

export class JsonAutomaton {
  constructor(
    readonly root: SchemaNode,
    /** Longest run of whitespace bytes allowed between two syntax elements. */
    readonly maxWhitespaceRun: number,
    /** Deepest object/array nesting at which a free-form (schema-less) value may open another one. */
    readonly maxFreeFormNesting: number,
  ) {}

  initial(): Frame {
    return new Frame(FrameKind.ROOT, this.root, RootPhase.BEFORE_VALUE, 0, 0, 0n, null);
  }

  /** The state after `byte`, or null when the byte is not allowed. */
  step(frame: Frame, byte: number): Frame | null {
    switch (frame.kind) {
      case FrameKind.STRING:
        return this.stepString(frame, byte);
      case FrameKind.NUMBER:
        return this.stepNumber(frame, byte);
      case FrameKind.LITERAL:
        return this.stepLiteral(frame, byte);
      case FrameKind.KEY:
        return this.stepKey(frame, byte);
      case FrameKind.OBJECT:
        return this.stepObject(frame, byte);
      case FrameKind.ARRAY:
        return this.stepArray(frame, byte);
      default:
        return this.stepRoot(frame, byte);
    }
  }

  stepBytes(frame: Frame, bytes: Uint8Array): Frame | null {
    let current: Frame | null = frame;
    for (let index = 0; index < bytes.length && current !== null; index++) current = this.step(current, bytes[index]);
    return current;
  }

  /** The whole value is complete: the text may end here. */
  canEnd(frame: Frame): boolean {
    if (frame.kind === FrameKind.ROOT) return frame.phase === RootPhase.DONE;
    if (frame.below === null || frame.below.kind !== FrameKind.ROOT) return false;
    if (frame.kind === FrameKind.NUMBER) return isNumberComplete(frame.phase);
    if (frame.kind === FrameKind.LITERAL) return (frame.node as LiteralNode).trie.terminal(frame.phase) >= 0;
    return false;
  }

  /** The state after the closing quote of the STRING frame `frame`. */
  closeString(frame: Frame): Frame {
    const below = frame.below as Frame;
    if (frame.counter !== StringRole.VALUE) return this.keyRead(below, EXTRA_PROPERTY);
    return this.valueDone(below);
  }

  private stepString(frame: Frame, byte: number): Frame | null {
    const next = STRING_TABLES[stringSyntaxOf(frame)][frame.phase * 256 + byte];
    if (next === STRING_REJECT) return null;
    if (next === STRING_CLOSE) return this.closeString(frame);
    return new Frame(FrameKind.STRING, null, next, 0, frame.counter, 0n, frame.below);
  }

  private stepNumber(frame: Frame, byte: number): Frame | null {
    const node = frame.node as NumberNode;
    const next = continueNumber(frame.phase, frame.counter, byte, node.integer);
    if (next.phase >= 0) return new Frame(FrameKind.NUMBER, node, next.phase, 0, next.digits, 0n, frame.below);
    if (!isNumberComplete(frame.phase)) return null;
    // A number ends at the first byte that cannot extend it; that byte belongs to the parent.
    return this.step(this.valueDone(frame.below as Frame), byte);
  }

  private stepLiteral(frame: Frame, byte: number): Frame | null {
    const trie = (frame.node as LiteralNode).trie;
    const child = trie.child(frame.phase, byte);
    if (child >= 0) return new Frame(FrameKind.LITERAL, frame.node, child, 0, 0, 0n, frame.below);
    if (trie.terminal(frame.phase) < 0) return null;
    // Only number literals can be extended after being complete, and never by a byte that ends a value.
    return this.step(this.valueDone(frame.below as Frame), byte);
  }

  private stepKey(frame: Frame, byte: number): Frame | null {
    const node = frame.node as ObjectNode;
    const object = frame.below as Frame;
    const trie = node.nameTrie;
    // The name trie is followed even through used names, so that a free key can never spell one.
    const nameNode = trie.child(frame.phase, byte);
    const freeState = frame.counter >= 0 ? CANONICAL_KEY_TABLE[frame.counter * 256 + byte] : STRING_REJECT;

    if (byte === QUOTE) {
      // A complete declared name cannot end inside an escape, so this quote closes the key.
      const declared = trie.terminal(frame.phase);
      if (declared >= 0) return (object.used & (1n << BigInt(declared))) === 0n ? this.keyRead(object, declared) : null;
      if (freeState === STRING_CLOSE) return this.keyRead(object, EXTRA_PROPERTY);
      // Otherwise it is an escaped quote inside the key.
    }
    const free = freeState >= 0 ? freeState : -1;
    // Spelling no declared name any more: from here on it is a plain (canonical) string.
    if (nameNode < 0) return free >= 0 ? new Frame(FrameKind.STRING, null, free, 0, StringRole.EXTRA_KEY, 0n, object) : null;
    const leadsToUnusedName = (trie.subtree(nameNode) & ~object.used) !== 0n;
    if (!leadsToUnusedName && free < 0) return null;
    return new Frame(FrameKind.KEY, node, nameNode, 0, free, 0n, object);
  }

  private keyRead(object: Frame, property: number): Frame {
    return new Frame(FrameKind.OBJECT, object.node, ObjectPhase.AFTER_KEY, 0, property, object.used, object.below);
  }

  private stepObject(frame: Frame, byte: number): Frame | null {
    const node = frame.node as ObjectNode;
    const phase = frame.phase;
    if (isJsonWhitespace(byte)) return this.whitespace(frame);
    switch (phase) {
      case ObjectPhase.AFTER_OPEN:
        if (byte === CLOSE_BRACE) return node.requiredMask === 0n ? this.valueDone(frame.below as Frame) : null;
        return byte === QUOTE ? this.startKey(frame) : null;
      case ObjectPhase.AFTER_VALUE:
        if (byte === CLOSE_BRACE) return (node.requiredMask & ~frame.used) === 0n ? this.valueDone(frame.below as Frame) : null;
        if (byte === COMMA && canAddProperty(node, frame.used)) return this.withPhase(frame, ObjectPhase.AFTER_COMMA);
        return null;
      case ObjectPhase.AFTER_COMMA:
        return byte === QUOTE ? this.startKey(frame) : null;
      case ObjectPhase.AFTER_KEY:
        return byte === COLON ? this.withPhase(frame, ObjectPhase.BEFORE_VALUE) : null;
      case ObjectPhase.BEFORE_VALUE: {
        const valueNode = frame.counter === EXTRA_PROPERTY ? (node.additional as SchemaNode) : node.properties[frame.counter].node;
        const parent = new Frame(FrameKind.OBJECT, node, ObjectPhase.IN_VALUE, 0, frame.counter, frame.used, frame.below);
        return this.startValue(valueNode, byte, parent);
      }
      default:
        return null;
    }
  }

  private startKey(object: Frame): Frame | null {
    const node = object.node as ObjectNode;
    if (!canAddProperty(node, object.used)) return null;
    const inKey = new Frame(FrameKind.OBJECT, node, ObjectPhase.IN_KEY, 0, 0, object.used, object.below);
    if (node.properties.length === 0) return new Frame(FrameKind.STRING, null, STRING_CHAR, 0, StringRole.KEY, 0n, inKey);
    const free = node.additional !== null ? STRING_CHAR : -1;
    return new Frame(FrameKind.KEY, node, 0, 0, free, 0n, inKey);
  }

  private stepArray(frame: Frame, byte: number): Frame | null {
    const node = frame.node as ArrayNode;
    if (isJsonWhitespace(byte)) return this.whitespace(frame);
    switch (frame.phase) {
      case ArrayPhase.AFTER_OPEN:
        if (byte === CLOSE_BRACKET) return node.minItems === 0 ? this.valueDone(frame.below as Frame) : null;
        return node.maxItems > 0 ? this.startItem(frame, byte) : null;
      case ArrayPhase.AFTER_VALUE:
        if (byte === CLOSE_BRACKET) return frame.counter >= node.minItems ? this.valueDone(frame.below as Frame) : null;
        if (byte === COMMA && frame.counter < node.maxItems) return this.withPhase(frame, ArrayPhase.AFTER_COMMA);
        return null;
      case ArrayPhase.AFTER_COMMA:
        return this.startItem(frame, byte);
      default:
        return null;
    }
  }

  private startItem(array: Frame, byte: number): Frame | null {
    const node = array.node as ArrayNode;
    const parent = new Frame(FrameKind.ARRAY, node, ArrayPhase.IN_VALUE, 0, array.counter, 0n, array.below);
    return this.startValue(node.items, byte, parent);
  }

  private stepRoot(frame: Frame, byte: number): Frame | null {
    if (isJsonWhitespace(byte)) return this.whitespace(frame);
    if (frame.phase !== RootPhase.BEFORE_VALUE) return null;
    return this.startValue(this.root, byte, new Frame(FrameKind.ROOT, this.root, RootPhase.IN_VALUE, 0, 0, 0n, null));
  }

  /** The first byte of a value of `schema`, read with `parent` (in its IN_VALUE phase) below. */
  private startValue(schema: SchemaNode, byte: number, parent: Frame): Frame | null {
    let node = resolveRef(schema);
    while (node.kind === 'union') {
      if (node.freeForm && (byte === OPEN_BRACE || byte === OPEN_BRACKET) && nestingReaches(parent, this.maxFreeFormNesting)) return null;
      const option = node.optionByFirstByte[byte];
      if (option === undefined) return null;
      node = resolveRef(option);
    }
    switch (node.kind) {
      case 'object':
        return byte === OPEN_BRACE ? new Frame(FrameKind.OBJECT, node, ObjectPhase.AFTER_OPEN, 0, 0, 0n, parent) : null;
      case 'array':
        return byte === OPEN_BRACKET ? new Frame(FrameKind.ARRAY, node, ArrayPhase.AFTER_OPEN, 0, 0, 0n, parent) : null;
      case 'string':
        return byte === QUOTE ? new Frame(FrameKind.STRING, null, STRING_CHAR, 0, StringRole.VALUE, 0n, parent) : null;
      case 'number': {
        const start = startNumber(byte);
        return start.phase >= 0 ? new Frame(FrameKind.NUMBER, node, start.phase, 0, start.digits, 0n, parent) : null;
      }
      case 'literal': {
        const child = node.trie.child(0, byte);
        return child >= 0 ? new Frame(FrameKind.LITERAL, node, child, 0, 0, 0n, parent) : null;
      }
    }
  }

  /** The parent frame once its current child value is complete. */
  private valueDone(parent: Frame): Frame {
    switch (parent.kind) {
      case FrameKind.OBJECT: {
        const used = parent.counter === EXTRA_PROPERTY ? parent.used : parent.used | (1n << BigInt(parent.counter));
        return new Frame(FrameKind.OBJECT, parent.node, ObjectPhase.AFTER_VALUE, 0, 0, used, parent.below);
      }
      case FrameKind.ARRAY: {
        const count = Math.min(parent.counter + 1, (parent.node as ArrayNode).countCap);
        return new Frame(FrameKind.ARRAY, parent.node, ArrayPhase.AFTER_VALUE, 0, count, 0n, parent.below);
      }
      default:
        return new Frame(FrameKind.ROOT, parent.node, RootPhase.DONE, 0, 0, 0n, null);
    }
  }

  private whitespace(frame: Frame): Frame | null {
    if (frame.ws >= this.maxWhitespaceRun) return null;
    return new Frame(frame.kind, frame.node, frame.phase, frame.ws + 1, frame.counter, frame.used, frame.below);
  }

  private withPhase(frame: Frame, phase: number): Frame {
    return new Frame(frame.kind, frame.node, phase, 0, frame.counter, frame.used, frame.below);
  }
}

/** At least `limit` objects/arrays are open at `frame` and below (counts no further than the limit). */
function nestingReaches(frame: Frame | null, limit: number): boolean {
  let open = 0;
  for (let current = frame; current !== null && open < limit; current = current.below) {
    if (current.kind === FrameKind.OBJECT || current.kind === FrameKind.ARRAY) open++;
  }
  return open >= limit;
}

function canAddProperty(node: ObjectNode, used: bigint): boolean {
  return node.additional !== null || (node.allPropertiesMask & ~used) !== 0n;
}

/**
 * A string that identifies the whole stack as far as token masks are concerned, for caching
 * masks per state. An array's item count only matters near minItems/maxItems: one token of at
 * most `maxTokenLength` bytes cannot add more items than that, so counts further away from
 * both limits share one key.
 */
export function stateKey(frame: Frame, maxTokenLength: number): string {
  if (frame.key !== undefined) return frame.key;
  let counter: number | string = frame.counter;
  if (frame.kind === FrameKind.ARRAY) {
    const node = frame.node as ArrayNode;
    if (counter >= node.minItems && counter + maxTokenLength < node.maxItems) counter = 'far';
  }
  const own = `${frame.kind}:${frame.node === null ? '' : frame.node.id}:${frame.phase}:${frame.ws}:${counter}:${frame.used === 0n ? '' : frame.used.toString(36)}`;
  const key = frame.below === null ? own : `${own}/${stateKey(frame.below, maxTokenLength)}`;
  frame.key = key;
  return key;
}
