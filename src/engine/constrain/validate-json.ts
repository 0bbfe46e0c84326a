/**
 * A validator for the same JSON Schema subset the decoder supports, with standard JSON Schema
 * meaning (e.g. extra properties are allowed unless additionalProperties says otherwise).
 * Keywords outside the subset are ignored here; validateSchemaSupported rejects them.
 */
import { isSchemaObject, jsonEqual, resolveLocalRef, type JsonSchema } from './json-schema.js';

const MAX_REF_DEPTH = 200;

/**
 * Errors of `value` against `schema`, empty when valid. A null schema means json_object
 * mode: any JSON object.
 */
export function validateJson(value: unknown, schema: JsonSchema | null): string[] {
  const errors: string[] = [];
  if (schema === null) {
    if (!isSchemaObject(value)) errors.push(`$: expected an object, got ${describeType(value)}`);
    return errors;
  }
  return validateJsonWithRoot(value, schema, schema);
}

/** Like validateJson, with `$ref`s in `schema` resolved against `root`. */
export function validateJsonWithRoot(value: unknown, schema: unknown, root: JsonSchema): string[] {
  const errors: string[] = [];
  new Validator(root, errors).check(value, schema, '$', 0);
  return errors;
}

class Validator {
  constructor(
    private readonly root: JsonSchema,
    private readonly errors: string[],
  ) {}

  check(value: unknown, schema: unknown, path: string, refDepth: number): void {
    if (schema === true) return;
    if (schema === false) return this.fail(path, 'no value is allowed here');
    if (!isSchemaObject(schema)) return this.fail(path, 'invalid schema');

    if (typeof schema.$ref === 'string') {
      if (refDepth > MAX_REF_DEPTH) return this.fail(path, `$ref nesting deeper than ${MAX_REF_DEPTH}`);
      const target = resolveLocalRef(this.root, schema.$ref);
      if (!target.found) return this.fail(path, `cannot resolve $ref ${schema.$ref}`);
      this.check(value, target.value, path, refDepth + 1);
    }
    if (schema.type !== undefined) this.checkType(value, schema.type, path);
    if (Array.isArray(schema.enum) && !schema.enum.some((allowed) => jsonEqual(value, allowed))) {
      this.fail(path, `${preview(value)} is not one of ${preview(schema.enum)}`);
    }
    if (Object.hasOwn(schema, 'const') && !jsonEqual(value, schema.const)) {
      this.fail(path, `${preview(value)} is not ${preview(schema.const)}`);
    }
    if (Array.isArray(schema.anyOf)) this.checkAnyOf(value, schema.anyOf, path, refDepth);
    if (Array.isArray(schema.oneOf)) this.checkOneOf(value, schema.oneOf, path, refDepth);
    if (isSchemaObject(value)) this.checkObject(value, schema, path, refDepth);
    if (Array.isArray(value)) this.checkArray(value, schema, path, refDepth);
  }

  private checkType(value: unknown, type: unknown, path: string): void {
    const types = Array.isArray(type) ? type : [type];
    if (!types.some((name) => hasType(value, name))) this.fail(path, `expected ${types.join(' or ')}, got ${describeType(value)}`);
  }

  private checkAnyOf(value: unknown, branches: unknown[], path: string, refDepth: number): void {
    if (branches.some((branch) => this.passes(value, branch, refDepth))) return;
    this.fail(path, 'matches none of the anyOf branches');
  }

  private checkOneOf(value: unknown, branches: unknown[], path: string, refDepth: number): void {
    const matching = branches.filter((branch) => this.passes(value, branch, refDepth)).length;
    if (matching !== 1) this.fail(path, `matches ${matching} of the oneOf branches, expected exactly 1`);
  }

  private passes(value: unknown, schema: unknown, refDepth: number): boolean {
    const branchErrors: string[] = [];
    new Validator(this.root, branchErrors).check(value, schema, '$', refDepth);
    return branchErrors.length === 0;
  }

  private checkObject(value: Record<string, unknown>, schema: Record<string, unknown>, path: string, refDepth: number): void {
    const properties = isSchemaObject(schema.properties) ? schema.properties : {};
    if (Array.isArray(schema.required)) {
      for (const name of schema.required) {
        if (typeof name === 'string' && !Object.hasOwn(value, name)) this.fail(path, `missing required property ${JSON.stringify(name)}`);
      }
    }
    for (const [name, propertyValue] of Object.entries(value)) {
      const propertyPath = `${path}${JSON.stringify([name])}`;
      if (Object.hasOwn(properties, name)) {
        this.check(propertyValue, properties[name], propertyPath, refDepth);
      } else if (schema.additionalProperties === false) {
        this.fail(path, `property ${JSON.stringify(name)} is not allowed`);
      } else if (schema.additionalProperties !== undefined) {
        this.check(propertyValue, schema.additionalProperties, propertyPath, refDepth);
      }
    }
  }

  private checkArray(value: unknown[], schema: Record<string, unknown>, path: string, refDepth: number): void {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems)
      this.fail(path, `has ${value.length} items, fewer than minItems ${schema.minItems}`);
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems)
      this.fail(path, `has ${value.length} items, more than maxItems ${schema.maxItems}`);
    if (schema.items !== undefined && !Array.isArray(schema.items)) {
      value.forEach((item, index) => this.check(item, schema.items, `${path}[${index}]`, refDepth));
    }
  }

  private fail(path: string, message: string): void {
    this.errors.push(`${path}: ${message}`);
  }
}

function hasType(value: unknown, type: unknown): boolean {
  switch (type) {
    case 'object':
      return isSchemaObject(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    default:
      return false;
  }
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
