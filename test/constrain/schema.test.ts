import t from 'tap';
import { validateJson, validateSchemaSupported } from '../../src/engine/constrain/index.js';

t.test('supported schemas', async (t) => {
  const supported: unknown[] = [
    null,
    true,
    {},
    { type: 'object', properties: { a: { type: 'string', description: 'x', title: 'A', default: 'q' } }, required: ['a'], additionalProperties: false },
    { type: ['string', 'null'] },
    { type: ['integer', 'number'] },
    { type: 'array', items: { enum: [1, 'a', null] }, minItems: 1, maxItems: 2 },
    { anyOf: [{ type: 'string' }, { type: 'null' }, { type: 'array' }] },
    { oneOf: [{ const: 'a' }, { const: 'b' }] },
    { $schema: 'https://json-schema.org/draft/2020-12/schema', $defs: { x: { type: 'integer' } }, type: 'object', properties: { a: { $ref: '#/$defs/x' } } },
    { definitions: { x: { type: 'integer' } }, type: 'object', properties: { a: { $ref: '#/definitions/x' } } },
    { type: 'object', properties: { self: { anyOf: [{ $ref: '#' }, { type: 'null' }] } }, required: ['self'] },
    { type: 'object', required: ['undeclared'] },
  ];
  for (const schema of supported) t.equal(validateSchemaSupported(schema), null, JSON.stringify(schema));
});

t.test('unsupported schemas are rejected with a message naming the problem', async (t) => {
  const rejected: [unknown, RegExp][] = [
    [{ type: 'string', pattern: '^a' }, /keyword "pattern" \(at #\)/],
    [{ type: 'string', minLength: 1 }, /"minLength"/],
    [{ type: 'string', format: 'date' }, /"format"/],
    [{ type: 'number', minimum: 0 }, /"minimum"/],
    [{ allOf: [{ type: 'string' }] }, /"allOf"/],
    [{ type: 'object', properties: { a: { not: {} } } }, /"not" \(at #\/properties\/a\)/],
    [{ type: 'array', prefixItems: [] }, /"prefixItems"/],
    [{ type: 'array', uniqueItems: true }, /"uniqueItems"/],
    [{ type: 'object', patternProperties: {} }, /"patternProperties"/],
    [{ type: 'array', items: [{ type: 'string' }] }, /tuple form/],
    [{ type: 'strin' }, /unknown type "strin"/],
    [{ type: 'array', minItems: 3, maxItems: 2 }, /minItems 3 is greater than maxItems 2/],
    [{ type: 'array', minItems: -1 }, /"minItems" at # must be a non-negative integer/],
    [{ type: 'string', enum: [1, 2] }, /no value of "enum"\/"const"/],
    [{ enum: [] }, /"enum" at # must be a non-empty array/],
    [{ anyOf: [{ type: 'string' }, { enum: ['x'] }] }, /alternatives 0 and 1 can both start with "\\""/],
    [{ anyOf: [{ type: 'integer' }, { type: 'number' }] }, /can both start with "-"/],
    [{ anyOf: [{ type: 'object' }, {}] }, /can both start/],
    [{ $ref: 'https://example.com/schema.json' }, /only local references/],
    [{ $ref: '#/$defs/missing' }, /does not resolve/],
    [{ type: 'object', $ref: '#/$defs/a', $defs: { a: {} } }, /"\$ref" at # cannot be combined with "type"/],
    [{ $defs: { a: { $ref: '#/$defs/b' }, b: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' }, /\$ref cycle/],
    [{ type: 'object', properties: { me: { $ref: '#' } }, required: ['me'] }, /has no finite value/],
    [{ type: 'object', required: ['x'], additionalProperties: false }, /required property "x" .* not in "properties"/],
    [{ type: 'object', properties: { a: false } }, /is false/],
    [{ $defs: { unused: { format: 'email' } }, type: 'string' }, /"format" \(at #\/\$defs\/unused\)/],
    ['not a schema', /must be an object/],
  ];
  for (const [schema, message] of rejected) {
    const error = validateSchemaSupported(schema);
    t.match(error, message, JSON.stringify(schema));
  }
});

t.test('validateJson', async (t) => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string' },
      age: { type: 'integer' },
      tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 2 },
      nested: { $ref: '#/$defs/nested' },
    },
    required: ['name'],
    additionalProperties: false,
    $defs: { nested: { anyOf: [{ type: 'null' }, { type: 'object', properties: { x: { const: 1 } }, required: ['x'] }] } },
  };
  t.same(validateJson({ name: 'a', age: 3, tags: ['a'], nested: { x: 1 } }, schema), []);
  t.same(validateJson({ name: 'a', nested: null }, schema), []);
  t.same(validateJson({ age: 3.5, extra: 1, tags: ['c', 'a', 'b'], nested: { x: 2 } }, schema), [
    '$: missing required property "name"',
    '$["age"]: expected integer, got number',
    '$: property "extra" is not allowed',
    '$["tags"]: has 3 items, more than maxItems 2',
    '$["tags"][0]: "c" is not one of ["a","b"]',
    '$["nested"]: matches none of the anyOf branches',
  ]);
  t.same(validateJson({ a: 1 }, null), [], 'json_object mode');
  t.same(validateJson([1], null), ['$: expected an object, got array']);
  t.same(validateJson({ b: [1, 2] }, { enum: [{ b: [1, 2] }] }), [], 'enum compares JSON values');
  t.same(validateJson(1, { oneOf: [{ type: 'integer' }, { type: 'number' }] }), ['$: matches 2 of the oneOf branches, expected exactly 1']);
  t.same(validateJson({ extra: 1 }, { type: 'object', properties: {} }), [], 'extra properties allowed by default (standard meaning)');
});
