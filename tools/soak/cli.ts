/**
 * npm run soak [-- --duration S] [--url URL] [options]
 *
 * Without --url it starts the real server (src/server.ts) on a free port with the fixture model and a
 * temporary copy of the fixture adapters (so it can register and remove adapters), and stops it with
 * SIGTERM at the end (its exit status is part of the result). Exit status: 0 when the targets are met
 * (zero lost requests, RSS growth under 10% after warm-up), 1 when not, 2 for bad arguments.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatReport, runSoak, type SoakOptions } from './soak.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURE_MODEL = join(ROOT, 'test', 'fixtures', 'llama-tiny');
const FIXTURE_ADAPTERS = join(ROOT, 'test', 'fixtures', 'adapters');

const USAGE = `Usage: npm run soak -- [options]
  --duration S          how long traffic runs, seconds (default 600)
  --warmup S            RSS is measured from this point on (default 60, at most a third of the duration)
  --concurrency N       closed-loop clients (default 8)
  --abort-rate X        share of streams the client abandons mid-way (default 0.25)
  --invalid-rate X      share of requests that are invalid on purpose (default 0.05)
  --churn-interval S    seconds between adapter registrations/removals (default 5; 0 = none)
  --url URL             use a running server instead of starting one
  --adapters-root DIR   with --url: the server's adapters root, for churn (copies go there)
  --api-key KEY         bearer key for generation (also API_KEY)
  --admin-key KEY       bearer key for the admin API (also ADMIN_KEY)
  --max-batch N         for the server it starts (default 8)
  --report FILE         also write the report as JSON
  --seed N              random seed (default 1)
`;

function parse(argv: string[]): { o: Omit<SoakOptions, 'url' | 'log'> & { url?: string; maxBatch: number; report?: string }; help: boolean } {
  const flags = new Map<string, string>();
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      help = true;
      continue;
    }
    const [name, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = inline ?? argv[++i];
    if (!name.startsWith('--') || value === undefined) throw new Error(`bad argument ${a}`);
    flags.set(name.slice(2), value);
  }
  const known = [
    'duration',
    'warmup',
    'concurrency',
    'abort-rate',
    'invalid-rate',
    'churn-interval',
    'url',
    'adapters-root',
    'api-key',
    'admin-key',
    'max-batch',
    'report',
    'seed',
  ];
  for (const k of flags.keys()) if (!known.includes(k)) throw new Error(`unknown option --${k}`);
  const num = (k: string, d: number, min: number, max: number) => {
    const v = flags.has(k) ? Number(flags.get(k)) : d;
    if (!Number.isFinite(v) || v < min || v > max) throw new Error(`--${k} must be a number from ${min} to ${max}`);
    return v;
  };
  const durationS = num('duration', 600, 1, 7 * 24 * 3600);
  return {
    help,
    o: {
      durationS,
      warmupS: num('warmup', Math.min(60, Math.floor(durationS / 3)), 0, durationS),
      concurrency: Math.round(num('concurrency', 8, 1, 1024)),
      abortRate: num('abort-rate', 0.25, 0, 1),
      invalidRate: num('invalid-rate', 0.05, 0, 1),
      churnIntervalS: num('churn-interval', 5, 0, 3600),
      url: flags.get('url')?.replace(/\/$/, ''),
      adaptersRoot: flags.get('adapters-root'),
      fixtureAdapters: FIXTURE_ADAPTERS,
      baseAdapters: ['base', 'support', 'sales', 'code'],
      apiKey: flags.get('api-key') ?? process.env.API_KEY,
      adminKey: flags.get('admin-key') ?? process.env.ADMIN_KEY,
      sampleIntervalS: 5,
      requestTimeoutMs: 120_000,
      seed: Math.round(num('seed', 1, 0, 2 ** 31)),
      maxBatch: Math.round(num('max-batch', 8, 1, 256)),
      report: flags.get('report'),
    },
  };
}

async function startServer(adaptersRoot: string, cacheDir: string, maxBatch: number): Promise<{ url: string; child: ChildProcess; tail: string[] }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'src', 'server.ts'),
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--model',
      FIXTURE_MODEL,
      '--adapters',
      adaptersRoot,
      '--cache-dir',
      cacheDir,
      '--max-batch',
      String(maxBatch),
      '--max-queue',
      '256',
    ],
    {
      cwd: ROOT,
      env: { ...process.env, API_KEYS_FILE: '', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const tail: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) if (line && !line.includes('"msg":"request"')) tail.push(line);
    if (tail.length > 200) tail.splice(0, tail.length - 200);
  };
  child.stderr!.on('data', keep);
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${tail.join('\n')}`)), 120_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      keep(chunk);
      const m = /listening at (http:\/\/[\d.]+:\d+)/.exec(chunk.toString());
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`the server exited with ${code}:\n${tail.join('\n')}`)));
  });
  for (let i = 0; i < 1200; i++) {
    const res = await fetch(`${url}/readyz`).catch(() => null);
    if (res?.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, child, tail };
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv);
  } catch (e) {
    process.stderr.write(`soak: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const { o } = parsed;
  let server: Awaited<ReturnType<typeof startServer>> | null = null;
  let scratch: string | null = null;
  if (!o.url) {
    scratch = mkdtempSync(join(tmpdir(), 'soak-'));
    const root = join(scratch, 'adapters');
    mkdirSync(root);
    for (const a of ['support', 'sales', 'code']) cpSync(join(FIXTURE_ADAPTERS, a), join(root, a), { recursive: true });
    o.adaptersRoot = root;
    process.stderr.write(`soak: starting the server (fixture model, adapters in ${root}, max batch ${o.maxBatch})\n`);
    server = await startServer(root, join(scratch, 'cache'), o.maxBatch);
  } else if (!o.adaptersRoot && o.churnIntervalS > 0) {
    process.stderr.write('soak: no --adapters-root given with --url: adapter churn is off\n');
    o.churnIntervalS = 0;
  }
  const url = o.url ?? server!.url;
  process.stderr.write(
    `soak: ${o.durationS} s against ${url}, ${o.concurrency} clients, machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}\n`,
  );
  const report = await runSoak({ ...o, url, log: (line) => process.stderr.write(`${line}\n`) });
  let exitCode: number | null = null;
  if (server) {
    const exited = new Promise<number | null>((r) => server!.child.once('exit', (code) => r(code)));
    server.child.kill('SIGTERM');
    exitCode = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 60_000).unref())]);
    if (exitCode === null) server.child.kill('SIGKILL');
  }
  process.stdout.write(formatReport(report));
  if (server) process.stdout.write(`server exit       ${exitCode === null ? 'did not exit within 60 s of SIGTERM' : exitCode}\n`);
  const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? null, node: process.version };
  if (o.report) writeFileSync(resolve(o.report), `${JSON.stringify({ ...report, machine, serverExitCode: exitCode }, null, 2)}\n`);
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  const ok = report.targets.zeroLost && report.targets.rssGrowthUnder10Percent !== false && (server === null || exitCode === 0);
  return ok ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`soak: ${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
}
