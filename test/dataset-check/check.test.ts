/** The prompt/completion JSONL checker (tools/dataset-check/check.ts), case by case. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  MAX_CANDIDATES_PER_RECORD,
  checkDataset,
  defaultOptions,
  formatSummary,
  jaccard,
  normalizeText,
  shingles,
  splitRecords,
  toJsonl,
  type CheckReport,
  type Issue,
} from '../../tools/dataset-check/check.js';
import { BEDROCK_LIMITS } from '../../tools/dataset-check/limits.js';
import { loadTokenCounter } from '../../tools/dataset-check/tokenizer.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const rec = (prompt: unknown, completion: unknown, extra: Record<string, unknown> = {}): string => JSON.stringify({ prompt, completion, ...extra });
const jsonl = (...lines: string[]): string => lines.map((l) => `${l}\n`).join('');
const codes = (r: CheckReport, line?: number): string[] => r.issues.filter((x) => line === undefined || x.line === line).map((x) => x.code);
const issue = (r: CheckReport, code: Issue['code']): Issue | undefined => r.issues.find((x) => x.code === code);

const SENTENCES = [
  'The quarterly report shows revenue growth in every region, led by strong sales of the new product line.',
  'Please reset my password, I have been locked out of the billing portal since Monday morning.',
  'Write a Python function that returns the largest number in a list of integers.',
  'Our team would like a demo of the analytics dashboard next Thursday afternoon.',
];

t.test('a clean file has no issues and counts every record', async (t) => {
  const r = checkDataset(jsonl(...SENTENCES.map((s, i) => rec(s, `answer ${i}`))));
  t.equal(r.errors, 0);
  t.equal(r.warnings, 0);
  t.equal(r.lines, 4);
  t.equal(r.valid.length, 4);
  t.equal(r.invalidRecords, 0);
  t.same(
    r.valid.map((v) => v.line),
    [1, 2, 3, 4],
  );
  t.ok(r.tokens);
  t.equal(r.tokens!.exact, false, 'without a tokenizer tokens are estimates');
});

t.test('invalid JSON is an error on its line', async (t) => {
  const r = checkDataset(jsonl(rec('a b c', 'd'), '{"prompt": "x", "completion": ', rec('e f g', 'h'), "{'prompt': 'single quotes'}"));
  t.same(codes(r, 2), ['invalid-json']);
  t.same(codes(r, 4), ['invalid-json']);
  t.match(issue(r, 'invalid-json')!.message, /^invalid JSON: /);
  t.equal(r.errors, 2);
  t.equal(r.valid.length, 2);
  t.equal(r.invalidRecords, 2);
});

t.test('a line that is JSON but not an object is an error', async (t) => {
  const r = checkDataset(jsonl('["prompt", "completion"]', 'null', '42', '"text"'));
  t.same(codes(r), ['not-object', 'not-object', 'not-object', 'not-object']);
  t.match(r.issues[0].message, /an array/);
  t.match(r.issues[1].message, /null/);
  t.same(
    r.issues.map((x) => x.line),
    [1, 2, 3, 4],
  );
});

t.test('missing and non-string fields are errors', async (t) => {
  const r = checkDataset(
    jsonl(
      JSON.stringify({ prompt: 'only a prompt' }),
      JSON.stringify({ completion: 'only a completion' }),
      JSON.stringify({}),
      rec(12, 'x'),
      rec('x', ['a']),
      rec(null, 'x'),
    ),
  );
  t.same(codes(r, 1), ['missing-field']);
  t.match(r.issues.find((x) => x.line === 1)!.message, /"completion"/);
  t.same(codes(r, 2), ['missing-field']);
  t.same(codes(r, 3), ['missing-field', 'missing-field'], 'an empty object misses both');
  t.same(codes(r, 4), ['not-string']);
  t.match(r.issues.find((x) => x.line === 4)!.message, /"prompt" must be a string, got number/);
  t.same(codes(r, 5), ['not-string']);
  t.same(codes(r, 6), ['not-string']);
  t.match(r.issues.find((x) => x.line === 6)!.message, /got null/);
  t.equal(r.valid.length, 0);
  t.equal(r.invalidRecords, 6);
});

t.test('empty records and empty fields are errors', async (t) => {
  const r = checkDataset(jsonl(rec('', ''), rec('  \n', '\t'), rec('a prompt', ''), rec('', 'a completion'), rec('a prompt', '   ')));
  t.same(codes(r, 1), ['empty-record']);
  t.same(codes(r, 2), ['empty-record'], 'whitespace only counts as empty');
  t.same(codes(r, 3), ['empty-field']);
  t.match(r.issues.find((x) => x.line === 3)!.message, /"completion" is empty/);
  t.same(codes(r, 4), ['empty-field']);
  t.match(r.issues.find((x) => x.line === 4)!.message, /"prompt" is empty/);
  t.same(codes(r, 5), ['empty-field']);
});

t.test('blank lines are warnings; CRLF line ends, a BOM and a missing final newline are fine', async (t) => {
  const r = checkDataset(`\uFEFF${rec(SENTENCES[0], 'x')}\r\n\r\n${rec(SENTENCES[1], 'y')}\n   \n${rec(SENTENCES[2], 'z')}`);
  t.same(codes(r), ['blank-line', 'blank-line']);
  t.same(
    r.issues.map((x) => x.line),
    [2, 4],
  );
  t.equal(r.errors, 0);
  t.equal(r.valid.length, 3);
  t.equal(r.valid[0].raw, rec(SENTENCES[0], 'x'), 'the raw line has no \\r');
  t.equal(r.blankLines, 2);
});

t.test('extra fields are a warning, not an error', async (t) => {
  const r = checkDataset(jsonl(rec(SENTENCES[0], 'x', { id: 7, source: 'crm' })));
  t.same(codes(r), ['extra-field']);
  t.match(r.issues[0].message, /"id", "source"/);
  t.equal(r.valid.length, 1);
});

t.test('exact duplicates and conflicting completions are reported against the first line', async (t) => {
  const r = checkDataset(
    jsonl(rec(SENTENCES[0], 'same'), rec(SENTENCES[1], 'b'), rec(SENTENCES[0], 'same'), rec(SENTENCES[0], 'different'), rec(SENTENCES[0], 'same')),
  );
  t.same(codes(r, 3), ['duplicate']);
  t.match(r.issues.find((x) => x.line === 3)!.message, /line 1/);
  t.same(codes(r, 4), ['conflicting-completion']);
  t.match(r.issues.find((x) => x.line === 4)!.message, /line 1/);
  t.same(codes(r, 5), ['duplicate']);
  t.equal(r.duplicates, 2);
  t.equal(r.conflictingPrompts, 1);
  t.equal(r.nearDuplicates, 0, 'exact duplicates are not counted again as near-duplicates');
  t.equal(r.errors, 0);
});

t.test('near-duplicates: normalized text and high shingle overlap', async (t) => {
  // 70 words: changing one word changes 3 of ~68 word 3-grams (Jaccard 65/71 = 0.92)
  const long =
    'Summarize this support ticket. I cannot log in to the billing portal since Monday morning and the reset link I received by email does not work at all, ' +
    'please help me get back into my account quickly because our whole finance team depends on it to send invoices to customers before the end of the month, ' +
    'and we have already tried two different browsers and a new password without any luck at all';
  const oneWordChanged = long.replace('Monday', 'Tuesday');
  const r = checkDataset(
    jsonl(
      rec(long, 'Summary: cannot log in.'),
      rec(SENTENCES[2], 'def f(): pass'),
      rec(long.toUpperCase().replace(/\./g, '!!'), 'summary   cannot log in'), // same after normalizing
      rec(oneWordChanged, 'Summary: cannot log in.'),
      rec(SENTENCES[3], 'Hi there'),
    ),
  );
  t.same(codes(r, 3), ['near-duplicate']);
  t.match(r.issues.find((x) => x.line === 3)!.message, /line 1 \(same text after normalizing/);
  t.same(codes(r, 4), ['near-duplicate']);
  t.match(r.issues.find((x) => x.line === 4)!.message, /line 1 \(Jaccard 0\.9\d over word 3-grams\)/);
  t.same(codes(r, 2), []);
  t.same(codes(r, 5), []);
  t.equal(r.nearDuplicates, 2);

  const strict = checkDataset(
    jsonl(rec(long, 'Summary: cannot log in.'), rec(oneWordChanged, 'Summary: cannot log in.')),
    defaultOptions({ nearDuplicateThreshold: 0.99 }),
  );
  t.equal(strict.nearDuplicates, 0, 'a stricter threshold lets it pass');
});

t.test('normalization, shingles and Jaccard', async (t) => {
  t.equal(normalizeText('  Hello,   WORLD!! ３ fish\n'), 'hello world 3 fish', 'case, punctuation, spacing, NFKC');
  t.same([...shingles('a b c d')], ['a b c', 'b c d']);
  t.same([...shingles('a b')], ['a b'], 'short texts are one shingle');
  t.same([...shingles('')], []);
  t.equal(jaccard(new Set(['x', 'y']), new Set(['y', 'z'])), 1 / 3);
  t.equal(jaccard(new Set(), new Set()), 1);
});

t.test('near-duplicate detection stays fast on a large templated file', async (t) => {
  const names = ['Anna', 'Ben', 'Carlos', 'Diana', 'Elena', 'Farid', 'Grace', 'Hiro'];
  const lines: string[] = [];
  for (let i = 0; i < 5000; i++) {
    lines.push(
      rec(`Write a sales email to ${names[i % 8]} about order ${i} and product ${i % 97}.`, `Hi ${names[i % 8]}, thanks for order ${i}. Best regards`),
    );
  }
  const start = performance.now();
  const r = checkDataset(jsonl(...lines));
  const ms = performance.now() - start;
  t.equal(r.valid.length, 5000);
  // Linear, by operation count: at most MAX_CANDIDATES_PER_RECORD Jaccard comparisons per record, where comparing
  // every pair of these templated records would take 5000 * 4999 / 2. The time is printed, not asserted.
  t.ok(r.nearDuplicateComparisons > 0, 'the templated records were compared');
  t.ok(
    r.nearDuplicateComparisons <= 5000 * MAX_CANDIDATES_PER_RECORD,
    `${r.nearDuplicateComparisons} comparisons for 5000 records (at most ${MAX_CANDIDATES_PER_RECORD} each; all pairs would be ${(5000 * 4999) / 2})`,
  );
  t.comment(`5000 records checked in ${ms.toFixed(0)} ms`);
});

t.test('token limit: estimate is ceil(chars / 4) of prompt plus completion', async (t) => {
  // 40 + 8 characters -> 10 + 2 estimated tokens
  const r = checkDataset(jsonl(rec('x'.repeat(40), 'y'.repeat(8)), rec('x'.repeat(41), 'y'.repeat(8))), defaultOptions({ maxTokens: 12 }));
  t.same(codes(r, 1), []);
  t.same(codes(r, 2), ['too-many-tokens']);
  t.match(r.issues[0].message, /13 tokens \(prompt \+ completion, estimated\), over the limit of 12/);
  t.equal(r.tokens!.max, 13, 'stats include the records over the limit');
  t.equal(r.tokens!.overLimit, 1);
  t.equal(r.valid.length, 1);
  t.equal(r.invalidRecords, 1);
});

t.test('token limit with a real tokenizer counts exactly (no BOS)', async (t) => {
  const fixture = join(ROOT, 'test', 'fixtures', 'llama-tiny');
  const reference = JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', 'reference.json'), 'utf8')).models[0];
  const counter = loadTokenCounter(fixture);
  t.equal(counter.exact, true);
  for (const c of reference.tokenizer_cases as Array<{ text: string; ids: number[] }>) {
    t.equal(counter.count(c.text), c.ids.length - 1, `${JSON.stringify(c.text.slice(0, 30))}: reference ids minus the BOS`);
  }
  const text = (reference.tokenizer_cases as Array<{ text: string; ids: number[] }>)[0];
  const n = counter.count(text.text);
  const ok = checkDataset(jsonl(rec(text.text, text.text)), defaultOptions({ maxTokens: 2 * n, tokenCounter: counter }));
  t.equal(ok.errors, 0);
  t.equal(ok.tokens!.max, 2 * n);
  const over = checkDataset(jsonl(rec(text.text, text.text)), defaultOptions({ maxTokens: 2 * n - 1, tokenCounter: counter }));
  t.same(codes(over), ['too-many-tokens']);
  t.notMatch(over.issues[0].message, /estimated/);
  t.match(formatSummary('f.jsonl', ok), /exact: with .*tokenizer\.json/);
  t.throws(() => loadTokenCounter(join(ROOT, 'no-such-dir')), /no tokenizer\.json/);
});

t.test('character limit defaults to 6 x the token limit', async (t) => {
  const o = defaultOptions({ maxTokens: 100 });
  t.equal(o.maxChars, 600);
  t.equal(defaultOptions().maxChars, BEDROCK_LIMITS.maxTokensPerRecord * BEDROCK_LIMITS.charsPerToken);
  const huge = { ...o, maxTokens: 10_000 };
  const r = checkDataset(jsonl(rec('a'.repeat(300), 'b'.repeat(301))), huge);
  t.same(codes(r), ['too-many-chars']);
  t.match(r.issues[0].message, /601 characters, over the limit of 600/);
});

t.test('record-count and file-size limits', async (t) => {
  const three = jsonl(rec(SENTENCES[0], 'a'), rec(SENTENCES[1], 'b'), rec(SENTENCES[2], 'c'));
  t.same(codes(checkDataset(three, defaultOptions({ maxRecords: 3 }))), []);
  const r = checkDataset(three, defaultOptions({ maxRecords: 2 }));
  t.same(codes(r), ['too-many-records']);
  t.equal(r.issues[0].line, 0, 'a file-level problem');
  const bytes = Buffer.byteLength(three);
  t.same(codes(checkDataset(three, defaultOptions({ maxFileBytes: bytes }))), []);
  const big = checkDataset(three, defaultOptions({ maxFileBytes: bytes - 1 }));
  t.same(codes(big), ['file-too-large']);
  t.equal(big.valid.length, 3, 'records are still checked');
  t.equal(BEDROCK_LIMITS.maxTokensPerRecord, 4096);
  t.equal(BEDROCK_LIMITS.maxValidationFileBytes, 100_000_000);
});

t.test('an empty file is an error', async (t) => {
  t.same(codes(checkDataset('')), ['no-records']);
  const blank = checkDataset('\n\n');
  t.same(codes(blank), ['no-records', 'blank-line', 'blank-line']);
});

t.test('bytes that are not UTF-8 are an error naming the line', async (t) => {
  const good = Buffer.from(jsonl(rec(SENTENCES[0], 'a')));
  const bad = Buffer.concat([good, Buffer.from('{"prompt": "caf'), Buffer.from([0xe9]), Buffer.from('", "completion": "x"}\n')]);
  const r = checkDataset(bad);
  t.same(codes(r, 0), ['not-utf8']);
  t.match(r.issues[0].message, /line 2/);
  t.ok(checkDataset(new Uint8Array(good)).errors === 0, 'a Uint8Array of valid UTF-8 passes');
  const multibyte = checkDataset(Buffer.from(jsonl(rec('naïve café 日本語 🙂 prompt text', 'ok'))));
  t.equal(multibyte.errors, 0);
});

t.test('split: deterministic, order-independent, disjoint, duplicates dropped', async (t) => {
  const lines = Array.from({ length: 200 }, (_, i) => rec(`prompt number ${i} about topic ${i * 7}`, `completion ${i}`));
  const r = checkDataset(jsonl(...lines, lines[5], lines[9]));
  t.equal(r.duplicates, 2);
  const s = splitRecords(r.valid, 0.1);
  t.equal(s.validation.length, 20);
  t.equal(s.train.length, 180);
  t.equal(s.droppedDuplicates, 2);
  const trainSet = new Set(s.train.map((x) => x.raw));
  t.ok(
    s.validation.every((x) => !trainSet.has(x.raw)),
    'no record in both',
  );
  t.same(splitRecords(r.valid, 0.1), s, 'same input, same split');
  const reversed = checkDataset(jsonl(...[...lines].reverse()));
  const s2 = splitRecords(reversed.valid, 0.1);
  t.same(new Set(s2.validation.map((x) => x.raw)), new Set(s.validation.map((x) => x.raw)), 'file order does not matter');
  t.not(JSON.stringify(splitRecords(r.valid, 0.1, 'other seed').validation), JSON.stringify(s.validation), 'the seed changes it');
  t.same(
    s.train.map((x) => x.line),
    [...s.train.map((x) => x.line)].sort((a, b) => a - b),
    'train keeps file order',
  );
  t.equal(toJsonl(s.validation).split('\n').length, 21, 'one line per record plus the final newline');
  const two = checkDataset(jsonl(rec(SENTENCES[0], 'a'), rec(SENTENCES[1], 'b')));
  t.equal(splitRecords(two.valid, 0.01).validation.length, 1, 'at least one validation record');
  t.throws(() => splitRecords(two.valid, 1), RangeError);
  t.throws(() => splitRecords(two.valid, 0), RangeError);
});

t.test('the summary names counts, limits, the token method and each issue with its line', async (t) => {
  const r = checkDataset(jsonl(rec(SENTENCES[0], 'a'), 'not json', rec(SENTENCES[0], 'a')));
  const s = formatSummary('data/x.jsonl', r);
  t.match(s, /^dataset-check: data\/x\.jsonl/);
  t.match(s, /3 lines with content, 2 valid, 1 invalid/, 'a duplicate is valid (a warning)');
  t.match(s, /limit 10,000/);
  t.match(s, /estimated: ceil\(characters \/ 4\) per field/);
  t.match(s, /1 exact/);
  t.match(s, /1 error, 1 warning/);
  t.match(s, /line 2: error: invalid JSON/);
  t.match(s, /line 3: warning: exact duplicate of line 1/);
  const short = formatSummary('x', r, 1);
  t.match(short, /\.\.\. and 1 more/);
});
