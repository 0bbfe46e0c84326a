/**
 * npm run loadtest -- --url URL --adapters support:2,sales:1,base --concurrency 8 --duration 60 [--stream]
 *
 * Exit status: 0 when at least one request succeeded, 1 when none did (or the server never got
 * ready with --wait-ready), 2 for bad arguments.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs, USAGE, UsageError, type LoadTestOptions } from './args.js';
import { renderHtml } from './report-html.js';
import { buildReport, formatSummary, type LoadTestReport } from './report.js';
import { formatProgress, runLoadTest, waitReady, type RunResult } from './run.js';

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const defaultIo: CliIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
};

export interface WrittenFiles {
  json: string;
  html: string;
  requests: string;
}

export async function writeReportFiles(dir: string, report: LoadTestReport, run: RunResult): Promise<WrittenFiles> {
  await mkdir(dir, { recursive: true });
  const files = { json: join(dir, 'report.json'), html: join(dir, 'report.html'), requests: join(dir, 'requests.jsonl') };
  await writeFile(files.json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(files.html, renderHtml(report));
  await writeFile(files.requests, run.outcomes.map((x) => JSON.stringify(x)).join('\n') + (run.outcomes.length ? '\n' : ''));
  return files;
}

export async function main(argv: readonly string[], io: CliIo = defaultIo, signal?: AbortSignal): Promise<number> {
  let o: LoadTestOptions;
  try {
    o = { ...parseArgs(argv), apiKey: process.env.LOADTEST_API_KEY || null };
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`loadtest: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (o.help) {
    io.stdout(USAGE);
    return 0;
  }
  if (o.waitReadyS > 0) {
    io.stderr(`waiting up to ${o.waitReadyS} s for ${o.url}/readyz\n`);
    if (!(await waitReady(o.url, o.waitReadyS, signal))) {
      io.stderr(`loadtest: ${o.url}/readyz did not answer 200 within ${o.waitReadyS} s\n`);
      return 1;
    }
  }
  const mix = o.adapters.map((a) => (a.weight === 1 ? a.label : `${a.label}:${a.weight}`)).join(',');
  io.stderr(
    `loadtest: ${o.url} adapters ${mix} concurrency ${o.concurrency} duration ${o.durationS} s` +
      `${o.maxRequests !== null ? ` requests ${o.maxRequests}` : ''} ${o.stream ? 'streaming' : 'non-streaming'}` +
      ` prompt ~${o.promptTokens.min}-${o.promptTokens.max} tokens max_tokens ${o.maxTokens}\n`,
  );
  const run = await runLoadTest(o, {
    signal,
    onProgress: o.progress ? (p) => io.stderr(`${formatProgress(p)}\n`) : undefined,
  });
  const report = buildReport(o, run);
  io.stdout(`${formatSummary(report)}\n`);
  if (o.outDir !== null) {
    const files = await writeReportFiles(o.outDir, report, run);
    io.stdout(`report: ${resolve(files.html)}\njson:   ${resolve(files.json)}\n`);
  }
  if (report.overall.ok === 0) {
    io.stderr('loadtest: no request succeeded\n');
    return 1;
  }
  return 0;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (invokedDirectly) {
  const ac = new AbortController();
  process.once('SIGINT', () => {
    process.stderr.write('\nloadtest: interrupted, stopping and writing the report (Ctrl-C again to quit at once)\n');
    ac.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  main(process.argv.slice(2), defaultIo, ac.signal).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`loadtest: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
