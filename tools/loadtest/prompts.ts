/**
 * Seeded prompt generation and adapter picking, so that two runs with the same seed send the
 * same sequence of requests (which worker sends which one depends on timing).
 */
import type { AdapterMixEntry } from './args.js';
import { seededRandom } from '../../src/engine/sampling.js';

/** The engine's seeded generator (mulberry32): floats in [0, 1). */
export const createRng = seededRandom;

/** Integer uniform in [min, max]. */
export function randomInt(rng: () => number, min: number, max: number): number {
  return min + Math.floor(rng() * (max - min + 1));
}

/**
 * Common short lowercase English words. With a leading space each of them is a single token in
 * the usual BPE vocabularies (GPT-2, Llama, Qwen, Mistral), so N words ≈ N tokens. The server's
 * usage.prompt_tokens is the true count and is what the report shows.
 */
export const WORDS: readonly string[] = [
  'the',
  'of',
  'and',
  'to',
  'in',
  'is',
  'was',
  'that',
  'for',
  'it',
  'with',
  'as',
  'his',
  'on',
  'be',
  'at',
  'by',
  'had',
  'are',
  'but',
  'from',
  'or',
  'have',
  'an',
  'they',
  'which',
  'one',
  'you',
  'were',
  'all',
  'we',
  'her',
  'she',
  'there',
  'would',
  'their',
  'will',
  'when',
  'who',
  'him',
  'been',
  'has',
  'more',
  'if',
  'no',
  'out',
  'so',
  'said',
  'what',
  'up',
  'its',
  'about',
  'into',
  'than',
  'them',
  'can',
  'only',
  'other',
  'new',
  'some',
  'could',
  'time',
  'these',
  'two',
  'may',
  'then',
  'do',
  'first',
  'any',
  'my',
  'now',
  'such',
  'like',
  'our',
  'over',
  'man',
  'me',
  'even',
  'most',
  'made',
  'after',
  'also',
  'did',
  'many',
  'before',
  'must',
  'through',
  'back',
  'years',
  'where',
  'much',
  'your',
  'way',
  'well',
  'down',
  'should',
  'because',
  'each',
  'just',
  'those',
  'people',
  'how',
  'too',
  'little',
  'state',
  'good',
  'very',
  'make',
  'world',
  'still',
  'own',
  'see',
  'men',
  'work',
  'long',
  'get',
  'here',
  'between',
  'both',
  'life',
  'being',
  'under',
  'never',
  'day',
  'same',
  'another',
  'know',
  'while',
  'last',
  'might',
  'us',
  'great',
  'old',
  'year',
  'off',
  'come',
  'since',
  'against',
  'go',
  'came',
  'right',
  'used',
  'take',
  'three',
  'small',
  'house',
  'number',
  'part',
  'water',
  'order',
  'home',
  'light',
  'place',
  'point',
  'city',
  'name',
  'line',
  'hand',
  'high',
  'open',
  'case',
  'side',
  'room',
  'book',
  'money',
  'story',
  'music',
  'school',
  'system',
  'group',
  'market',
  'price',
  'plan',
  'team',
  'data',
  'file',
  'code',
  'test',
  'user',
  'query',
  'list',
  'value',
  'table',
  'model',
  'power',
  'road',
  'tree',
  'river',
  'window',
  'paper',
  'food',
  'game',
  'letter',
  'voice',
  'field',
  'night',
  'blue',
  'green',
  'red',
  'black',
  'white',
  'cold',
  'warm',
  'fast',
  'slow',
  'early',
  'late',
  'happy',
  'simple',
];

/** A prompt of approximately `tokens` tokens: that many words, sentence-cased, with full stops. */
export function generatePrompt(rng: () => number, tokens: number): string {
  const out: string[] = [];
  let sentenceLeft = 0;
  for (let i = 0; i < tokens; i++) {
    let w = WORDS[Math.floor(rng() * WORDS.length)];
    if (sentenceLeft === 0) {
      w = w[0].toUpperCase() + w.slice(1);
      sentenceLeft = randomInt(rng, 6, 14);
    }
    sentenceLeft--;
    // The full stop usually merges with the word or is one more token; close a sentence only
    // where that doesn't push the count far off (every ~10 words).
    if (sentenceLeft === 0 || i === tokens - 1) w += '.';
    out.push(w);
  }
  return out.join(' ');
}

export interface PlannedRequest {
  /** 0-based issue order. */
  index: number;
  entry: AdapterMixEntry;
  prompt: string;
  /** The approximate prompt length aimed at. */
  targetPromptTokens: number;
  /** Per-request sampling seed, sent when a temperature is set. */
  seed: number;
}

/** Weighted adapter choice. */
export function pickWeighted<T extends { weight: number }>(rng: () => number, entries: readonly T[]): T {
  const total = entries.reduce((s, e) => s + e.weight, 0);
  let x = rng() * total;
  for (const e of entries) {
    x -= e.weight;
    if (x < 0) return e;
  }
  return entries[entries.length - 1];
}

/**
 * The deterministic request sequence. Adapter picks, prompt lengths and prompt words use
 * separate streams, so changing --prompt-tokens doesn't change the adapter sequence.
 */
export class RequestPlanner {
  private readonly adapterRng: () => number;
  private readonly lengthRng: () => number;
  private readonly wordRng: () => number;
  private readonly seedRng: () => number;
  private nextIndex = 0;

  constructor(
    private readonly adapters: readonly AdapterMixEntry[],
    private readonly promptTokens: { min: number; max: number },
    seed: number,
  ) {
    if (adapters.length === 0) throw new Error('RequestPlanner: no adapters');
    this.adapterRng = createRng(seed * 4 + 1);
    this.lengthRng = createRng(seed * 4 + 2);
    this.wordRng = createRng(seed * 4 + 3);
    this.seedRng = createRng(seed * 4 + 4);
  }

  next(): PlannedRequest {
    const entry = pickWeighted(this.adapterRng, this.adapters);
    const targetPromptTokens = randomInt(this.lengthRng, this.promptTokens.min, this.promptTokens.max);
    const prompt = generatePrompt(this.wordRng, targetPromptTokens);
    const seed = Math.floor(this.seedRng() * 2 ** 31);
    return { index: this.nextIndex++, entry, prompt, targetPromptTokens, seed };
  }
}
