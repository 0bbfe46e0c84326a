/**
 * Per-token cost of JSON-constrained decoding (maskLogits + accept) against an unconstrained
 * step (argmax, and a full softmax, over the same logits), for synthetic byte-level
 * vocabularies of 32k and 128k tokens. Teacher-forced: the "model" emits a fixed realistic
 * JSON document, so every run walks the same states.
 *
 *   npx tsx bench/json-constraint.ts
 */
import os from 'node:os';
import { buildTokenVocabulary, compileJsonConstraint, type JsonConstraint, type JsonSchema, type TokenVocabulary } from '../src/engine/constrain/index.js';

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
  for (const piece of [
    '": "',
    '", "',
    '"},',
    '"],',
    '": [',
    '": {',
    '":"',
    '","',
    '"}',
    '}]',
    '},{',
    '}, {',
    '"]',
    '": true',
    '": false',
    '": null',
    '": 0',
    '\n  "',
    '\n    "',
    ',\n',
    '},\n',
  ])
    add(encoder.encode(piece));
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
    const text =
      roll < 0.45
        ? ` ${word}`
        : roll < 0.75
          ? word
          : roll < 0.85
            ? ` ${word[0].toUpperCase()}${word.slice(1)}`
            : roll < 0.9
              ? `${word}é`
              : roll < 0.95
                ? `"${word}`
                : `${word}.`;
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

const SOFTMAX_EVERY = 10;

interface Run {
  constrained: number[];
  argmax: number[];
  softmax: number[];
  missRate: number;
}

function micros(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1000;
}

/**
 * Teacher-forces the document through a fresh sequence state. Each step also times an
 * unconstrained argmax (and every 10th step a softmax) on the same logits, interleaved, so
 * that the ratios hold even when the machine's load changes during the run.
 */
function run(constraint: JsonConstraint, documentIds: number[], eos: number, base: Float32Array): Run {
  const state = constraint.start();
  const logits = new Float32Array(base.length);
  const missesBefore = constraint.cacheStats.misses;
  const result: Run = { constrained: [], argmax: [], softmax: [], missRate: 0 };
  let sink = 0;
  [...documentIds, eos].forEach((id, step) => {
    logits.set(base);
    let started = process.hrtime.bigint();
    sink += argmax(logits);
    result.argmax.push(micros(started));
    if (step % SOFTMAX_EVERY === 0) {
      started = process.hrtime.bigint();
      softmaxInPlace(logits);
      result.softmax.push(micros(started));
      logits.set(base);
    }
    started = process.hrtime.bigint();
    state.maskLogits(logits);
    state.accept(id);
    result.constrained.push(micros(started));
    if (logits[id] === -Infinity) throw new Error(`document token ${id} was masked`);
  });
  if (!state.isFinished()) throw new Error('document did not finish');
  if (Number.isNaN(sink)) console.log();
  result.missRate = (constraint.cacheStats.misses - missesBefore) / (documentIds.length + 1);
  return result;
}

const REPETITIONS = 3;
const mean = (values: number[]) => values.reduce((total, value) => total + value, 0) / values.length;
const percentile = (values: number[], fraction: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * fraction))];
const cell = (value: number, width = 8, digits = 1) => value.toFixed(digits).padStart(width);
/** Per step, the fastest of the repetitions: other processes on the machine only ever add time. */
const fastestPerStep = (runs: number[][]) => runs[0].map((_, step) => Math.min(...runs.map((times) => times[step])));

/** A constraint with its own, empty mask cache (identical options would share the memoized one). */
function freshConstraint(schema: JsonSchema | null, vocabulary: TokenVocabulary, repetition: number): JsonConstraint {
  return compileJsonConstraint(schema, vocabulary, { maxCachedMasks: 4096 + repetition + 1 });
}

function main(): void {
  console.log(
    `node ${process.version}, ${os.cpus().length} CPU(s) (${os.cpus()[0]?.model ?? 'unknown'}), load average ${os
      .loadavg()
      .map((load) => load.toFixed(1))
      .join(' ')}`,
  );
  const documents = [1, 2].map((seed) => JSON.stringify(catalogDocument(seed), null, 2));

  // JIT warm-up on a small vocabulary, so that the first measured run is not the first ever.
  const warm = syntheticVocabulary(8_000, 8);
  const warmBase = new Float32Array(warm.vocabulary.size);
  for (const schema of [null, CATALOG_SCHEMA]) run(freshConstraint(schema, warm.vocabulary, -1), tokenize(documents[0], warm.vocabulary), warm.eos, warmBase);

  const rows: string[] = [];
  for (const size of [32_000, 128_000]) {
    const { tokens, eos } = syntheticVocabulary(size, size);
    let started = performance.now();
    const vocabulary = buildTokenVocabulary(tokens, [eos]);
    const buildMs = performance.now() - started;
    started = performance.now();
    compileJsonConstraint(CATALOG_SCHEMA, vocabulary);
    const compileMs = performance.now() - started;
    const random = seededRandom(1);
    const base = Float32Array.from({ length: vocabulary.size }, () => random() * 10 - 5);
    const ids = documents.map((text) => tokenize(text, vocabulary));
    console.log(
      `${size / 1000}k vocabulary: buildTokenVocabulary ${buildMs.toFixed(0)} ms, compileJsonConstraint(schema) ${compileMs.toFixed(1)} ms; ` +
        `documents of ${ids[0].length} and ${ids[1].length} tokens (${documents[0].length} chars)`,
    );
    for (const [mode, schema] of [
      ['json_object', null],
      ['json_schema', CATALOG_SCHEMA],
    ] as const) {
      // 1st document: empty mask cache. 2nd, different document with the same schema: the cache the 1st filled.
      const runs: Run[][] = [[], []];
      for (let repetition = 0; repetition < REPETITIONS; repetition++) {
        const constraint = freshConstraint(schema, vocabulary, repetition);
        runs[0].push(run(constraint, ids[0], eos, base));
        runs[1].push(run(constraint, ids[1], eos, base));
      }
      runs.forEach((repeated, documentIndex) => {
        const constrained = fastestPerStep(repeated.map((result) => result.constrained));
        const argmaxMean = mean(fastestPerStep(repeated.map((result) => result.argmax)));
        const softmaxMean = mean(fastestPerStep(repeated.map((result) => result.softmax)));
        rows.push(
          `${`${size / 1000}k`.padEnd(6)} ${mode.padEnd(12)} ${(documentIndex === 0 ? '1st doc' : '2nd doc').padEnd(8)}` +
            `${cell(mean(constrained))}${cell(percentile(constrained, 0.5))}${cell(percentile(constrained, 0.99))}${cell(Math.max(...constrained), 9, 0)}` +
            `${cell(argmaxMean)}${cell(softmaxMean, 9)}${cell(mean(constrained) / argmaxMean, 9, 2)}${cell(mean(constrained) / softmaxMean, 9, 2)}${cell(repeated[0].missRate * 100, 7, 0)}%${cell(mean(repeated[0].constrained), 10)}`,
        );
      });
    }
  }
  console.log(`\nµs per token (maskLogits + accept), each step the fastest of ${REPETITIONS} repetitions; argmax/softmax timed on the same steps.`);
  console.log('1st-rep mean: the first repetition alone (includes one-time per-vocabulary string tables, and any load noise).');
  console.log('vocab  mode         document   mean     p50     p99      max   argmax  softmax  ×argmax ×softmax  misses  1st-rep mean');
  for (const row of rows) console.log(row);
}

main();
