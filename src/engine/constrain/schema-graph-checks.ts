/**
 * Whole-graph checks on a compiled schema that guarantee the decoder never reaches a dead
 * end: unions must be decidable from a value's first byte, and every node reachable by the
 * decoder must have a finite value.
 */
import type { RefNode, SchemaNode, UnionNode } from './schema-nodes.js';
import { DIGIT_0, DIGIT_9, MINUS, OPEN_BRACE, OPEN_BRACKET, QUOTE } from './json-bytes.js';

/** A chain of $refs that comes back to itself, as paths, or null. */
export function findRefCycle(refs: readonly RefNode[]): string[] | null {
  for (const start of refs) {
    const seen: SchemaNode[] = [];
    let current: SchemaNode | null = start;
    while (current !== null && current.kind === 'ref') {
      if (seen.includes(current)) return [...seen.map((node) => node.path), current.path];
      seen.push(current);
      current = current.target;
    }
  }
  return null;
}

/** Fills the union's first-byte dispatch table; returns an error when two options overlap. */
export function fillUnionDispatch(union: UnionNode): string | null {
  const table = union.optionByFirstByte as (SchemaNode | undefined)[];
  const ownerIndex = new Array<number>(256).fill(-1);
  for (const [index, option] of union.options.entries()) {
    let bytes: Set<number>;
    try {
      bytes = firstBytes(option, new Set([union]));
    } catch (error) {
      return `${union.path}: ${(error as Error).message}`;
    }
    for (const byte of bytes) {
      if (ownerIndex[byte] >= 0) {
        return (
          `${union.path}: alternatives ${ownerIndex[byte]} and ${index} can both start with ${JSON.stringify(String.fromCharCode(byte))}; ` +
          'the decoder only supports alternatives (anyOf, oneOf, type arrays) whose values start differently, e.g. of different JSON types'
        );
      }
      ownerIndex[byte] = index;
      table[byte] = option;
    }
  }
  return null;
}

function firstBytes(node: SchemaNode, visiting: Set<SchemaNode>): Set<number> {
  switch (node.kind) {
    case 'object':
      return new Set([OPEN_BRACE]);
    case 'array':
      return new Set([OPEN_BRACKET]);
    case 'string':
      return new Set([QUOTE]);
    case 'number': {
      const bytes = new Set([MINUS]);
      for (let digit = DIGIT_0; digit <= DIGIT_9; digit++) bytes.add(digit);
      return bytes;
    }
    case 'literal':
      return new Set(node.trie.firstBytes());
    case 'ref':
    case 'union': {
      if (visiting.has(node)) throw new Error(`alternatives refer back to themselves through ${node.path} without an object or array in between`);
      const inner = new Set(visiting).add(node);
      if (node.kind === 'ref') return firstBytes(node.target as SchemaNode, inner);
      const bytes = new Set<number>();
      for (const option of node.options) for (const byte of firstBytes(option, inner)) bytes.add(byte);
      return bytes;
    }
  }
}

/** An error for the first node the decoder could enter but never finish, or null. */
export function checkNodesTerminate(root: SchemaNode): string | null {
  const nodes = reachableNodes(root);
  const finite = new Set<SchemaNode>();
  let changed = true;
  while (changed) {
    changed = false;
    for (const node of nodes) {
      if (!finite.has(node) && hasFiniteValue(node, finite)) {
        finite.add(node);
        changed = true;
      }
    }
  }
  const enterable = (node: SchemaNode): string | null =>
    finite.has(node) ? null : `the schema at ${node.path} has no finite value (it requires itself through $ref), so it cannot be generated`;
  for (const node of nodes) {
    const children =
      node.kind === 'object'
        ? [...node.properties.map((property) => property.node), ...(node.additional ? [node.additional] : [])]
        : node.kind === 'array'
          ? node.maxItems > 0
            ? [node.items]
            : []
          : node.kind === 'union'
            ? node.options
            : [];
    for (const child of children) {
      const error = enterable(child);
      if (error) return error;
    }
  }
  return enterable(root);
}

function hasFiniteValue(node: SchemaNode, finite: Set<SchemaNode>): boolean {
  switch (node.kind) {
    case 'string':
    case 'number':
    case 'literal':
      return true;
    case 'ref':
      return node.target !== null && finite.has(node.target);
    case 'union':
      return node.options.some((option) => finite.has(option));
    case 'array':
      return node.minItems === 0 || finite.has(node.items);
    case 'object':
      return node.properties.every((property, index) => (node.requiredMask & (1n << BigInt(index))) === 0n || finite.has(property.node));
  }
}

function reachableNodes(root: SchemaNode): SchemaNode[] {
  const seen = new Set<SchemaNode>();
  const pending = [root];
  while (pending.length > 0) {
    const node = pending.pop() as SchemaNode;
    if (seen.has(node)) continue;
    seen.add(node);
    if (node.kind === 'ref' && node.target) pending.push(node.target);
    if (node.kind === 'union') pending.push(...node.options);
    if (node.kind === 'array') pending.push(node.items);
    if (node.kind === 'object') {
      pending.push(...node.properties.map((property) => property.node));
      if (node.additional) pending.push(node.additional);
    }
  }
  return [...seen];
}
