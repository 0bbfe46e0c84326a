/**
 * Turns a request's JSON Schema into the node graph the decoder walks, rejecting anything
 * outside the supported subset with a message that names the keyword and where it is.
 */
import { ByteTrie } from './byte-trie.js';
import { utf8Bytes } from './json-bytes.js';
import { escapePointerSegment, isSchemaObject, jsonEqual, resolveLocalRef, type JsonSchema } from './json-schema.js';
import type { ArrayNode, LiteralNode, NumberNode, ObjectNode, PropertySpec, RefNode, SchemaNode, StringNode, UnionNode } from './schema-nodes.js';
import { validateJsonWithRoot } from './validate-json.js';
import { checkNodesTerminate, fillUnionDispatch, findRefCycle } from './schema-graph-checks.js';

export interface CompileSchemaOptions {
  /** OpenAI's `strict`: the decoder never generates properties that are not declared. */
  strict?: boolean;
}

export class UnsupportedSchemaError extends Error {
  override name = 'UnsupportedSchemaError';
}

export const SUPPORTED_KEYWORDS: readonly string[] = [
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'minItems',
  'maxItems',
  'enum',
  'const',
  'anyOf',
  'oneOf',
  '$ref',
  '$defs',
  'definitions',
];
/** Accepted and ignored: they do not constrain values. */
export const ANNOTATION_KEYWORDS: readonly string[] = [
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  'deprecated',
  'readOnly',
  'writeOnly',
];
const TYPE_NAMES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'] as const;
type TypeName = (typeof TYPE_NAMES)[number];
const OBJECT_KEYWORDS = ['properties', 'required', 'additionalProperties'];
const ARRAY_KEYWORDS = ['items', 'minItems', 'maxItems'];
const CONTAINER_KEYWORDS = ['$defs', 'definitions'];

/** Compiles `schema` (null: json_object mode, any JSON object). Throws UnsupportedSchemaError. */
export function compileSchema(schema: JsonSchema | null, options: CompileSchemaOptions = {}): SchemaNode {
  return new SchemaCompiler(schema, options.strict === true).compileRoot();
}

/** The reason `schema` cannot be used for constrained decoding, or null when it can. */
export function validateSchemaSupported(schema: unknown, options: CompileSchemaOptions = {}): string | null {
  if (schema !== null && typeof schema !== 'boolean' && !isSchemaObject(schema)) return 'the JSON schema must be an object';
  try {
    compileSchema(schema as JsonSchema | null, options);
    return null;
  } catch (error) {
    if (error instanceof UnsupportedSchemaError) return error.message;
    throw error;
  }
}

class SchemaCompiler {
  private nextId = 0;
  private readonly refNodes = new Map<string, RefNode>();
  private readonly unions: UnionNode[] = [];
  private anyValue: SchemaNode | null = null;

  constructor(
    private readonly root: JsonSchema | null,
    private readonly strict: boolean,
  ) {}

  compileRoot(): SchemaNode {
    const node = this.root === null ? this.anyObject('#') : this.compile(this.root, '#');
    const cycle = findRefCycle([...this.refNodes.values()]);
    if (cycle) throw new UnsupportedSchemaError(`$ref cycle with no object or array in between: ${cycle.join(' -> ')}`);
    for (const union of this.unions) {
      const clash = fillUnionDispatch(union);
      if (clash) throw new UnsupportedSchemaError(clash);
    }
    const neverEnds = checkNodesTerminate(node);
    if (neverEnds) throw new UnsupportedSchemaError(neverEnds);
    return node;
  }

  private compile(schema: unknown, path: string): SchemaNode {
    if (schema === true) return this.any();
    if (schema === false) throw new UnsupportedSchemaError(`the schema at ${path} is false: no value can satisfy it`);
    if (!isSchemaObject(schema)) throw new UnsupportedSchemaError(`the schema at ${path} must be an object or a boolean`);

    for (const keyword of Object.keys(schema)) {
      if (!SUPPORTED_KEYWORDS.includes(keyword) && !ANNOTATION_KEYWORDS.includes(keyword)) {
        throw new UnsupportedSchemaError(
          `JSON Schema keyword "${keyword}" (at ${path}) is not supported for constrained decoding; supported keywords: ${SUPPORTED_KEYWORDS.join(', ')}`,
        );
      }
    }
    for (const container of CONTAINER_KEYWORDS) this.compileDefinitions(schema, container, path);

    if (schema.$ref !== undefined) return this.compileRef(schema, path);
    if (schema.anyOf !== undefined) return this.compileAlternatives(schema, 'anyOf', path);
    if (schema.oneOf !== undefined) return this.compileAlternatives(schema, 'oneOf', path);
    if (schema.enum !== undefined || schema.const !== undefined) return this.compileLiterals(schema, path);

    const types = this.typesOf(schema, path);
    if (types === null) return this.any();
    const nodes = types.map((type) => this.compileType(type, schema, path));
    return nodes.length === 1 ? nodes[0] : this.union(nodes, path);
  }

  private compileDefinitions(schema: Record<string, unknown>, container: string, path: string): void {
    const definitions = schema[container];
    if (definitions === undefined) return;
    if (!isSchemaObject(definitions)) throw new UnsupportedSchemaError(`"${container}" at ${path} must be an object`);
    for (const name of Object.keys(definitions)) {
      this.refTarget(`${path}/${container}/${escapePointerSegment(name)}`, path);
    }
  }

  private compileRef(schema: Record<string, unknown>, path: string): SchemaNode {
    this.onlyWith(schema, '$ref', path);
    const ref = schema.$ref;
    if (typeof ref !== 'string') throw new UnsupportedSchemaError(`"$ref" at ${path} must be a string`);
    if (ref !== '#' && !ref.startsWith('#/')) {
      throw new UnsupportedSchemaError(`"$ref" ${JSON.stringify(ref)} at ${path} is not supported: only local references (#, #/$defs/...) are`);
    }
    return this.refTarget(ref, path);
  }

  private refTarget(pointer: string, path: string): RefNode {
    const known = this.refNodes.get(pointer);
    if (known) return known;
    const target = resolveLocalRef(this.root, pointer);
    if (!target.found) throw new UnsupportedSchemaError(`"$ref" ${JSON.stringify(pointer)} at ${path} does not resolve inside the schema`);
    const node: RefNode = { kind: 'ref', id: this.nextId++, path: pointer, target: null };
    this.refNodes.set(pointer, node);
    node.target = this.compile(target.value, pointer);
    return node;
  }

  private compileAlternatives(schema: Record<string, unknown>, keyword: 'anyOf' | 'oneOf', path: string): SchemaNode {
    this.onlyWith(schema, keyword, path);
    const branches = schema[keyword];
    if (!Array.isArray(branches) || branches.length === 0) throw new UnsupportedSchemaError(`"${keyword}" at ${path} must be a non-empty array of schemas`);
    const compiled = branches.map((branch, index) => this.compile(branch, `${path}/${keyword}/${index}`));
    const nodes = this.mergeLiteralBranches(compiled, keyword, path);
    return nodes.length === 1 ? nodes[0] : this.union(nodes, `${path}/${keyword}`);
  }

  /** Enum/const branches become one set of values, so that e.g. several string constants can coexist. */
  private mergeLiteralBranches(nodes: SchemaNode[], keyword: 'anyOf' | 'oneOf', path: string): SchemaNode[] {
    const literals = nodes.filter((node): node is LiteralNode => node.kind === 'literal');
    if (literals.length < 2) return nodes;
    const branchCount = new Map<string, number>();
    for (const literal of literals) {
      for (const text of new Set(literal.values.map((value) => JSON.stringify(value)))) branchCount.set(text, (branchCount.get(text) ?? 0) + 1);
    }
    // oneOf: a value listed by two branches matches both, so it is not valid.
    const texts = [...branchCount].filter(([, count]) => keyword === 'anyOf' || count === 1).map(([text]) => text);
    if (texts.length === 0) throw new UnsupportedSchemaError(`"oneOf" at ${path}: every constant is listed by more than one branch`);
    const merged = this.literal(
      texts.map((text) => JSON.parse(text) as unknown),
      `${path}/${keyword}`,
    );
    return [merged, ...nodes.filter((node) => node.kind !== 'literal')];
  }

  private compileLiterals(schema: Record<string, unknown>, path: string): SchemaNode {
    let values: unknown[];
    if (schema.enum !== undefined) {
      if (!Array.isArray(schema.enum) || schema.enum.length === 0) throw new UnsupportedSchemaError(`"enum" at ${path} must be a non-empty array`);
      values = schema.enum;
    } else {
      values = [schema.const];
    }
    const rest: Record<string, unknown> = { ...schema };
    delete rest.enum;
    delete rest.const;
    // Checks the other keywords, and keeps only the values they allow.
    this.typesOf(rest, path)?.forEach((type) => this.compileType(type, rest, path));
    const allowed = values.filter((value) => {
      if (schema.enum !== undefined && schema.const !== undefined && !jsonEqual(value, schema.const)) return false;
      return validateJsonWithRoot(value, rest, this.root ?? true).length === 0;
    });
    const texts = [...new Set(allowed.map((value) => JSON.stringify(value)))];
    if (texts.length === 0) throw new UnsupportedSchemaError(`no value of "enum"/"const" at ${path} satisfies the other keywords there`);
    const node: LiteralNode = {
      kind: 'literal',
      id: this.nextId++,
      path,
      trie: new ByteTrie(texts.map(utf8Bytes)),
      values: texts.map((text) => JSON.parse(text) as unknown),
    };
    return node;
  }

  private typesOf(schema: Record<string, unknown>, path: string): TypeName[] | null {
    const declared = schema.type;
    if (declared === undefined) {
      // No "type": generate the kinds the other keywords describe, or any value.
      const inferred: TypeName[] = [];
      if (OBJECT_KEYWORDS.some((keyword) => schema[keyword] !== undefined)) inferred.push('object');
      if (ARRAY_KEYWORDS.some((keyword) => schema[keyword] !== undefined)) inferred.push('array');
      return inferred.length > 0 ? inferred : null;
    }
    const names = Array.isArray(declared) ? declared : [declared];
    if (names.length === 0) throw new UnsupportedSchemaError(`"type" at ${path} must not be an empty array`);
    for (const name of names) {
      if (!TYPE_NAMES.includes(name as TypeName)) throw new UnsupportedSchemaError(`"type" at ${path} has unknown type ${JSON.stringify(name)}`);
    }
    const unique = new Set(names as TypeName[]);
    if (unique.has('number')) unique.delete('integer');
    return [...unique];
  }

  private compileType(type: TypeName, schema: Record<string, unknown>, path: string): SchemaNode {
    switch (type) {
      case 'object':
        return this.compileObject(schema, path);
      case 'array':
        return this.compileArray(schema, path);
      case 'string': {
        const node: StringNode = { kind: 'string', id: this.nextId++, path };
        return node;
      }
      case 'number':
      case 'integer': {
        const node: NumberNode = { kind: 'number', id: this.nextId++, path, integer: type === 'integer' };
        return node;
      }
      case 'boolean':
        return this.literal([true, false], path);
      case 'null':
        return this.literal([null], path);
    }
  }

  private compileObject(schema: Record<string, unknown>, path: string): ObjectNode {
    const declared = schema.properties ?? {};
    if (!isSchemaObject(declared)) throw new UnsupportedSchemaError(`"properties" at ${path} must be an object`);
    const required = schema.required ?? [];
    if (!Array.isArray(required) || required.some((name) => typeof name !== 'string')) {
      throw new UnsupportedSchemaError(`"required" at ${path} must be an array of strings`);
    }
    const extra = schema.additionalProperties;
    if (extra !== undefined && typeof extra !== 'boolean' && !isSchemaObject(extra)) {
      throw new UnsupportedSchemaError(`"additionalProperties" at ${path} must be a boolean or a schema`);
    }

    const properties: PropertySpec[] = Object.keys(declared).map((name) => ({
      name,
      node: this.compile(declared[name], `${path}/properties/${escapePointerSegment(name)}`),
    }));
    const extraSchema = isSchemaObject(extra) ? this.compile(extra, `${path}/additionalProperties`) : null;
    for (const name of new Set(required as string[])) {
      if (Object.hasOwn(declared, name)) continue;
      if (extra === false) {
        throw new UnsupportedSchemaError(`required property ${JSON.stringify(name)} at ${path} is not in "properties" and additionalProperties is false`);
      }
      properties.push({ name, node: extraSchema ?? this.any() });
    }

    const generatesExtra = !this.strict && (extra === true || extraSchema !== null || (extra === undefined && schema.properties === undefined));
    let requiredMask = 0n;
    properties.forEach((property, index) => {
      if ((required as string[]).includes(property.name)) requiredMask |= 1n << BigInt(index);
    });
    return {
      kind: 'object',
      id: this.nextId++,
      path,
      properties,
      nameTrie: new ByteTrie(properties.map((property) => utf8Bytes(JSON.stringify(property.name).slice(1, -1)))),
      allPropertiesMask: (1n << BigInt(properties.length)) - 1n,
      requiredMask,
      additional: generatesExtra ? (extraSchema ?? this.any()) : null,
    };
  }

  private compileArray(schema: Record<string, unknown>, path: string): ArrayNode {
    if (Array.isArray(schema.items)) {
      throw new UnsupportedSchemaError(`"items" at ${path} is an array (tuple form), which is not supported; give one schema for all items`);
    }
    const minItems = this.countKeyword(schema, 'minItems', path) ?? 0;
    const maxItems = this.countKeyword(schema, 'maxItems', path) ?? Infinity;
    if (minItems > maxItems) throw new UnsupportedSchemaError(`minItems ${minItems} is greater than maxItems ${maxItems} at ${path}`);
    const items = schema.items === undefined ? this.any() : this.compile(schema.items, `${path}/items`);
    return {
      kind: 'array',
      id: this.nextId++,
      path,
      items,
      minItems,
      maxItems,
      countCap: Number.isFinite(maxItems) ? maxItems : minItems,
    };
  }

  private countKeyword(schema: Record<string, unknown>, keyword: string, path: string): number | undefined {
    const value = schema[keyword];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new UnsupportedSchemaError(`"${keyword}" at ${path} must be a non-negative integer`);
    }
    return value;
  }

  private onlyWith(schema: Record<string, unknown>, keyword: string, path: string): void {
    for (const other of Object.keys(schema)) {
      if (other === keyword || ANNOTATION_KEYWORDS.includes(other) || CONTAINER_KEYWORDS.includes(other)) continue;
      throw new UnsupportedSchemaError(
        `"${keyword}" at ${path} cannot be combined with "${other}"; move "${other}" into the referenced or alternative schemas`,
      );
    }
  }

  private literal(values: unknown[], path: string): LiteralNode {
    const texts = values.map((value) => JSON.stringify(value));
    return { kind: 'literal', id: this.nextId++, path, trie: new ByteTrie(texts.map(utf8Bytes)), values };
  }

  private union(options: SchemaNode[], path: string, freeForm = false): UnionNode {
    const node: UnionNode = { kind: 'union', id: this.nextId++, path, options, optionByFirstByte: new Array(256).fill(undefined), freeForm };
    this.unions.push(node);
    return node;
  }

  /** Any JSON value: one shared graph per schema, cycling through a ref node. */
  private any(): SchemaNode {
    if (this.anyValue) return this.anyValue;
    const self: RefNode = { kind: 'ref', id: this.nextId++, path: '(any value)', target: null };
    this.anyValue = self;
    const object: ObjectNode = this.objectOfAny('(any value)', self);
    const array: ArrayNode = { kind: 'array', id: this.nextId++, path: '(any value)', items: self, minItems: 0, maxItems: Infinity, countCap: 0 };
    const string: StringNode = { kind: 'string', id: this.nextId++, path: '(any value)' };
    const number: NumberNode = { kind: 'number', id: this.nextId++, path: '(any value)', integer: false };
    const literals = this.literal([true, false, null], '(any value)');
    self.target = this.union([object, array, string, number, literals], '(any value)', true);
    return self;
  }

  private anyObject(path: string): ObjectNode {
    return this.objectOfAny(path, this.any());
  }

  private objectOfAny(path: string, valueNode: SchemaNode): ObjectNode {
    return {
      kind: 'object',
      id: this.nextId++,
      path,
      properties: [],
      nameTrie: new ByteTrie([]),
      allPropertiesMask: 0n,
      requiredMask: 0n,
      additional: valueNode,
    };
  }
}
