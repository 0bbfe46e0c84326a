/**
 * Checks a prompt/completion JSONL file for model customization (the `{"prompt": ..., "completion": ...}`
 * records that Amazon Bedrock fine-tuning takes) and optionally splits it into train/validation files.
 *
 * Errors (the file would be rejected or the record is unusable): bytes that are not UTF-8, a line that is
 * not valid JSON, not a JSON object, a missing or non-string `prompt`/`completion`, an empty record (both
 * fields empty or whitespace), an empty field, a record over the token or character limit, a file over the
 * size limit, more records than the record limit, no records at all.
 * Warnings (legal but probably a mistake): blank lines, fields other than prompt/completion, exact duplicate
 * records, the same prompt with different completions, near-duplicates.
 *
 * Near-duplicates: each record's text (prompt + "\n" + completion) is normalized (Unicode NFKC, lower case,
 * every run of non-letters/digits becomes one space), then cut into word 3-grams ("shingles"). Two records
 * are near-duplicates when the Jaccard similarity of their shingle sets is >= the threshold (default 0.9);
 * records whose normalized text is identical (but whose raw text differs) are reported with similarity 1.
 * Candidates are found with MinHash + locality-sensitive hashing (64 hashes, 16 bands of 4 rows), and every
 * reported pair is confirmed with the exact Jaccard similarity, so the check stays fast on large files
 * (a pair with similarity >= 0.9 becomes a candidate with probability > 0.99).
 */
import { createHash } from 'node:crypto';
import { BEDROCK_LIMITS } from './limits.js';

export type Severity = 'error' | 'warning';

export interface Issue {
  /** 1-based line number in the file; 0 for problems with the file as a whole. */
  line: number;
  severity: Severity;
  code:
    | 'not-utf8'
    | 'invalid-json'
    | 'not-object'
    | 'missing-field'
    | 'not-string'
    | 'empty-record'
    | 'empty-field'
    | 'too-many-tokens'
    | 'too-many-chars'
    | 'blank-line'
    | 'extra-field'
    | 'duplicate'
    | 'conflicting-completion'
    | 'near-duplicate'
    | 'file-too-large'
    | 'too-many-records'
    | 'no-records';
  message: string;
}

export interface TokenCounter {
  /** How counts are made, for the summary, e.g. "with models/demo/tokenizer.json (no special tokens)". */
  readonly description: string;
  readonly exact: boolean;
  count(text: string): number;
}

/** ceil(characters / 4): the usual rough estimate for English text with a BPE tokenizer. */
export const charEstimateCounter: TokenCounter = {
  description: 'ceil(characters / 4) per field; pass --tokenizer for exact counts',
  exact: false,
  count: (text) => Math.ceil([...text].length / 4),
};

export interface CheckOptions {
  /** Max prompt + completion tokens per record (Bedrock: 4,096 for Titan Text at batch size 1). */
  maxTokens: number;
  /** Max characters per record; Bedrock documents token quota x 6. */
  maxChars: number;
  /** Max records in the file (the training + validation records quota). */
  maxRecords: number;
  /** Max file size in bytes (training: 1 GB, validation: 100 MB). */
  maxFileBytes: number;
  /** Jaccard threshold over word 3-grams for near-duplicates (0 < t <= 1). */
  nearDuplicateThreshold: number;
  tokenCounter: TokenCounter;
}

export function defaultOptions(overrides: Partial<CheckOptions> = {}): CheckOptions {
  const maxTokens = overrides.maxTokens ?? BEDROCK_LIMITS.maxTokensPerRecord;
  return {
    maxTokens,
    maxChars: maxTokens * BEDROCK_LIMITS.charsPerToken,
    maxRecords: BEDROCK_LIMITS.maxRecords,
    maxFileBytes: BEDROCK_LIMITS.maxTrainingFileBytes,
    nearDuplicateThreshold: 0.9,
    tokenCounter: charEstimateCounter,
    ...overrides,
  };
}

export interface ValidRecord {
  line: number;
  prompt: string;
  completion: string;
  /** The line exactly as it was in the file (without the line break). */
  raw: string;
  tokens: number;
}

/** Tokens per record (prompt + completion) over every record that parsed, those over the limit included. */
export interface TokenStats {
  method: string;
  exact: boolean;
  min: number;
  mean: number;
  p95: number;
  max: number;
  overLimit: number;
}

export interface CheckReport {
  bytes: number;
  /** Non-blank lines. */
  lines: number;
  blankLines: number;
  /** Records that passed every per-record error check. */
  valid: ValidRecord[];
  invalidRecords: number;
  issues: Issue[];
  errors: number;
  warnings: number;
  duplicates: number;
  conflictingPrompts: number;
  nearDuplicates: number;
  /** Jaccard comparisons the near-duplicate search made: at most MAX_CANDIDATES_PER_RECORD per record. */
  nearDuplicateComparisons: number;
  tokens: TokenStats | null;
  options: CheckOptions;
}

/** Checks the bytes of a JSONL file. Never throws for bad content: everything is reported as issues. */
export function checkDataset(data: Uint8Array | string, options: CheckOptions = defaultOptions()): CheckReport {
  const issues: Issue[] = [];
  const bytes = typeof data === 'string' ? Buffer.byteLength(data, 'utf8') : data.byteLength;
  let text: string;
  if (typeof data === 'string') {
    text = data;
  } else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(data);
    } catch {
      issues.push({ line: 0, severity: 'error', code: 'not-utf8', message: `the file is not valid UTF-8${firstBadUtf8Line(data)}` });
      text = new TextDecoder('utf-8').decode(data);
    }
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a UTF-8 byte order mark is tolerated

  if (bytes > options.maxFileBytes) {
    issues.push({
      line: 0,
      severity: 'error',
      code: 'file-too-large',
      message: `file is ${formatBytes(bytes)}, over the ${formatBytes(options.maxFileBytes)} limit`,
    });
  }

  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop(); // the final newline ends the last line
  const valid: ValidRecord[] = [];
  let invalidRecords = 0;
  let blankLines = 0;
  let nonBlank = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const raw = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (raw.trim() === '') {
      blankLines++;
      issues.push({ line, severity: 'warning', code: 'blank-line', message: 'blank line (Bedrock expects one JSON object per line)' });
      continue;
    }
    nonBlank++;
    const before = issues.length;
    const record = parseRecord(raw, line, issues, options);
    if (record) valid.push(record);
    else if (issues.slice(before).some((x) => x.severity === 'error')) invalidRecords++;
  }

  if (nonBlank === 0) issues.push({ line: 0, severity: 'error', code: 'no-records', message: 'the file has no records' });
  if (nonBlank > options.maxRecords) {
    issues.push({
      line: 0,
      severity: 'error',
      code: 'too-many-records',
      message: `${nonBlank} records, over the limit of ${options.maxRecords} (training + validation records quota; see --max-records)`,
    });
  }

  const dup = findDuplicates(valid, issues);
  const near = findNearDuplicates(valid, options.nearDuplicateThreshold, dup.duplicateLines, issues);

  let tokens: TokenStats | null = null;
  const counted = valid.map((r) => r.tokens);
  if (counted.length > 0) {
    const sorted = [...counted].sort((a, b) => a - b);
    tokens = {
      method: options.tokenCounter.description,
      exact: options.tokenCounter.exact,
      min: sorted[0],
      mean: counted.reduce((a, b) => a + b, 0) / counted.length,
      p95: sorted[Math.min(sorted.length - 1, Math.ceil(0.95 * sorted.length) - 1)],
      max: sorted[sorted.length - 1],
      overLimit: issues.filter((x) => x.code === 'too-many-tokens').length,
    };
  }

  issues.sort((a, b) => a.line - b.line || (a.severity === b.severity ? 0 : a.severity === 'error' ? -1 : 1));
  // Records that parsed but broke a limit (tokens, characters) are invalid too.
  const errorLines = new Set(issues.filter((x) => x.severity === 'error' && x.line > 0).map((x) => x.line));
  const usable = valid.filter((r) => !errorLines.has(r.line));
  return {
    bytes,
    lines: nonBlank,
    blankLines,
    valid: usable,
    invalidRecords: invalidRecords + (valid.length - usable.length),
    issues,
    errors: issues.filter((x) => x.severity === 'error').length,
    warnings: issues.filter((x) => x.severity === 'warning').length,
    duplicates: dup.duplicates,
    conflictingPrompts: dup.conflicting,
    nearDuplicates: near.found,
    nearDuplicateComparisons: near.comparisons,
    tokens,
    options,
  };
}

function parseRecord(raw: string, line: number, issues: Issue[], options: CheckOptions): ValidRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    issues.push({ line, severity: 'error', code: 'invalid-json', message: `invalid JSON: ${(err as Error).message}` });
    return null;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    issues.push({
      line,
      severity: 'error',
      code: 'not-object',
      message: `expected a JSON object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`,
    });
    return null;
  }
  const obj = value as Record<string, unknown>;
  let ok = true;
  for (const field of ['prompt', 'completion'] as const) {
    if (!(field in obj)) {
      issues.push({ line, severity: 'error', code: 'missing-field', message: `missing "${field}"` });
      ok = false;
    } else if (typeof obj[field] !== 'string') {
      issues.push({
        line,
        severity: 'error',
        code: 'not-string',
        message: `"${field}" must be a string, got ${obj[field] === null ? 'null' : typeof obj[field]}`,
      });
      ok = false;
    }
  }
  const extra = Object.keys(obj).filter((k) => k !== 'prompt' && k !== 'completion');
  if (extra.length > 0) {
    issues.push({
      line,
      severity: 'warning',
      code: 'extra-field',
      message: `fields other than prompt/completion: ${extra.map((k) => JSON.stringify(k)).join(', ')}`,
    });
  }
  if (!ok) return null;
  const prompt = obj.prompt as string;
  const completion = obj.completion as string;
  const promptEmpty = prompt.trim() === '';
  const completionEmpty = completion.trim() === '';
  if (promptEmpty && completionEmpty) {
    issues.push({ line, severity: 'error', code: 'empty-record', message: 'empty record: prompt and completion are both empty' });
    return null;
  }
  if (promptEmpty || completionEmpty) {
    issues.push({ line, severity: 'error', code: 'empty-field', message: `"${promptEmpty ? 'prompt' : 'completion'}" is empty` });
    return null;
  }
  const chars = [...prompt].length + [...completion].length;
  const tokens = options.tokenCounter.count(prompt) + options.tokenCounter.count(completion);
  if (tokens > options.maxTokens) {
    issues.push({
      line,
      severity: 'error',
      code: 'too-many-tokens',
      message: `${tokens} tokens (prompt + completion${options.tokenCounter.exact ? '' : ', estimated'}), over the limit of ${options.maxTokens}`,
    });
  }
  if (chars > options.maxChars) {
    issues.push({ line, severity: 'error', code: 'too-many-chars', message: `${chars} characters, over the limit of ${options.maxChars}` });
  }
  return { line, prompt, completion, raw, tokens };
}

function findDuplicates(records: ValidRecord[], issues: Issue[]): { duplicates: number; conflicting: number; duplicateLines: Set<number> } {
  const byRecord = new Map<string, number>();
  const byPrompt = new Map<string, { line: number; completion: string }>();
  const duplicateLines = new Set<number>();
  let duplicates = 0;
  let conflicting = 0;
  for (const r of records) {
    const key = JSON.stringify([r.prompt, r.completion]);
    const first = byRecord.get(key);
    if (first !== undefined) {
      duplicates++;
      duplicateLines.add(r.line);
      issues.push({ line: r.line, severity: 'warning', code: 'duplicate', message: `exact duplicate of line ${first}` });
      continue;
    }
    byRecord.set(key, r.line);
    const samePrompt = byPrompt.get(r.prompt);
    if (samePrompt) {
      conflicting++;
      issues.push({
        line: r.line,
        severity: 'warning',
        code: 'conflicting-completion',
        message: `same prompt as line ${samePrompt.line} with a different completion`,
      });
    } else {
      byPrompt.set(r.prompt, { line: r.line, completion: r.completion });
    }
  }
  return { duplicates, conflicting, duplicateLines };
}

// ---------------------------------------------------------------------------------------------------------
// Near-duplicates: word 3-gram shingles, MinHash signatures, LSH banding, exact Jaccard confirmation.
// ---------------------------------------------------------------------------------------------------------
const NUM_HASHES = 64;
const BANDS = 16;
const ROWS = NUM_HASHES / BANDS;
/** Each record is compared with at most this many earlier candidates (bounds the work on templated data). */
export const MAX_CANDIDATES_PER_RECORD = 200;

export function normalizeText(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();
}

export function shingles(normalized: string, n = 3): Set<string> {
  const words = normalized.split(' ').filter(Boolean);
  const out = new Set<string>();
  if (words.length < n) {
    if (words.length > 0) out.add(words.join(' '));
    return out;
  }
  for (let i = 0; i + n <= words.length; i++) out.add(words.slice(i, i + n).join(' '));
  return out;
}

export function jaccard(a: Set<string>, b: Set<string>): number {
  if (a.size === 0 && b.size === 0) return 1;
  let inter = 0;
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const x of small) if (large.has(x)) inter++;
  return inter / (a.size + b.size - inter);
}

/** 32-bit FNV-1a of a string. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// Fixed odd multipliers/offsets for the MinHash family h_i(x) = (a_i * x + b_i) mod 2^32 (deterministic).
const HASH_A = new Uint32Array(NUM_HASHES);
const HASH_B = new Uint32Array(NUM_HASHES);
{
  let s = 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  for (let i = 0; i < NUM_HASHES; i++) {
    HASH_A[i] = next() | 1;
    HASH_B[i] = next();
  }
}

function minhash(set: Set<string>): Uint32Array {
  const sig = new Uint32Array(NUM_HASHES).fill(0xffffffff);
  for (const s of set) {
    const x = fnv1a(s);
    for (let i = 0; i < NUM_HASHES; i++) {
      const h = (Math.imul(HASH_A[i], x) + HASH_B[i]) >>> 0;
      if (h < sig[i]) sig[i] = h;
    }
  }
  return sig;
}

function findNearDuplicates(records: ValidRecord[], threshold: number, skip: Set<number>, issues: Issue[]): { found: number; comparisons: number } {
  const buckets = new Map<string, number[]>();
  const byNormalized = new Map<string, number>();
  const sets: Array<Set<string>> = [];
  let found = 0;
  let comparisons = 0;
  records.forEach((r, idx) => {
    const norm = normalizeText(`${r.prompt}\n${r.completion}`);
    const set = shingles(norm);
    sets.push(set);
    if (skip.has(r.line)) return; // already reported as an exact duplicate
    const sameNorm = byNormalized.get(norm);
    let reported = false;
    if (sameNorm !== undefined) {
      issues.push({
        line: r.line,
        severity: 'warning',
        code: 'near-duplicate',
        message: `near-duplicate of line ${records[sameNorm].line} (same text after normalizing case, punctuation and spacing)`,
      });
      found++;
      reported = true;
    } else {
      byNormalized.set(norm, idx);
    }
    const sig = minhash(set);
    const keys: string[] = [];
    for (let b = 0; b < BANDS; b++) keys.push(`${b}:${Array.from(sig.subarray(b * ROWS, (b + 1) * ROWS)).join(',')}`);
    if (!reported) {
      const seen = new Set<number>();
      let best = -1;
      let bestSim = 0;
      outer: for (const key of keys) {
        for (const j of buckets.get(key) ?? []) {
          if (seen.has(j)) continue;
          seen.add(j);
          const sim = jaccard(set, sets[j]);
          comparisons++;
          if (sim >= threshold && sim > bestSim) {
            best = j;
            bestSim = sim;
          }
          if (seen.size >= MAX_CANDIDATES_PER_RECORD) break outer;
        }
      }
      if (best >= 0) {
        issues.push({
          line: r.line,
          severity: 'warning',
          code: 'near-duplicate',
          message: `near-duplicate of line ${records[best].line} (Jaccard ${bestSim.toFixed(2)} over word 3-grams)`,
        });
        found++;
      }
    }
    for (const key of keys) {
      const list = buckets.get(key);
      if (list) list.push(idx);
      else buckets.set(key, [idx]);
    }
  });
  return { found, comparisons };
}

// ---------------------------------------------------------------------------------------------------------
// Train/validation split
// ---------------------------------------------------------------------------------------------------------
export interface Split {
  train: ValidRecord[];
  validation: ValidRecord[];
  /** Exact duplicates left out so that no record lands in both files. */
  droppedDuplicates: number;
}

/**
 * Deterministic split: each distinct record is ranked by SHA-256 of (seed, prompt, completion), and the
 * round(fraction * n) lowest-ranked go to validation (at least 1 when fraction > 0 and n >= 2). The result
 * depends only on the records' content and the seed, not on their order in the file. Exact duplicates are
 * dropped; train and validation keep the original file order.
 */
export function splitRecords(records: ValidRecord[], fraction: number, seed = 'dataset-check'): Split {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`split fraction must be between 0 and 1, got ${fraction}`);
  const seen = new Set<string>();
  const unique: ValidRecord[] = [];
  for (const r of records) {
    const key = JSON.stringify([r.prompt, r.completion]);
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(r);
  }
  const ranked = unique
    .map((r) => ({
      r,
      h: createHash('sha256')
        .update(JSON.stringify([seed, r.prompt, r.completion]))
        .digest('hex'),
    }))
    .sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0));
  let nVal = Math.round(fraction * unique.length);
  if (nVal === 0 && unique.length >= 2) nVal = 1;
  if (nVal >= unique.length) nVal = unique.length - 1;
  const validationLines = new Set(ranked.slice(0, nVal).map((x) => x.r.line));
  return {
    train: unique.filter((r) => !validationLines.has(r.line)),
    validation: unique.filter((r) => validationLines.has(r.line)),
    droppedDuplicates: records.length - unique.length,
  };
}

/** The records as JSONL, one original line each, with a final newline. */
export function toJsonl(records: ValidRecord[]): string {
  return records.map((r) => `${r.raw}\n`).join('');
}

// ---------------------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------------------
export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(n % 1e9 === 0 ? 0 : 2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n % 1e6 === 0 ? 0 : 2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} bytes`;
}

export function formatSummary(file: string, report: CheckReport, maxIssues = 50): string {
  const o = report.options;
  const out: string[] = [];
  out.push(`dataset-check: ${file}`);
  out.push(
    `  records:    ${report.lines} lines with content, ${report.valid.length} valid, ${report.invalidRecords} invalid${report.blankLines ? `, ${report.blankLines} blank lines` : ''} (limit ${o.maxRecords.toLocaleString('en-US')})`,
  );
  out.push(`  file size:  ${formatBytes(report.bytes)} (limit ${formatBytes(o.maxFileBytes)})`);
  if (report.tokens) {
    const t = report.tokens;
    out.push(
      `  tokens:     prompt + completion per record: min ${t.min}, mean ${t.mean.toFixed(1)}, p95 ${t.p95}, max ${t.max}; limit ${o.maxTokens} (${t.overLimit} over)`,
    );
    out.push(`              ${t.exact ? 'exact' : 'estimated'}: ${t.method}`);
  }
  out.push(
    `  duplicates: ${report.duplicates} exact, ${report.conflictingPrompts} prompts with conflicting completions, ${report.nearDuplicates} near-duplicates (Jaccard >= ${o.nearDuplicateThreshold} over word 3-grams)`,
  );
  out.push(`  result:     ${report.errors} error${report.errors === 1 ? '' : 's'}, ${report.warnings} warning${report.warnings === 1 ? '' : 's'}`);
  const shown = report.issues.slice(0, maxIssues);
  for (const x of shown) out.push(`${x.line > 0 ? `line ${x.line}` : 'file'}: ${x.severity}: ${x.message}`);
  if (report.issues.length > shown.length) out.push(`... and ${report.issues.length - shown.length} more (--max-issues N to show more)`);
  return out.join('\n');
}

/** For a file that is not UTF-8: the line of the first bad byte sequence. */
function firstBadUtf8Line(data: Uint8Array): string {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let start = 0;
  let line = 1;
  for (let i = 0; i <= data.length; i++) {
    if (i === data.length || data[i] === 0x0a) {
      try {
        decoder.decode(data.subarray(start, i));
      } catch {
        return ` (first bad bytes on line ${line})`;
      }
      start = i + 1;
      line++;
    }
  }
  return '';
}
