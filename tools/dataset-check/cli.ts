/**
 * npm run dataset:check -- FILE.jsonl [options]
 *
 * Validates a prompt/completion JSONL file for model customization and prints a summary; every bad line is
 * reported with its line number. Exit status: 0 when there are no errors (warnings allowed), 1 when there
 * are errors, 2 for a usage problem.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { checkDataset, defaultOptions, formatBytes, formatSummary, splitRecords, toJsonl, type TokenCounter } from './check.js';
import { BEDROCK_LIMITS, BEDROCK_LIMITS_SOURCE } from './limits.js';
import { loadTokenCounter } from './tokenizer.js';

const HELP = `usage: npm run dataset:check -- FILE.jsonl [options]

Checks a JSONL file of {"prompt": ..., "completion": ...} records (Amazon Bedrock model customization
format): valid JSON on every line, required string fields, empty records, exact and near-duplicates,
tokens per record against a context limit, and the record-count and file-size limits.

options:
  --max-tokens N          max prompt + completion tokens per record (default ${BEDROCK_LIMITS.maxTokensPerRecord})
  --max-chars N           max characters per record (default: max-tokens x ${BEDROCK_LIMITS.charsPerToken})
  --tokenizer PATH        tokenizer.json (or a model directory) for exact token counts;
                          without it tokens are estimated as ceil(characters / 4)
  --max-records N         max records (default ${BEDROCK_LIMITS.maxRecords}; see tools/dataset-check/limits.ts)
  --validation            the file is a validation set (file-size limit ${formatBytes(BEDROCK_LIMITS.maxValidationFileBytes)} instead of ${formatBytes(BEDROCK_LIMITS.maxTrainingFileBytes)})
  --max-file-bytes N      override the file-size limit
  --near-dup-threshold X  Jaccard similarity over word 3-grams that counts as a near-duplicate (default 0.9)
  --split F               also write FILE.train.jsonl and FILE.validation.jsonl with a fraction F (0 < F < 1)
                          of the distinct records in validation, chosen deterministically (SHA-256 of the
                          record and --seed); only when the file has no errors
  --seed S                seed for --split (default "dataset-check")
  --out-dir DIR           where --split writes (default: next to FILE)
  --max-issues N          issues to print (default 50)
  --json                  print the report as JSON instead of text
  -h, --help              this help

Limits: ${BEDROCK_LIMITS_SOURCE}`;

function fail(message: string): never {
  process.stderr.write(`dataset-check: ${message}\n\n${HELP}\n`);
  process.exit(2);
}

function numberOption(value: string | undefined, name: string, { integer = true, min = 1 } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min)
    fail(`--${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

function main(): number {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        'max-tokens': { type: 'string' },
        'max-chars': { type: 'string' },
        tokenizer: { type: 'string' },
        'max-records': { type: 'string' },
        validation: { type: 'boolean' },
        'max-file-bytes': { type: 'string' },
        'near-dup-threshold': { type: 'string' },
        split: { type: 'string' },
        seed: { type: 'string' },
        'out-dir': { type: 'string' },
        'max-issues': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    fail((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length !== 1) fail(positionals.length === 0 ? 'no input file' : `expected one input file, got ${positionals.length}`);
  const file = positionals[0];

  const maxTokens = numberOption(values['max-tokens'], 'max-tokens') ?? BEDROCK_LIMITS.maxTokensPerRecord;
  const threshold = numberOption(values['near-dup-threshold'], 'near-dup-threshold', { integer: false, min: 0 });
  if (threshold !== undefined && !(threshold > 0 && threshold <= 1)) fail('--near-dup-threshold must be in (0, 1]');
  const split = numberOption(values.split, 'split', { integer: false, min: 0 });
  if (split !== undefined && !(split > 0 && split < 1)) fail('--split must be between 0 and 1 (exclusive), e.g. 0.1');
  const maxIssues = numberOption(values['max-issues'], 'max-issues', { min: 0 }) ?? 50;

  let tokenCounter: TokenCounter | undefined;
  if (values.tokenizer) {
    try {
      tokenCounter = loadTokenCounter(values.tokenizer);
    } catch (err) {
      fail(`cannot load tokenizer: ${(err as Error).message}`);
    }
  }
  const options = defaultOptions({
    maxTokens,
    maxChars: numberOption(values['max-chars'], 'max-chars') ?? maxTokens * BEDROCK_LIMITS.charsPerToken,
    maxRecords: numberOption(values['max-records'], 'max-records') ?? BEDROCK_LIMITS.maxRecords,
    maxFileBytes:
      numberOption(values['max-file-bytes'], 'max-file-bytes') ??
      (values.validation ? BEDROCK_LIMITS.maxValidationFileBytes : BEDROCK_LIMITS.maxTrainingFileBytes),
    ...(threshold !== undefined ? { nearDuplicateThreshold: threshold } : {}),
    ...(tokenCounter ? { tokenCounter } : {}),
  });

  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    process.stderr.write(`dataset-check: cannot read ${file}: ${(err as NodeJS.ErrnoException).message}\n`);
    return 2;
  }
  const report = checkDataset(data, options);

  const written: Array<{ kind: string; path: string; records: number; bytes: number; limit: number }> = [];
  let splitNote = '';
  if (split !== undefined) {
    if (report.errors > 0) {
      splitNote = 'split: not written, fix the errors first';
    } else {
      const s = splitRecords(report.valid, split, values.seed ?? 'dataset-check');
      const outDir = values['out-dir'] ?? dirname(file);
      mkdirSync(outDir, { recursive: true });
      const stem = basename(file, extname(file));
      for (const [kind, records, limit] of [
        ['train', s.train, BEDROCK_LIMITS.maxTrainingFileBytes],
        ['validation', s.validation, BEDROCK_LIMITS.maxValidationFileBytes],
      ] as const) {
        const path = join(outDir, `${stem}.${kind}.jsonl`);
        const body = toJsonl(records);
        writeFileSync(path, body);
        written.push({ kind, path, records: records.length, bytes: Buffer.byteLength(body), limit });
      }
      splitNote = `split: ${written.map((w) => `${w.kind} ${w.records} records -> ${w.path} (${formatBytes(w.bytes)}${w.bytes > w.limit ? `, OVER the ${formatBytes(w.limit)} limit` : ''})`).join('; ')}${s.droppedDuplicates ? `; ${s.droppedDuplicates} exact duplicates left out` : ''}`;
    }
  }

  if (values.json) {
    const { valid, options: o, ...rest } = report;
    const json = {
      file,
      ...rest,
      validRecords: valid.length,
      options: { ...o, tokenCounter: o.tokenCounter.description },
      ...(split !== undefined ? { split: written.length ? written : null } : {}),
    };
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatSummary(file, report, maxIssues)}\n`);
    if (splitNote) process.stdout.write(`${splitNote}\n`);
  }
  const splitOver = written.some((w) => w.bytes > w.limit);
  return report.errors > 0 || splitOver ? 1 : 0;
}

process.exitCode = main();
