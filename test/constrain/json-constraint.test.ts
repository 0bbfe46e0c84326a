import t from 'tap';
import fc from 'fast-check';
import {
  buildTokenVocabulary,
  compileJsonConstraint,
  UnsupportedSchemaError,
  type JsonConstraintState,
  type JsonSchema,
} from '../../src/engine/constrain/index.js';
import { greedyTokenize, syntheticVocabulary } from './fixtures/synthetic-vocabulary.js';
import { TEST_SCHEMAS } from './fixtures/schemas.js';

const { vocabulary, tokens, eosId, specialIds } = syntheticVocabulary();
const encoder = new TextEncoder();

function isAllowedByMask(state: JsonConstraintState, tokenId: number): boolean {
  const logits = new Float32Array(vocabulary.size);
  state.maskLogits(logits);
  return logits[tokenId] !== -Infinity;
}

/** Feeds `text` token by token, checking the mask and accept agree on each; returns the failure or null. */
function feedText(schema: JsonSchema | null, text: string): string | null {
  const state = compileJsonConstraint(schema, vocabulary).start();
  for (const id of greedyTokenize(encoder.encode(text), tokens)) {
    if (!isAllowedByMask(state, id) || !state.allows(id)) return `token ${JSON.stringify(Buffer.from(tokens[id]).toString('latin1'))} rejected in ${text}`;
    state.accept(id);
  }
  if (!state.isComplete() || !isAllowedByMask(state, eosId)) return `not complete after ${text}`;
  state.accept(eosId);
  return state.isFinished() ? null : 'EOS not accepted';
}

const number = fc.oneof(
  fc.integer({ min: -1e12, max: 1e12 }),
  fc.integer().map((n) => n / 64),
);
const string = fc.string({ unit: 'binary', maxLength: 12 });
const { value: anyValue } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    number,
    string,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(string, tie('value'), { maxKeys: 4 }),
  ),
}));
const address = fc.record(
  { street: string, zip: fc.integer({ min: 0, max: 99999 }), country: fc.constantFrom('DE', 'FR', 'US') },
  { requiredKeys: ['street', 'country'] },
);
const person = fc.record(
  { name: string, age: fc.integer({ min: -1000, max: 1000 }), email: fc.option(string), address },
  { requiredKeys: ['name', 'age', 'address'] },
);

t.test('every valid document is accepted token by token (json_object)', async (t) => {
  fc.assert(
    fc.property(fc.dictionary(string, anyValue, { maxKeys: 5 }), fc.constantFrom(undefined, 1, 2), (value, indent) => {
      const failure = feedText(null, JSON.stringify(value, null, indent));
      if (failure) throw new Error(failure);
    }),
    { seed: 42, numRuns: 200 },
  );
  t.pass('200 documents accepted');
});

t.test('every valid document is accepted token by token (schema)', async (t) => {
  fc.assert(
    fc.property(person, fc.constantFrom(undefined, 2), (value, indent) => {
      const failure = feedText(TEST_SCHEMAS.person, JSON.stringify(value, null, indent));
      if (failure) throw new Error(failure);
    }),
    { seed: 43, numRuns: 200 },
  );
  t.pass('200 documents accepted');
});

t.test('mask and state API', async (t) => {
  const state = compileJsonConstraint(null, vocabulary).start();
  const logits = new Float32Array(vocabulary.size + 5).fill(1);
  state.maskLogits(logits);
  t.equal(logits[eosId], -Infinity, 'EOS masked before the value is complete');
  for (const id of specialIds) t.equal(logits[id], -Infinity, 'special (empty) tokens are never allowed');
  t.equal(logits[vocabulary.size + 2], -Infinity, 'logits beyond the vocabulary are masked');
  t.equal(logits[vocabulary.singleByteTokenIds[0x7b]], 1, '"{" allowed, logit kept');
  t.equal(logits[vocabulary.singleByteTokenIds[0x5b]], -Infinity, '"[" not allowed at the root in json_object mode');
  t.throws(() => state.accept(vocabulary.singleByteTokenIds[0x5b]), /not allowed/);
  t.throws(() => state.accept(eosId), /not allowed/);
  t.notOk(state.isComplete());
  for (const id of greedyTokenize(encoder.encode('{}'), tokens)) state.accept(id);
  t.ok(state.isComplete());
  t.ok(state.allows(eosId));
  state.accept(eosId);
  t.ok(state.isFinished());
  t.same(state.allowedTokenIds(), [eosId], 'only EOS after the end');
  t.throws(() => state.accept(vocabulary.singleByteTokenIds[0x20]), /not allowed/);
  t.notOk(state.allows(-1));
  t.notOk(state.allows(vocabulary.size));
});

t.test('compileJsonConstraint', async (t) => {
  t.equal(
    compileJsonConstraint(TEST_SCHEMAS.person, vocabulary),
    compileJsonConstraint(structuredClone(TEST_SCHEMAS.person), vocabulary),
    'identical schemas share a constraint',
  );
  t.not(compileJsonConstraint(TEST_SCHEMAS.person, vocabulary), compileJsonConstraint(TEST_SCHEMAS.person, vocabulary, { strict: true }));
  t.throws(() => compileJsonConstraint({ type: 'string', format: 'email' }, vocabulary), UnsupportedSchemaError);
  t.throws(() => compileJsonConstraint({ type: 'string', format: 'email' }, vocabulary), /"format"/);
  const lettersOnly = buildTokenVocabulary([...'abc'].map((ch) => encoder.encode(ch)).concat([new Uint8Array(0)]), [3]);
  t.throws(() => compileJsonConstraint(null, lettersOnly), /single-byte token/);
  t.throws(() => buildTokenVocabulary([encoder.encode('a')], [5]), /outside the vocabulary/);
});

t.test('the vocabulary trie holds every non-special token exactly once', async (t) => {
  const { trie } = vocabulary;
  const found = new Map<number, string>();
  const visit = (node: number, prefix: number[]) => {
    for (let index = trie.tokenStart[node]; index < trie.tokenStart[node + 1]; index++) found.set(trie.tokenIds[index], Buffer.from(prefix).toString('latin1'));
    for (let edge = trie.edgeStart[node]; edge < trie.edgeStart[node + 1]; edge++) visit(trie.edgeTarget[edge], [...prefix, trie.edgeByte[edge]]);
  };
  visit(0, []);
  const expected = new Map<number, string>();
  tokens.forEach((bytes, id) => {
    if (bytes.length > 0 && id !== eosId) expected.set(id, Buffer.from(bytes).toString('latin1'));
  });
  t.equal(trie.tokenIds.length, expected.size);
  t.same(new Map([...found].sort((a, b) => a[0] - b[0])), expected);
});
