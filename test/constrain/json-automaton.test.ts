import t from 'tap';
import { JsonAutomaton } from '../../src/engine/constrain/json-automaton.js';
import { compileSchema } from '../../src/engine/constrain/schema-compiler.js';
import type { JsonSchema } from '../../src/engine/constrain/json-schema.js';

type Outcome = 'complete' | 'prefix' | `rejected at ${number}`;

interface FeedOptions {
  strict?: boolean;
  maxWhitespaceRun?: number;
  maxFreeFormNesting?: number;
}

function feed(schema: JsonSchema | null, input: string | number[], options: FeedOptions = {}): Outcome {
  const automaton = new JsonAutomaton(compileSchema(schema, options), options.maxWhitespaceRun ?? 4, options.maxFreeFormNesting ?? 32);
  const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : Uint8Array.from(input);
  let state = automaton.initial();
  for (let index = 0; index < bytes.length; index++) {
    const next = automaton.step(state, bytes[index]);
    if (next === null) return `rejected at ${index}`;
    state = next;
  }
  return automaton.canEnd(state) ? 'complete' : 'prefix';
}

const quoteBytes = (text: string) => [...new TextEncoder().encode(text)];

t.test('json_object mode: any JSON object', async (t) => {
  const cases: [string, Outcome][] = [
    ['{}', 'complete'],
    ['{"a":1,"b":[true,false,null,"x",{"c":-0.5e+10}],"a":{}}', 'complete'],
    ['{"a":1', 'prefix'],
    ['{"a":tru', 'prefix'],
    ['[]', 'rejected at 0'],
    ['"text"', 'rejected at 0'],
    ['{"a":01}', 'rejected at 6'],
    ['{"a":1.}', 'rejected at 7'],
    ['{"a":-}', 'rejected at 6'],
    ['{"a":1e}', 'rejected at 7'],
    ['{"a":1,}', 'rejected at 7'],
    ['{,}', 'rejected at 1'],
    ['{"a" 1}', 'rejected at 5'],
    ['{"a":tRue}', 'rejected at 6'],
    ['{"a":1}}', 'rejected at 7'],
    ['{"a":1}x', 'rejected at 7'],
    ['{"a":"\\u00e9\\n\\"\\/"}', 'complete'],
    ['{"a":"\\x"}', 'rejected at 7'],
    ['{"a":"\\u00g"}', 'rejected at 10'],
    ['{"a\\u0041":1}', 'complete'],
    ['{"é日本😀":"ü"}', 'complete'],
    [' {"a" : [ 1 , 2 ] } ', 'complete'],
    ['\t{\n"a":\r1}\n', 'complete'],
  ];
  for (const [text, expected] of cases) t.equal(feed(null, text), expected, JSON.stringify(text));
});

t.test('strings: control characters and UTF-8 validity at byte level', async (t) => {
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0x01]), 'rejected at 6', 'raw control character');
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0x7f, 0x22, 0x7d]), 'complete', 'DEL is allowed raw');
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0xf0, 0x9f]), 'prefix', 'half of an emoji is a valid prefix');
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0xf0, 0x9f, 0x22]), 'rejected at 8', 'quote inside a multi-byte character');
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0xc0, 0x80]), 'rejected at 6', 'overlong encoding');
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0xe0, 0x80]), 'rejected at 7', 'overlong 3-byte encoding');
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0xed, 0xa0, 0x80]), 'rejected at 7', 'UTF-16 surrogate encoded in UTF-8');
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0xf4, 0x90]), 'rejected at 7', 'beyond U+10FFFF');
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0xf5]), 'rejected at 6', 'never-valid lead byte');
  t.equal(feed(null, [...quoteBytes('{"a":"'), 0x80]), 'rejected at 6', 'stray continuation byte');
  t.equal(feed(null, [...quoteBytes('{'), 0xc3, 0xa9]), 'rejected at 1', 'non-ASCII outside strings');
});

t.test('whitespace runs are bounded', async (t) => {
  t.equal(feed(null, '{    "a":1}', { maxWhitespaceRun: 4 }), 'complete');
  t.equal(feed(null, '{     "a":1}', { maxWhitespaceRun: 4 }), 'rejected at 5');
  t.equal(feed(null, '{"a":1}    ', { maxWhitespaceRun: 4 }), 'complete');
  t.equal(feed(null, '{"a":1}     ', { maxWhitespaceRun: 4 }), 'rejected at 11');
  t.equal(feed(null, '{"a":1}', { maxWhitespaceRun: 0 }), 'complete');
  t.equal(feed(null, '{ "a":1}', { maxWhitespaceRun: 0 }), 'rejected at 1');
});

t.test('numbers and integers', async (t) => {
  const integer = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false };
  const number = { type: 'object', properties: { n: { type: 'number' } }, required: ['n'], additionalProperties: false };
  t.equal(feed(integer, '{"n":-0}'), 'complete');
  t.equal(feed(integer, '{"n":123456789012345}'), 'complete', '15 digits');
  t.equal(feed(integer, '{"n":1234567890123456}'), 'rejected at 20', 'a 16th digit');
  t.equal(feed(integer, '{"n":1.5}'), 'rejected at 6', 'fraction');
  t.equal(feed(integer, '{"n":1e5}'), 'rejected at 6', 'exponent');
  t.equal(feed(integer, '{"n":"1"}'), 'rejected at 5', 'string');
  t.equal(feed(number, '{"n":-12.50E+07}'), 'complete');
  t.equal(feed(number, '{"n":1e99}'), 'complete');
  t.equal(feed(number, '{"n":1e999}'), 'rejected at 9', 'three exponent digits (would parse to Infinity)');
  t.equal(feed({ type: 'integer' }, '42'), 'complete', 'a bare number at the root may end');
  t.equal(feed({ type: 'integer' }, '42 '), 'complete');
  t.equal(feed({ type: 'number' }, '-'), 'prefix');
});

t.test('objects: properties, required, additionalProperties', async (t) => {
  const person = {
    type: 'object',
    properties: { name: { type: 'string' }, age: { type: 'integer' }, nick: { type: 'string' } },
    required: ['name', 'age'],
    additionalProperties: false,
  };
  t.equal(feed(person, '{"name":"Ada","age":36}'), 'complete');
  t.equal(feed(person, '{"age":36,"nick":"A","name":"Ada"}'), 'complete', 'any order');
  t.equal(feed(person, '{}'), 'rejected at 1', 'required properties missing');
  t.equal(feed(person, '{"name":"Ada"}'), 'rejected at 13', 'cannot close before "age"');
  t.equal(feed(person, '{"x'), 'rejected at 2', 'undeclared property');
  t.equal(feed(person, '{"nam"'), 'rejected at 5', 'a prefix of a name is not a name');
  t.equal(feed(person, '{"name":"A","name"'), 'rejected at 14', 'duplicate property (after "n", only "nick" is still open)');
  t.equal(feed(person, '{"name":"A","age":1,"nick":"B",'), 'rejected at 30', 'no property left to add');
  t.equal(feed(person, '{"age":"1"'), 'rejected at 7', 'property schema applies');

  const overlapping = { type: 'object', properties: { a: { type: 'integer' }, ab: { type: 'integer' } }, additionalProperties: false };
  t.equal(feed(overlapping, '{"a":1,"ab":2}'), 'complete');
  t.equal(feed(overlapping, '{"a":1,"a"'), 'rejected at 9', '"a" again, though "ab" is still open');

  const open = { type: 'object', properties: { a: { type: 'integer' } }, additionalProperties: true };
  t.equal(feed(open, '{"a":1,"b":"x","c":[{}]}'), 'complete');
  t.equal(feed(open, '{"a":1,"a"'), 'rejected at 9', 'an extra key may not repeat a declared name');
  t.equal(feed(open, '{"b":"x","a":"x"'), 'rejected at 13', 'a declared name keeps its schema');
  t.equal(feed(open, '{"\\u0061":1}'), 'rejected at 3', 'extra keys must be spelled canonically');
  t.equal(feed(open, '{"a\\nb":1}'), 'complete');
  t.equal(feed(open, '{"a":1,"b":2}', { strict: true }), 'rejected at 6', 'strict: only declared properties, so no comma after the last');

  const typedExtra = { type: 'object', properties: { a: { type: 'integer' } }, additionalProperties: { type: 'boolean' } };
  t.equal(feed(typedExtra, '{"x":true,"a":2}'), 'complete');
  t.equal(feed(typedExtra, '{"x":1'), 'rejected at 5');

  t.equal(feed({ type: 'object' }, '{"anything":[1,{"x":null}]}'), 'complete', 'no "properties": any object');
  t.equal(feed({ type: 'object', properties: { a: { type: 'integer' } } }, '{"b":1}'), 'rejected at 2', 'declared properties only by default');
  t.equal(feed({ type: 'object', properties: {}, additionalProperties: false }, '{}'), 'complete');
  t.equal(feed({ type: 'object', properties: {}, additionalProperties: false }, '{"'), 'rejected at 1');

  const quoted = { type: 'object', properties: { 'say "hi"': { type: 'integer' }, 'a\\b': { type: 'integer' } }, additionalProperties: true };
  t.equal(feed(quoted, '{"say \\"hi\\"":1,"a\\\\b":2,"say \\"ho\\"":3}'), 'complete', 'escaped quotes in declared and extra names');
});

t.test('arrays: items, minItems, maxItems', async (t) => {
  const tags = { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 3 };
  const root = (items: string) => `{"t":${items}}`;
  const schema = { type: 'object', properties: { t: tags }, required: ['t'] };
  t.equal(feed(schema, root('["a"]')), 'complete');
  t.equal(feed(schema, root('["a","b","c"]')), 'complete');
  t.equal(feed(schema, root('[]')), 'rejected at 6', 'minItems');
  t.equal(feed(schema, root('["a","b","c",')), 'rejected at 17', 'maxItems');
  t.equal(feed(schema, root('[1]')), 'rejected at 6', 'items schema');
  t.equal(feed({ type: 'array', maxItems: 0 }, '[]'), 'complete');
  t.equal(feed({ type: 'array', maxItems: 0 }, '[1'), 'rejected at 1');
  t.equal(feed({ type: 'array', items: { type: 'array', items: { type: 'integer' } } }, '[[1,2],[],[3]]'), 'complete');
});

t.test('enum, const, boolean, null, type arrays, anyOf', async (t) => {
  const color = { type: 'object', properties: { c: { enum: ['red', 'green', 1, 12, null, { k: [1] }] } }, required: ['c'] };
  for (const value of ['"red"', '"green"', '1', '12', 'null', '{"k":[1]}']) t.equal(feed(color, `{"c":${value}}`), 'complete', value);
  t.equal(feed(color, '{"c":"re"}'), 'rejected at 8');
  t.equal(feed(color, '{"c":13}'), 'rejected at 6');
  t.equal(feed(color, '{"c":"blue"}'), 'rejected at 6');
  t.equal(feed({ type: 'string', enum: ['a', 1] }, '1'), 'rejected at 0', 'enum values filtered by type');
  t.equal(feed({ const: 'fixed' }, '"fixed"'), 'complete');
  t.equal(feed({ type: 'boolean' }, 'false'), 'complete');
  t.equal(feed({ type: 'boolean' }, 'null'), 'rejected at 0');
  const nullable = { type: ['string', 'null'] };
  t.equal(feed(nullable, 'null'), 'complete');
  t.equal(feed(nullable, '"x"'), 'complete');
  t.equal(feed(nullable, '1'), 'rejected at 0');
  const either = { anyOf: [{ type: 'integer' }, { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] }] };
  t.equal(feed(either, '7'), 'complete');
  t.equal(feed(either, '{"a":"x"}'), 'complete');
  t.equal(feed(either, '{}'), 'rejected at 1');
});

t.test('$ref and recursion', async (t) => {
  const tree = {
    $defs: {
      node: {
        type: 'object',
        properties: { v: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#/$defs/node' } } },
        required: ['v'],
        additionalProperties: false,
      },
    },
    $ref: '#/$defs/node',
  };
  t.equal(feed(tree, '{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]}'), 'complete');
  t.equal(feed(tree, '{"v":1,"kids":[{}]}'), 'rejected at 16');
  const list = { type: 'object', properties: { next: { anyOf: [{ $ref: '#' }, { type: 'null' }] } }, required: ['next'], additionalProperties: false };
  t.equal(feed(list, '{"next":{"next":null}}'), 'complete');
});

t.test('nesting inside free-form values is limited', async (t) => {
  t.equal(feed(null, '{"a":[{"b":1}]}', { maxFreeFormNesting: 3 }), 'complete');
  t.equal(feed(null, '{"a":[{"b":[', { maxFreeFormNesting: 3 }), 'rejected at 11');
  t.equal(feed(null, '{"a":[{"b":{', { maxFreeFormNesting: 3 }), 'rejected at 11');
  t.equal(feed(null, '{"a":[{"b":"deep enough"}]}', { maxFreeFormNesting: 3 }), 'complete', 'scalars remain possible');
  const tree = { type: 'object', properties: { kids: { type: 'array', items: { $ref: '#' } } } };
  t.equal(feed(tree, '{"kids":[{"kids":[{"kids":[]}]}]}', { maxFreeFormNesting: 1 }), 'complete', 'schema structure is not limited');
});
