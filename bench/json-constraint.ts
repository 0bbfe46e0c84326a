/**
 * Per-token cost of JSON-constrained decoding (maskLogits + accept) against an unconstrained
 * step (argmax, and a full softmax, over the same logits), for synthetic byte-level
 * vocabularies of 32k and 128k tokens. Teacher-forced: the "model" emits a fixed realistic
 * JSON document, so every run walks the same states.
 *
 *   npx tsx bench/json-constraint.ts
 */
import os from 'node:os';
import { buildTokenVocabulary, compileJsonConstraint, type JsonSchema, type TokenVocabulary } from '../src/engine/constrain/index.js';

const CATALOG_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    store: { type: 'string' },
    currency: { enum: ['EUR', 'USD', 'GBP'] },
    products: {
      type: 'array',
      minItems: 1,
      maxItems: 50,
      items: {
        type: 'object',
        properties: {
          id: { type: 'integer' },
          name: { type: 'string' },
          description: { type: 'string' },
          price: { type: 'number' },
          inStock: { type: 'boolean' },
          category: { enum: ['books', 'garden', 'kitchen', 'toys'] },
          tags: { type: 'array', items: { type: 'string' }, maxItems: 5 },
          dimensions: {
            type: ['object', 'null'],
            properties: { width: { type: 'number' }, height: { type: 'number' } },
            required: ['width', 'height'],
            additionalProperties: false,
          },
        },
        required: ['id', 'name', 'price', 'inStock', 'category', 'tags'],
        additionalProperties: false,
      },
    },
  },
  required: ['store', 'currency', 'products'],
  additionalProperties: false,
};

function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

const SYLLABLES = 'ka ri to ne sa mo lu de pa vi ga ho zu the and ing er on re at es or an en al st ch sh qu'.split(' ');

function randomWord(random: () => number): string {
  let word = '';
  const syllables = 1 + Math.floor(random() * 4);
  for (let index = 0; index < syllables; index++) word += SYLLABLES[Math.floor(random() * SYLLABLES.length)];
  return word;
}

/** A byte-level BPE-like vocabulary: all bytes, words with/without a leading space, JSON punctuation, digits, whitespace runs, UTF-8. */
function syntheticVocabulary(size: number, seed: number): { vocabulary: TokenVocabulary; tokens: Uint8Array[]; eos: number } {
  const random = seededRandom(seed);
  const encoder = new TextEncoder();
  const seen = new Set<string>();
  const tokens: Uint8Array[] = [];
  const add = (bytes: Uint8Array) => {
    const key = Buffer.from(bytes).toString('latin1');
    if (bytes.length === 0 || seen.has(key) || tokens.length >= size - 3) return;
    seen.add(key);
    tokens.push(bytes);
  };
  for (let byte = 0; byte < 256; byte++) add(Uint8Array.of(byte));
  const punctuation = ['{', '}', '[', ']', '"', ':', ',', ' ', '\n'];
  for (const a of punctuation) for (const b of punctuation) add(encoder.encode(a + b));
  for (const piece of ['": "', '", "', '"},', '"],', '": [', '": {', '":"', '","', '"}', '}]', '},{', '}, {', '"]', '": true', '": false', '": null', '": 0', '\n  "', '\n    "', ',\n', '},\n']) add(encoder.encode(piece));
  for (let n = 0; n < 1000; n++) add(encoder.encode(String(n)));
  for (let n = 0; n < 100; n++) add(encoder.encode(` ${n}`));
  for (let n = 1; n <= 32; n++) add(encoder.encode(' '.repeat(n)));
  for (let n = 0; n <= 24; n++) add(encoder.encode('\n' + ' '.repeat(n)));
  for (let n = 1; n <= 8; n++) add(encoder.encode('\t'.repeat(n)));
  for (const word of ['true', 'false', 'null', 'name', 'price', 'description', 'products', 'category', 'books', 'garden', 'inStock', 'tags', 'id']) {
    for (const variant of [word, ` ${word}`, `"${word}`, `"${word}"`, ` "${word}`]) add(encoder.encode(variant));
  }
  for (let code = 0x4e00; code < 0x4e00 + Math.floor(size / 40); code++) add(encoder.encode(String.fromCodePoint(code)));
  for (let index = 0; index < size / 200; index++) {
    const char = encoder.encode(String.fromCodePoint(0x1f600 + (index % 80)));
    add(char.slice(0, 2));
    add(char.slice(2));
    add(char);
  }
  while (tokens.length < size - 3) {
    const word = randomWord(random);
    const roll = random();
    const text = roll < 0.45 ? ` ${word}` : roll < 0.75 ? word : roll < 0.85 ? ` ${word[0].toUpperCase()}${word.slice(1)}` : roll < 0.9 ? `${word}é` : roll < 0.95 ? `"${word}` : `${word}.`;
    add(encoder.encode(text));
  }
  tokens.push(new Uint8Array(0), new Uint8Array(0));
  const eos = tokens.length;
  tokens.push(new Uint8Array(0));
  return { vocabulary: buildTokenVocabulary(tokens, [eos]), tokens, eos };
}

function catalogDocument(seed: number): unknown {
  const random = seededRandom(seed);
  const sentence = (words: number) => Array.from({ length: words }, () => randomWord(random)).join(' ');
  const categories = ['books', 'garden', 'kitchen', 'toys'];
  return {
    store: `${sentence(2)} Ltd`,
    currency: 'EUR',
    products: Array.from({ length: 8 }, (_, index) => ({
      id: 1000 + index * 17,
      name: sentence(3),
      description: `${sentence(25)} — ${sentence(10)} (größe: ${index}) 日本`,
      price: Math.round(random() * 10000) / 100,
      inStock: random() < 0.5,
      category: categories[index % 4],
      tags: Array.from({ length: index % 4 }, () => randomWord(random)),
      dimensions: index % 3 === 0 ? null : { width: Math.round(random() * 500) / 10, height: 12 },
    })),
  };
}

/** Longest-match tokenization over the vocabulary trie. */
function tokenize(text: string, vocabulary: TokenVocabulary): number[] {
  const bytes = new TextEncoder().encode(text);
  const { edgeStart, edgeByte, edgeTarget, tokenStart, tokenIds } = vocabulary.trie;
  const ids: number[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    let node = 0;
    let best = -1;
    let bestLength = 0;
    for (let length = 1; offset + length <= bytes.length; length++) {
      let next = -1;
      for (let edge = edgeStart[node]; edge < edgeStart[node + 1]; edge++) if (edgeByte[edge] === bytes[offset + length - 1]) next = edgeTarget[edge];
      if (next < 0) break;
      node = next;
      if (tokenStart[node + 1] > tokenStart[node]) {
        best = tokenIds[tokenStart[node]];
        bestLength = length;
      }
    }
    ids.push(best);
    offset += bestLength;
  }
  return ids;
}

function argmax(logits: Float32Array): number {
  let best = 0;
  let bestValue = logits[0];
  for (let index = 1; index < logits.length; index++) {
    if (logits[index] > bestValue) {
      bestValue = logits[index];
      best = index;
    }
  }
  return best;
}

function softmaxInPlace(logits: Float32Array): void {
  let max = -Infinity;
  for (let index = 0; index < logits.length; index++) if (logits[index] > max) max = logits[index];
  let total = 0;
  for (let index = 0; index < logits.length; index++) total += logits[index] = Math.exp(logits[index] - max);
  for (let index = 0; index < logits.length; index++) logits[index] /= total;
}

interface Measurement {
  microsPerToken: number;
  missRate?: number;
  maxMicros?: number;
}

function measureBaseline(steps: number, base: Float32Array, operation: (logits: Float32Array) => void): Measurement {
  const logits = new Float32Array(base.length);
  let total = 0n;
  let sink = 0;
  for (let step = 0; step < steps; step++) {
    logits.set(base);
    logits[step % base.length] += 1;
    const started = process.hrtime.bigint();
    operation(logits);
    total += process.hrtime.bigint() - started;
    sink += logits[0];
  }
  if (Number.isNaN(sink)) console.log('');
  return { microsPerToken: Number(total) / steps / 1000 };
}

function measureConstrained(schema: JsonSchema | null, vocabulary: TokenVocabulary, documentIds: number[], eos: number, base: Float32Array): Measurement {
  const constraint = compileJsonConstraint(schema, vocabulary);
  const state = constraint.start();
  const logits = new Float32Array(base.length);
  const missesBefore = constraint.cacheStats.misses;
  let total = 0n;
  let max = 0n;
  for (const id of [...documentIds, eos]) {
    logits.set(base);
    const started = process.hrtime.bigint();
    state.maskLogits(logits);
    state.accept(id);
    const elapsed = process.hrtime.bigint() - started;
    total += elapsed;
    if (elapsed > max) max = elapsed;
    if (logits[id] === -Infinity) throw new Error(`document token ${id} was masked`);
  }
  if (!state.isFinished()) throw new Error('document did not finish');
  const steps = documentIds.length + 1;
  return { microsPerToken: Number(total) / steps / 1000, missRate: (constraint.cacheStats.misses - missesBefore) / steps, maxMicros: Number(max) / 1000 };
}

function format(value: number, digits = 1): string {
  return value.toFixed(digits).padStart(8);
}

function main(): void {
  console.log(`node ${process.version}, ${os.cpus().length} CPU(s): ${os.cpus()[0]?.model ?? 'unknown'}`);
  const rows: string[][] = [];
  for (const size of [32_000, 128_000]) {
    const built = performance.now();
    const { vocabulary, eos } = syntheticVocabulary(size, size);
    const buildMs = performance.now() - built;
    const random = seededRandom(1);
    const base = Float32Array.from({ length: vocabulary.size }, () => random() * 10 - 5);

    const documents = [1, 2].map((seed) => catalogDocument(seed));
    const texts = [JSON.stringify(documents[0], null, 2), JSON.stringify(documents[1], null, 2)];
    const ids = texts.map((text) => tokenize(text, vocabulary));

    measureBaseline(200, base, argmax); // warm-up
    const argmaxCost = measureBaseline(2000, base, argmax);
    const softmaxCost = measureBaseline(500, base, softmaxInPlace);
    console.log(`\n${size} tokens: vocabulary built in ${buildMs.toFixed(0)} ms; document ${ids[0].length} tokens (${texts[0].length} chars); argmax ${argmaxCost.microsPerToken.toFixed(1)} µs, softmax ${softmaxCost.microsPerToken.toFixed(1)} µs`);

    for (const [label, schema] of [['json_object', null], ['json_schema', CATALOG_SCHEMA]] as const) {
      // First document: empty mask cache (and, for the first mode, the per-vocabulary string tables).
      const cold = measureConstrained(schema, vocabulary, ids[0], eos, base);
      // Second, different document with the same schema: the cache from the first is reused.
      const warm = measureConstrained(schema, vocabulary, ids[1], eos, base);
      for (const [phase, result] of [['1st doc', cold], ['2nd doc', warm]] as const) {
        rows.push([
          `${size / 1000}k`, label, phase,
          format(result.microsPerToken), format(result.microsPerToken / argmaxCost.microsPerToken, 2), format(result.microsPerToken / softmaxCost.microsPerToken, 2),
          format((result.missRate ?? 0) * 100, 0) + '%', format(result.maxMicros ?? 0, 0),
        ]);
      }
    }
  }
  console.log('\nvocab  mode         document  µs/token  ×argmax  ×softmax  cache-miss  max µs');
  for (const row of rows) console.log(`${row[0].padEnd(6)} ${row[1].padEnd(12)} ${row[2].padEnd(9)} ${row.slice(3).join('  ')}`);
}

main();
