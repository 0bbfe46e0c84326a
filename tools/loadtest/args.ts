/**
 * Command-line parsing for the load tester. Pure: argv in, options out (or a UsageError).
 */

export interface AdapterMixEntry {
  /** Label used in the report: the adapter name, or "base" for the bare base model. */
  label: string;
  /** What goes into `?adapter=`; null for the base model (no query parameter). */
  adapter: string | null;
  /** Relative weight (> 0). */
  weight: number;
}

export interface LoadTestOptions {
  /** Server base URL, without a trailing slash and without /v1/generate. */
  url: string;
  adapters: AdapterMixEntry[];
  concurrency: number;
  /** Seconds to keep issuing requests. */
  durationS: number;
  /** Stop issuing after this many requests (whichever of duration/requests comes first); null = no cap. */
  maxRequests: number | null;
  stream: boolean;
  promptTokens: { min: number; max: number };
  maxTokens: number;
  /** Sent as the `route` query parameter (auto | local | bedrock) when set. */
  route: string | null;
  /** Sent as `temperature` when set. */
  temperature: number | null;
  ignoreEos: boolean;
  seed: number;
  /** Where report.json, report.html and requests.jsonl go; null = don't write files. */
  outDir: string | null;
  /** Per-request timeout in seconds. */
  timeoutS: number;
  /** Wait up to this many seconds for GET /readyz to answer 200 before starting; 0 = don't check. */
  waitReadyS: number;
  /** After a 429/503 with Retry-After, the worker waits that long (capped by the remaining time). */
  honorRetryAfter: boolean;
  /** Progress lines on stderr. */
  progress: boolean;
  /** Sent as `Authorization: Bearer` to a server with API keys; taken from LOADTEST_API_KEY, never from argv. */
  apiKey: string | null;
  help: boolean;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const USAGE = `Usage: npm run loadtest -- --url URL [options]

Drives POST /v1/generate of a running server and writes a JSON and an HTML report.

  --url URL               server base URL (default http://127.0.0.1:8080)
  --adapters LIST         adapter mix, comma-separated; "base" = no adapter; optional
                          weights: support:2,sales:1,base (default base)
  --concurrency N         concurrent clients, each sends its next request when the
                          previous one finished (closed loop) (default 4)
  --duration S            seconds to issue requests; also 90s, 2m (default 30)
  --requests N            stop after N requests even if time is left
  --stream                use stream: true (server-sent events); time to first token is
                          then measured at the first token event
  --prompt-tokens MIN-MAX approximate prompt length in tokens, uniform in [MIN, MAX];
                          a single number means exactly that (default 32-128)
  --max-tokens N          max_tokens per request (default 64)
  --route R               auto, local or bedrock: sent as ?route= (default: not sent,
                          which the server treats as auto)
  --temperature T         sent as temperature (default: not sent, server default)
  --ignore-eos            send ignore_eos: true (every request generates max_tokens)
  --seed N                seed for prompts and the adapter pick (default 1)
  --out DIR               write report.json, report.html, requests.jsonl to DIR
                          (default loadtest-results/<timestamp>)
  --no-out                don't write files, only print the summary
  --timeout S             per-request timeout in seconds (default 300)
  --wait-ready S          first wait up to S seconds for GET /readyz to return 200
  --ignore-retry-after    don't pause a client after a 429/503 with Retry-After
  --quiet                 no progress lines on stderr
  -h, --help              this text

Environment: LOADTEST_API_KEY, when set, is sent as "Authorization: Bearer <key>" (a server
with API keys, docs/security.md); it is never written to the report.
`;

const DEFAULTS: LoadTestOptions = {
  url: 'http://127.0.0.1:8080',
  adapters: [{ label: 'base', adapter: null, weight: 1 }],
  concurrency: 4,
  durationS: 30,
  maxRequests: null,
  stream: false,
  promptTokens: { min: 32, max: 128 },
  maxTokens: 64,
  route: null,
  temperature: null,
  ignoreEos: false,
  seed: 1,
  outDir: null,
  timeoutS: 300,
  waitReadyS: 0,
  honorRetryAfter: true,
  progress: true,
  apiKey: null,
  help: false,
};

const ADAPTER_NAME = /^[A-Za-z0-9._-]+$/;

export function parseAdapterMix(spec: string): AdapterMixEntry[] {
  const entries: AdapterMixEntry[] = [];
  const seen = new Set<string>();
  for (const raw of spec.split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    const colon = part.lastIndexOf(':');
    const name = colon === -1 ? part : part.slice(0, colon).trim();
    let weight = 1;
    if (colon !== -1) {
      const w = part.slice(colon + 1).trim();
      weight = Number(w);
      if (w === '' || !Number.isFinite(weight) || weight <= 0) {
        throw new UsageError(`--adapters: weight of "${name}" must be a positive number, got "${w}"`);
      }
    }
    if (!ADAPTER_NAME.test(name)) {
      throw new UsageError(`--adapters: "${name}" is not a valid adapter name (letters, digits, ".", "_", "-")`);
    }
    if (seen.has(name)) throw new UsageError(`--adapters: "${name}" is listed twice`);
    seen.add(name);
    entries.push({ label: name, adapter: name === 'base' ? null : name, weight });
  }
  if (entries.length === 0) throw new UsageError('--adapters: give at least one adapter (or "base")');
  return entries;
}

export function parseRange(spec: string, flag: string): { min: number; max: number } {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(spec);
  if (!m) throw new UsageError(`${flag}: expected N or MIN-MAX, got "${spec}"`);
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (min < 1) throw new UsageError(`${flag}: must be at least 1`);
  if (max < min) throw new UsageError(`${flag}: MAX (${max}) is below MIN (${min})`);
  return { min, max };
}

/** "30", "30s", "1.5m", "1h" → seconds. */
export function parseDuration(spec: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(spec);
  if (!m) throw new UsageError(`${flag}: expected seconds (e.g. 30, 90s, 2m), got "${spec}"`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const seconds = unit === 'ms' ? n / 1000 : unit === 's' ? n : unit === 'm' ? n * 60 : n * 3600;
  return seconds;
}

function parseInteger(spec: string, flag: string, min: number): number {
  if (!/^\s*\d+\s*$/.test(spec)) throw new UsageError(`${flag}: expected a whole number, got "${spec}"`);
  const n = Number(spec);
  if (n < min) throw new UsageError(`${flag}: must be at least ${min}, got ${n}`);
  return n;
}

function parseNumber(spec: string, flag: string): number {
  const n = Number(spec);
  if (spec.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag}: expected a number, got "${spec}"`);
  return n;
}

export function normalizeUrl(spec: string): string {
  let u: URL;
  try {
    u = new URL(spec);
  } catch {
    throw new UsageError(`--url: not a URL: "${spec}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new UsageError(`--url: must be http:// or https://, got "${spec}"`);
  }
  if (u.search !== '' || u.hash !== '') throw new UsageError('--url: give the base URL without ?query or #fragment');
  let path = u.pathname.replace(/\/+$/, '');
  // Accept a full endpoint URL too.
  path = path.replace(/\/v1\/generate$/, '');
  return `${u.origin}${path}`;
}

const FLAGS_WITH_VALUE = new Set([
  'url',
  'adapters',
  'concurrency',
  'duration',
  'requests',
  'prompt-tokens',
  'max-tokens',
  'temperature',
  'seed',
  'out',
  'timeout',
  'wait-ready',
  'route',
]);
const BOOLEAN_FLAGS = new Set(['stream', 'ignore-eos', 'no-out', 'ignore-retry-after', 'quiet', 'help']);

/**
 * Parses argv (without node and the script). `now` names the default output directory.
 */
export function parseArgs(argv: readonly string[], now: Date = new Date()): LoadTestOptions {
  const o: LoadTestOptions = { ...DEFAULTS, adapters: [...DEFAULTS.adapters], promptTokens: { ...DEFAULTS.promptTokens } };
  let outGiven = false;
  let noOut = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h') {
      o.help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument "${arg}" (see --help)`);
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq !== -1) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (BOOLEAN_FLAGS.has(name)) {
      if (value !== undefined) throw new UsageError(`--${name} takes no value`);
    } else if (FLAGS_WITH_VALUE.has(name)) {
      if (value === undefined) {
        if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
        value = argv[++i];
      }
    } else {
      throw new UsageError(`unknown option --${name} (see --help)`);
    }
    const flag = `--${name}`;
    const v = value ?? '';
    switch (name) {
      case 'url':
        o.url = normalizeUrl(v);
        break;
      case 'adapters':
        o.adapters = parseAdapterMix(v);
        break;
      case 'concurrency':
        o.concurrency = parseInteger(v, flag, 1);
        break;
      case 'duration':
        o.durationS = parseDuration(v, flag);
        break;
      case 'requests':
        o.maxRequests = parseInteger(v, flag, 1);
        break;
      case 'prompt-tokens':
        o.promptTokens = parseRange(v, flag);
        break;
      case 'max-tokens':
        o.maxTokens = parseInteger(v, flag, 1);
        break;
      case 'temperature': {
        const t = parseNumber(v, flag);
        if (t < 0) throw new UsageError(`${flag}: must not be negative`);
        o.temperature = t;
        break;
      }
      case 'route':
        if (!['auto', 'local', 'bedrock'].includes(v)) throw new UsageError(`${flag}: expected auto, local or bedrock, got "${v}"`);
        o.route = v;
        break;
      case 'seed':
        o.seed = parseInteger(v, flag, 0);
        break;
      case 'out':
        if (v.trim() === '') throw new UsageError(`${flag} needs a directory`);
        o.outDir = v;
        outGiven = true;
        break;
      case 'timeout':
        o.timeoutS = parseDuration(v, flag);
        break;
      case 'wait-ready':
        o.waitReadyS = parseDuration(v, flag);
        break;
      case 'stream':
        o.stream = true;
        break;
      case 'ignore-eos':
        o.ignoreEos = true;
        break;
      case 'no-out':
        noOut = true;
        break;
      case 'ignore-retry-after':
        o.honorRetryAfter = false;
        break;
      case 'quiet':
        o.progress = false;
        break;
      case 'help':
        o.help = true;
        break;
    }
  }
  if (outGiven && noOut) throw new UsageError('--out and --no-out exclude each other');
  if (o.durationS <= 0) throw new UsageError('--duration must be more than 0');
  if (o.timeoutS <= 0) throw new UsageError('--timeout must be more than 0');
  if (!outGiven && !noOut) o.outDir = `loadtest-results/${timestampForPath(now)}`;
  return o;
}

export function timestampForPath(d: Date): string {
  return d
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-');
}
