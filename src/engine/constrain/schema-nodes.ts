/**
 * The compiled form of a schema: a graph (cycles through $ref) of the shapes the decoder
 * can generate. Every node has an `id`, used in mask-cache keys.
 */
import type { ByteTrie } from './byte-trie.js';

export type SchemaNode = ObjectNode | ArrayNode | StringNode | NumberNode | LiteralNode | UnionNode | RefNode;

export interface PropertySpec {
  readonly name: string;
  readonly node: SchemaNode;
}

export interface ObjectNode {
  readonly kind: 'object';
  readonly id: number;
  readonly path: string;
  readonly properties: readonly PropertySpec[];
  /** Over the canonical (JSON.stringify) spelling of each property name, without quotes. */
  readonly nameTrie: ByteTrie;
  readonly allPropertiesMask: bigint;
  readonly requiredMask: bigint;
  /** Schema of extra (undeclared) properties, or null when the decoder never generates any. */
  readonly additional: SchemaNode | null;
}

export interface ArrayNode {
  readonly kind: 'array';
  readonly id: number;
  readonly path: string;
  readonly items: SchemaNode;
  readonly minItems: number;
  /** Infinity when unbounded. */
  readonly maxItems: number;
  /** Item counts are tracked only up to here: beyond it no rule depends on the exact count. */
  readonly countCap: number;
}

export interface StringNode {
  readonly kind: 'string';
  readonly id: number;
  readonly path: string;
}

export interface NumberNode {
  readonly kind: 'number';
  readonly id: number;
  readonly path: string;
  readonly integer: boolean;
}

/** A finite set of values (enum, const, boolean, null), each spelled as JSON.stringify writes it. */
export interface LiteralNode {
  readonly kind: 'literal';
  readonly id: number;
  readonly path: string;
  readonly trie: ByteTrie;
  readonly values: readonly unknown[];
}

/** Alternatives told apart by the first byte of the value. */
export interface UnionNode {
  readonly kind: 'union';
  readonly id: number;
  readonly path: string;
  readonly options: readonly SchemaNode[];
  /** Indexed by byte: the option a value starting with that byte belongs to. */
  readonly optionByFirstByte: readonly (SchemaNode | undefined)[];
  /** Any JSON value (no schema): its nesting is limited, as scalars are always an alternative. */
  readonly freeForm: boolean;
}

export interface RefNode {
  readonly kind: 'ref';
  readonly id: number;
  readonly path: string;
  /** Set once the referenced schema is compiled (it may refer back to this node). */
  target: SchemaNode | null;
}

export function resolveRef(node: SchemaNode): Exclude<SchemaNode, RefNode> {
  let current = node;
  while (current.kind === 'ref') {
    if (current.target === null) throw new Error(`unresolved $ref at ${current.path}`);
    current = current.target;
  }
  return current;
}
