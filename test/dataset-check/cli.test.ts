/** `npm run dataset:check -- FILE.jsonl`: the CLI run as a child process (node --import tsx). */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { childEnv } from '../helpers/child-env.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'tools', 'dataset-check', 'cli.ts');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, env: childEnv() }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'dataset-check-'));
const rec = (prompt: string, completion: string): string => JSON.stringify({ prompt, completion });
const good = join(dir, 'good.jsonl');
writeFileSync(
  good,
  Array.from({ length: 30 }, (_, i) => `${rec(`Question ${i}: what is ${i} times ${i + 3} in a long sentence ${i * 11}?`, `It is ${i * (i + 3)}.`)}\n`).join(
    '',
  ),
);
const bad = join(dir, 'bad.jsonl');
writeFileSync(
  bad,
  [rec('fine prompt', 'fine completion'), '{"prompt": "broken",', JSON.stringify({ prompt: 'no completion' }), rec('fine prompt', 'fine completion'), ''].join(
    '\n',
  ),
);

t.test('a good file: summary, exit 0', async (t) => {
  const r = await run([good]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /dataset-check: .*good\.jsonl/);
  t.match(r.stdout, /30 lines with content, 30 valid, 0 invalid/);
  t.match(r.stdout, /0 errors, 0 warnings/);
});

t.test('a bad file: line numbers, exit 1', async (t) => {
  const r = await run([bad]);
  t.equal(r.code, 1);
  t.match(r.stdout, /line 2: error: invalid JSON/);
  t.match(r.stdout, /line 3: error: missing "completion"/);
  t.match(r.stdout, /line 4: warning: exact duplicate of line 1/);
  t.match(r.stdout, /2 errors, 1 warning/);
});

t.test('--tokenizer gives exact counts; --max-tokens flags long records', async (t) => {
  const r = await run([good, '--tokenizer', join(ROOT, 'test', 'fixtures', 'llama-tiny', 'tokenizer.json'), '--max-tokens', '12']);
  t.equal(r.code, 1);
  t.match(r.stdout, /exact: with .*tokenizer\.json/);
  t.match(r.stdout, /line \d+: error: \d+ tokens \(prompt \+ completion\), over the limit of 12/);
});

t.test('--split writes train and validation files deterministically', async (t) => {
  const out = join(dir, 'split');
  const r1 = await run([good, '--split', '0.2', '--out-dir', out]);
  t.equal(r1.code, 0, r1.stderr);
  t.match(r1.stdout, /split: train 24 records -> .*good\.train\.jsonl .*; validation 6 records -> .*good\.validation\.jsonl/);
  t.same(readdirSync(out).sort(), ['good.train.jsonl', 'good.validation.jsonl']);
  const first = readFileSync(join(out, 'good.validation.jsonl'), 'utf8');
  t.equal(first.trim().split('\n').length, 6);
  await run([good, '--split', '0.2', '--out-dir', out]);
  t.equal(readFileSync(join(out, 'good.validation.jsonl'), 'utf8'), first, 'same files on a second run');
  const r2 = await run([bad, '--split', '0.2', '--out-dir', join(dir, 'nosplit')]);
  t.equal(r2.code, 1);
  t.match(r2.stdout, /split: not written, fix the errors first/);
});

t.test('--json prints the report as JSON', async (t) => {
  const r = await run([bad, '--json']);
  t.equal(r.code, 1);
  const report = JSON.parse(r.stdout);
  t.equal(report.errors, 2);
  t.equal(report.validRecords, 2);
  t.same(
    report.issues.map((x: { line: number }) => x.line),
    [2, 3, 4],
  );
});

t.test('usage errors exit 2', async (t) => {
  const none = await run([]);
  t.equal(none.code, 2);
  t.match(none.stderr, /no input file/);
  t.equal((await run([good, '--split', '1.5'])).code, 2);
  t.equal((await run([good, '--max-tokens', 'many'])).code, 2);
  t.equal((await run([good, '--bogus'])).code, 2);
  const missing = await run([join(dir, 'missing.jsonl')]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /cannot read/);
  const help = await run(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /usage: npm run dataset:check -- FILE\.jsonl/);
});
