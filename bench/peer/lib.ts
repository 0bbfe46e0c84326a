/**
 * Shared pieces of the peer, context and burst benchmarks (`npm run bench:peer`, `bench:context`, `bench:burst`):
 * random checkpoints of the two benchmark shapes, the GGUF conversion, the llama.cpp install, starting and
 * stopping server processes, a streaming /v1/generate client that timestamps every token, CPU accounting of
 * other processes, the read-bandwidth probe and small statistics.
 *
 * Everything these benchmarks write lives under `.cache/peer/` (models, GGUF files, the llama.cpp install, the
 * ONNX graphs, server logs) and `bench-results/` (the reports), both ignored by git. llama.cpp is installed
 * into a folder of its own at run time: it is a peer to measure against, never a dependency of the product.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeRandomAdapter, writeRandomModel, writeWordTokenizer, type RandomModelShape } from '../random-checkpoint.js';
import { MODE_FORMAT } from '../../src/engine/model/quantize.js';

export const PEER_DIR = dirname(fileURLToPath(import.meta.url));
export const PROJECT_ROOT = resolve(PEER_DIR, '..', '..');
export const CACHE = join(PROJECT_ROOT, '.cache', 'peer');
export const RESULTS = join(PROJECT_ROOT, 'bench-results');

/** The flags every benchmark here takes: extra server flags, the quiet gate, where reports go, smoke run, help. */
export function commonOptions(results: string) {
  return {
    'server-args': { type: 'string', default: '' },
    'quiet-pct': { type: 'string', default: '15' },
    'quiet-wait-s': { type: 'string' },
    out: { type: 'string', default: join(RESULTS, results) },
    quick: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  } as const;
}
export const LLAMACPP_VERSION = '3.21.1';
export const LLAMACPP_DIR = process.env.LLAMACPP_DIR ?? join(CACHE, 'llamacpp');

export interface Shape extends RandomModelShape {
  name: string;
  tied: boolean;
}

/** The two benchmark shapes. random-checkpoint.ts always ties the embedding to the LM head. */
export const SHAPES: Record<string, Shape> = {
  m100: { name: 'm100', hidden: 768, intermediate: 2048, layers: 12, heads: 12, kvHeads: 4, vocab: 32000, maxPositions: 2048, tied: true },
  q05: { name: 'q05', hidden: 896, intermediate: 4864, layers: 24, heads: 14, kvHeads: 2, vocab: 151936, maxPositions: 2048, tied: true },
};

/** llama.cpp's GGUF kinds, and ours: f32, or `int8`/`int4` (--quantize: MatMulNBits, quantize.ts MODE_FORMAT's blocks, float32 scales, int4 with a zero point per block). */
export type WeightKind = 'f32' | 'f16' | 'q8_0' | 'q4_0' | 'int8' | 'int4';
const quantizedBytes = (bits: 4 | 8, zeroPoints: boolean, block: number) => bits / 8 + 4 / block + (zeroPoints ? 0.5 / block : 0);
/** Bytes per weight of each kind, scales and zero points included: the projections' and the LM head's (ours: the same blocks; a decode step reads only a few embedding rows). */
export const BYTES_PER_WEIGHT: Record<WeightKind, { projections: number; head: number }> = {
  f32: { projections: 4, head: 4 },
  f16: { projections: 2, head: 2 },
  q8_0: { projections: 34 / 32, head: 34 / 32 },
  q4_0: { projections: 18 / 32, head: 18 / 32 },
  int8: { projections: quantizedBytes(8, false, MODE_FORMAT.int8.blockSize), head: quantizedBytes(8, false, MODE_FORMAT.int8.blockSize) },
  int4: { projections: quantizedBytes(4, true, MODE_FORMAT.int4.blockSize), head: quantizedBytes(4, true, MODE_FORMAT.int4.blockSize) },
};
export const ADAPTER_NAME = 'r16qkvo';

// ---------------------------------------------------------------------------------------------------- logging

export function log(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------------- models

export interface ModelFiles {
  hf: string;
  adapters: string;
  adapter: string;
  params: number;
}

/**
 * Writes (once) a random F32 checkpoint of the shape in HF format, a word-level tokenizer and a rank-16 PEFT
 * adapter on q/k/v/o in its own adapters folder. Every tensor holds its own random values: a checkpoint tiled
 * from one random block (quicker to write; the folder `hf` of earlier runs) has only six distinct tensors, and
 * onnxruntime then held the float32 base in 0.5x its bytes of memory, which made every memory ratio against
 * float32 wrong.
 */
export function makeModel(shape: Shape, tag = shape.name): ModelFiles {
  const base = join(CACHE, 'models', tag);
  const hf = join(base, 'hf-random');
  const adapters = join(base, 'adapters');
  const adapter = join(adapters, ADAPTER_NAME);
  mkdirSync(hf, { recursive: true });
  const t0 = Date.now();
  const fresh = !existsSync(join(hf, 'model.safetensors'));
  const params = writeRandomModel(hf, shape);
  if (!existsSync(join(hf, 'tokenizer.json'))) writeWordTokenizer(hf, shape.vocab);
  if (!existsSync(join(adapter, 'adapter_model.safetensors'))) writeRandomAdapter(adapter, shape, 16, ['q_proj', 'k_proj', 'v_proj', 'o_proj']);
  if (fresh) log(`${tag}: wrote ${(params / 1e6).toFixed(1)}M random parameters in ${Date.now() - t0} ms -> ${hf}`);
  return { hf, adapters, adapter, params };
}

function newerThan(target: string, source: string): boolean {
  return existsSync(target) && statSync(target).mtimeMs >= statSync(source).mtimeMs;
}

/** Converts the checkpoint to GGUF (bench/peer/hf2gguf.py, python3 + numpy) unless an up-to-date file exists. */
export function ggufOf(model: ModelFiles, tag: string, kind: WeightKind): string {
  const out = join(CACHE, 'gguf', `${tag}-${kind}.gguf`);
  if (newerThan(out, join(model.hf, 'model.safetensors'))) return out;
  mkdirSync(dirname(out), { recursive: true });
  runChecked('python3', [join(PEER_DIR, 'hf2gguf.py'), 'model', model.hf, out + '.tmp', kind]);
  runChecked('mv', [out + '.tmp', out]);
  return out;
}

/** The rank-16 adapter as a GGUF LoRA (q/k rows of B permuted like the base weights). */
export function ggufLoraOf(model: ModelFiles, tag: string): string {
  const out = join(CACHE, 'gguf', `${tag}-lora-${ADAPTER_NAME}.gguf`);
  if (newerThan(out, join(model.adapter, 'adapter_model.safetensors'))) return out;
  mkdirSync(dirname(out), { recursive: true });
  runChecked('python3', [join(PEER_DIR, 'hf2gguf.py'), 'lora', model.hf, model.adapter, out + '.tmp']);
  runChecked('mv', [out + '.tmp', out]);
  return out;
}

function runChecked(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; quiet?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, cwd: options.cwd, env: options.env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout || String(r.error)).slice(-2000)}`);
  if (r.stdout.trim() && !options.quiet) log(r.stdout.trim());
  return r.stdout;
}

/**
 * Bytes of weights read to produce one token: every weight once (a tied embedding once, as the LM head; an
 * untied one is counted as its LM head only, the embedding lookup reads one row). Norms stay F32 in every kind.
 */
export function weightBytesPerToken(shape: Shape, kind: WeightKind): number {
  const headDim = shape.hidden / shape.heads;
  const q = shape.hidden * shape.heads * headDim;
  const kv = 2 * shape.hidden * shape.kvHeads * headDim;
  const o = shape.heads * headDim * shape.hidden;
  const mlp = 3 * shape.hidden * shape.intermediate;
  const norms = (2 * shape.layers + 1) * shape.hidden;
  const { projections, head } = BYTES_PER_WEIGHT[kind];
  return shape.layers * (q + kv + o + mlp) * projections + shape.vocab * shape.hidden * head + norms * 4;
}

// ---------------------------------------------------------------------------------------------------- llama.cpp

/** Installs node-llama-cpp (pinned) into its own folder, never into the project's dependencies. */
export function ensureLlamaCpp(): void {
  const pkg = join(LLAMACPP_DIR, 'node_modules', 'node-llama-cpp', 'package.json');
  if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).version === LLAMACPP_VERSION) return;
  mkdirSync(LLAMACPP_DIR, { recursive: true });
  if (!existsSync(join(LLAMACPP_DIR, 'package.json')))
    writeFileSync(join(LLAMACPP_DIR, 'package.json'), JSON.stringify({ name: 'peer-llamacpp', private: true, type: 'module' }));
  log(`installing node-llama-cpp@${LLAMACPP_VERSION} into ${LLAMACPP_DIR} (once; a few minutes)`);
  runChecked('npm', ['i', '-E', '--no-audit', '--no-fund', `node-llama-cpp@${LLAMACPP_VERSION}`], { cwd: LLAMACPP_DIR });
}

// ---------------------------------------------------------------------------------------------------- processes

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

export interface ServerProcess {
  name: string;
  url: string;
  pid: number;
  logFile: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

const running = new Set<ServerProcess>();
let cleanupInstalled = false;
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  const killAll = () => {
    for (const s of running) {
      try {
        s.child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => {
      killAll();
      process.exit(130);
    });
}

function startProcess(name: string, args: string[], env: NodeJS.ProcessEnv, port: number): ServerProcess {
  installCleanup();
  const logDir = join(CACHE, 'logs');
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
  const out = createWriteStream(logFile);
  const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  const server: ServerProcess = {
    name,
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    logFile,
    child,
    async stop() {
      running.delete(server);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  running.add(server);
  return server;
}

async function waitReady(server: ServerProcess, path: string, ready: (status: number, body: any) => boolean | 'failed', timeoutS: number): Promise<void> {
  const deadline = Date.now() + timeoutS * 1000;
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null) throw new Error(`${server.name} exited with ${server.child.exitCode}; log ${server.logFile}:\n${tail(server.logFile)}`);
    try {
      const res = await fetch(server.url + path, { signal: AbortSignal.timeout(2000) });
      const body = await res.json().catch(() => null);
      const r = ready(res.status, body);
      if (r === 'failed') throw new Error(`${server.name} failed to load: ${JSON.stringify(body)}; log ${server.logFile}`);
      if (r) return;
    } catch (e) {
      if (String(e).includes('failed to load')) throw e;
    }
    await sleep(500);
  }
  throw new Error(`${server.name} not ready after ${timeoutS} s; log ${server.logFile}:\n${tail(server.logFile)}`);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}

/** Splits a flag string the way a shell would for simple cases: whitespace, with '...' and "..." quoting. */
export function splitArgs(s: string | undefined): string[] {
  if (!s) return [];
  const out: string[] = [];
  for (const m of s.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

/** The project's real server (`src/server.ts`) on a free port, with the checkpoint and its adapters folder. */
export async function startOurs(name: string, model: { hf: string; adapters: string }, extraArgs: string[] = [], timeoutS = 900): Promise<ServerProcess> {
  const port = await freePort();
  const args = [
    '--import',
    'tsx',
    'src/server.ts',
    '--model',
    model.hf,
    '--adapters',
    model.adapters,
    '--port',
    String(port),
    '--cache-dir',
    join(CACHE, 'onnx'),
    ...extraArgs,
  ];
  const s = startProcess(name, args, {}, port);
  log(`${name}: pid ${s.pid}, ${s.url}, node ${args.slice(2).join(' ')} (log ${s.logFile})`);
  await waitReady(s, '/readyz', (status, body) => status === 200 || (body?.status === 'failed' ? 'failed' : false), timeoutS);
  return s;
}

/** The graph a server of ours serves, from its start log ("built ONNX graph" / "reused cached ONNX graph"). */
export function servedGraphPath(s: ServerProcess): string {
  const line = readFileSync(s.logFile, 'utf8')
    .split('\n')
    .find((l) => l.includes('ONNX graph') && l.includes('"path"'));
  const path = line ? (JSON.parse(line) as { path?: string }).path : undefined;
  if (!path) throw new Error(`${s.name}: no ONNX graph path in its log ${s.logFile}`);
  return path;
}

/**
 * Host bytes the base's weights take: the resident growth of a fresh process while onnxruntime creates a session
 * on the served graph (bench/peer/session-resident.ts; a fresh process, as a running server reuses freed memory);
 * `baseBytes` leaves out the pages of onnxruntime's code that the session first touches (`codeBytes`) and counts
 * the graph's mapped pages not read yet (`mappedUnreadBytes`: embedding rows no token has used) as resident.
 * `secondSessionBaseBytes` is the same for a second session on the graph in that process: without onnxruntime's
 * own start, which the first session pays.
 */
export function baseResidentBytes(onnxPath: string, threads: number): ResidentBytes {
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(PEER_DIR, 'session-resident.ts'), onnxPath, String(threads)], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').at(-1)!) as ResidentBytes;
}

export interface ResidentBytes {
  residentBytes: number;
  codeBytes: number;
  mappedUnreadBytes: number;
  baseBytes: number;
  secondSessionBaseBytes: number;
}

/**
 * baseResidentBytes of each graph, `rounds` fresh processes each, interleaved (A B C A B C ...): the measurement
 * with the median `baseBytes` per graph, and the spread. One process alone varies by a few MiB with where the
 * allocator happens to leave freed memory (m100 int8: 142.8-148.4 MiB in three).
 */
export function medianBaseResident(
  graphs: Record<string, string>,
  threads: number,
  rounds: number,
): Record<string, ResidentBytes & { baseBytesRange: [number, number] }> {
  const runs = new Map<string, ResidentBytes[]>(Object.keys(graphs).map((name) => [name, []]));
  for (let r = 0; r < rounds; r++) for (const [name, path] of Object.entries(graphs)) runs.get(name)!.push(baseResidentBytes(path, threads));
  return Object.fromEntries(
    [...runs].map(([name, rs]) => {
      const sorted = [...rs].sort((a, b) => a.baseBytes - b.baseBytes);
      const measured = { ...sorted[Math.floor((sorted.length - 1) / 2)], secondSessionBaseBytes: median(rs.map((r) => r.secondSessionBaseBytes)) };
      return [name, { ...measured, baseBytesRange: [sorted[0].baseBytes, sorted.at(-1)!.baseBytes] as [number, number] }];
    }),
  );
}

/** llama.cpp (node-llama-cpp) behind the same /v1/generate shape: bench/peer/llama-http.ts. */
export async function startLlama(
  name: string,
  gguf: string,
  options: { lora?: string; ctx?: number; sequences?: number; threads?: number } = {},
  timeoutS = 300,
): Promise<ServerProcess> {
  const port = await freePort();
  const args = [
    '--import',
    'tsx',
    join(PEER_DIR, 'llama-http.ts'),
    '--model',
    gguf,
    '--port',
    String(port),
    '--ctx',
    String(options.ctx ?? 2048),
    '--sequences',
    String(options.sequences ?? 8),
    '--threads',
    String(options.threads ?? availableParallelism()),
  ];
  if (options.lora) args.push('--lora', options.lora);
  const s = startProcess(name, args, { LLAMACPP_DIR }, port);
  log(`${name}: pid ${s.pid}, ${s.url}, ${gguf}${options.lora ? ' + ' + options.lora : ''}`);
  await waitReady(s, '/info', (status) => status === 200, timeoutS);
  return s;
}

// ---------------------------------------------------------------------------------------------------- memory

export function procStatus(pid: number): { rssMiB: number; hwmMiB: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
    return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
  } catch {
    return { rssMiB: NaN, hwmMiB: NaN };
  }
}

// ---------------------------------------------------------------------------------------------------- CPU

export const CORES = availableParallelism();
const HZ = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

function cpuBusy(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]; // user nice system irq softirq steal
}

function procJiffies(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

export interface CpuSnap {
  t: number;
  busy: number;
  own: number;
}

/** A snapshot of the machine's busy time and of the processes under test (the servers + this client). */
export function cpuSnap(pids: number[] = []): CpuSnap {
  return { t: performance.now(), busy: cpuBusy(), own: [process.pid, ...pids].reduce((s, p) => s + procJiffies(p), 0) };
}

/** Share of all cores (%) used by processes other than the ones in the snapshots, between two snapshots. */
export function foreignPct(a: CpuSnap, b: CpuSnap): number {
  const secs = (b.t - a.t) / 1000;
  if (secs <= 0) return 0;
  return Math.max(0, ((b.busy - a.busy - (b.own - a.own)) / HZ / secs / CORES) * 100);
}

export function load1(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

export function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/**
 * Waits until other processes use less than `pct` % of the cores over a 2 s window, at most `maxWaitS`
 * (0 = no wait). Returns how long it waited and the last window's foreign share.
 */
export async function quietGate(pct: number, maxWaitS: number, pids: number[] = []): Promise<{ waitedS: number; foreignPct: number }> {
  if (maxWaitS <= 0) return { waitedS: 0, foreignPct: NaN };
  const t0 = performance.now();
  for (;;) {
    const a = cpuSnap(pids);
    await sleep(2000);
    const f = foreignPct(a, cpuSnap(pids));
    const waitedS = (performance.now() - t0) / 1000;
    if (f < pct || waitedS >= maxWaitS) return { waitedS, foreignPct: f };
  }
}

/** What a measurement ran beside: load average before/after and other processes' CPU share during it. */
export interface Conditions {
  load1Before: number;
  load1After: number;
  foreignPct: number;
  gateWaitS: number;
}

export async function measured<T>(
  pids: number[],
  gate: { pct: number; maxWaitS: number },
  fn: () => Promise<T>,
): Promise<{ value: T; conditions: Conditions }> {
  const g = await quietGate(gate.pct, gate.maxWaitS, pids);
  const load1Before = load1();
  const a = cpuSnap(pids);
  const value = await fn();
  const foreign = foreignPct(a, cpuSnap(pids));
  return { value, conditions: { load1Before, load1After: load1(), foreignPct: foreign, gateWaitS: g.waitedS } };
}

// ---------------------------------------------------------------------------------------------------- client

export interface StreamResult {
  /** performance.now() when the request was sent, and of each streamed token's arrival. */
  sentAt: number;
  tokenTimes: number[];
  tokens: number[];
  endAt: number;
}

/**
 * POST /v1/generate with stream: true, greedy, EOS ignored; timestamps every SSE event that carries a token.
 * Works against the project's server and against bench/peer/llama-http.ts (same event shape).
 */
export async function streamGenerate(url: string, promptIds: number[], maxTokens: number, adapter?: string, timeoutMs = 900_000): Promise<StreamResult> {
  const sentAt = performance.now();
  const res = await fetch(`${url}/v1/generate${adapter ? `?adapter=${encodeURIComponent(adapter)}` : ''}`, {
    method: 'POST',
    signal: AbortSignal.timeout(timeoutMs),
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt_token_ids: promptIds, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true }),
  });
  if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`);
  const tokenTimes: number[] = [];
  const tokens: number[] = [];
  const decoder = new TextDecoder();
  let buf = '';
  let error: string | null = null;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    const now = performance.now();
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const isError = /^event: error$/m.test(event);
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      if (!data || data === '[DONE]') continue;
      const j = JSON.parse(data);
      if (isError || j.error) error = JSON.stringify(j).slice(0, 300);
      else if (typeof j.token_id === 'number') {
        tokens.push(j.token_id);
        tokenTimes.push(now);
      }
    }
  }
  const endAt = performance.now();
  if (error) throw new Error(`${url}: ${error}`);
  if (tokens.length !== maxTokens) throw new Error(`${url}: ${tokens.length} tokens streamed, ${maxTokens} asked`);
  return { sentAt, tokenTimes, tokens, endAt };
}

/** Random prompt token ids in [259, vocab) (above the GGUF's special and byte tokens), from a seeded LCG. */
export function promptMaker(seed: number, vocab: number, length: number): () => number[] {
  let s = seed >>> 0;
  const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return () => Array.from({ length }, () => 259 + Math.floor(rnd() * (vocab - 259)));
}

/** Figures of one batch-1 request: client-side, from the streamed token times. */
export function batch1Figures(r: StreamResult, promptLength: number) {
  const first = r.tokenTimes[0];
  const last = r.tokenTimes[r.tokenTimes.length - 1];
  return {
    ttftMs: first - r.sentAt,
    prefillTokPerS: promptLength / ((first - r.sentAt) / 1000),
    decodeTokPerS: r.tokens.length > 1 ? (r.tokens.length - 1) / ((last - first) / 1000) : NaN,
    e2eTokPerS: r.tokens.length / ((r.endAt - r.sentAt) / 1000),
  };
}

/**
 * Figures of N concurrent requests sent at once:
 *   aggregate = all tokens / (last response end - first send);
 *   decode-phase aggregate = tokens that arrived after every request had its first token, divided by the time
 *   from that moment to the last token (prefill of the later requests is left out).
 */
export function concurrentFigures(rs: StreamResult[]) {
  const firstSend = Math.min(...rs.map((r) => r.sentAt));
  const lastEnd = Math.max(...rs.map((r) => r.endAt));
  const allFirst = Math.max(...rs.map((r) => r.tokenTimes[0]));
  const lastToken = Math.max(...rs.map((r) => r.tokenTimes[r.tokenTimes.length - 1]));
  const tokens = rs.reduce((s, r) => s + r.tokens.length, 0);
  const after = rs.reduce((s, r) => s + r.tokenTimes.filter((t) => t > allFirst).length, 0);
  return {
    wallMs: lastEnd - firstSend,
    aggregateTokPerS: tokens / ((lastEnd - firstSend) / 1000),
    decodePhaseTokPerS: lastToken > allFirst ? after / ((lastToken - allFirst) / 1000) : NaN,
    decodePhaseTokens: after,
    decodePhaseMs: lastToken - allFirst,
    allFirstTokenMs: allFirst - firstSend,
    meanTtftMs: rs.reduce((s, r) => s + (r.tokenTimes[0] - r.sentAt), 0) / rs.length,
  };
}

// ---------------------------------------------------------------------------------------------------- metrics

/** Parses Prometheus text into `name{labels}` -> value. */
export async function scrapeMetrics(url: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^(\S+?)(\{.*\})?\s+(\S+)$/.exec(line);
      if (m) out.set(m[1] + (m[2] ?? ''), Number(m[3]));
    }
  } catch {
    /* no metrics */
  }
  return out;
}

/** Sum over label sets of a metric's samples (e.g. every adapter's `_sum`). */
export function metricTotal(m: Map<string, number>, name: string): number {
  let s = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(name + '{')) s += v;
  return s;
}

/**
 * Mean of every histogram whose name contains "step" (a step-time metric, if the server exposes one) and of
 * the inter-token latency histogram, between two scrapes: { metric name: mean seconds }.
 */
export function histogramMeans(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const names = new Set<string>();
  for (const k of after.keys()) {
    const base = k.replace(/\{.*$/, '');
    if (base.endsWith('_sum') && (/step/.test(base) || base === 'lora_inter_token_latency_seconds_sum')) names.add(base.slice(0, -4));
  }
  const out: Record<string, number> = {};
  for (const n of names) {
    const count = metricTotal(after, n + '_count') - metricTotal(before, n + '_count');
    const sum = metricTotal(after, n + '_sum') - metricTotal(before, n + '_sum');
    if (count > 0) out[n] = sum / count;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------- bandwidth

export interface Bandwidth {
  threads: number;
  streams: number;
  mib: number;
  bestGBs: number;
  medianGBs: number;
  line: string;
}

/**
 * Read bandwidth with `threads` threads: bench/peer/membw.c (compiled here with cc -fopenmp), summing a
 * float array of `mib` MiB, `streams` interleaved streams per thread (1 = one sequential stream; 8 is closer
 * to how a matrix-vector product reads several weight rows at once).
 */
export function readBandwidth(threads: number, streams: number, mib = 1024, reps = 10): Bandwidth {
  const bin = join(CACHE, 'membw');
  const src = join(PEER_DIR, 'membw.c');
  if (!newerThan(bin, src)) {
    mkdirSync(CACHE, { recursive: true });
    runChecked('cc', ['-O3', '-march=native', '-ffast-math', '-fopenmp', src, '-o', bin]);
  }
  const line = runChecked(bin, [String(mib), String(threads), String(streams), String(reps)], { quiet: true }).trim();
  const num = (k: string) => Number(new RegExp(`${k} ([\\d.]+) GB/s`).exec(line)?.[1] ?? NaN);
  return { threads, streams, mib, bestGBs: num('best'), medianGBs: num('median'), line };
}

// ---------------------------------------------------------------------------------------------------- stats

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = s.length;
  if (!n) return NaN;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export function range(xs: number[], digits = 2): string {
  const f = xs.filter((x) => Number.isFinite(x));
  if (!f.length) return '-';
  return `${Math.min(...f).toFixed(digits)}-${Math.max(...f).toFixed(digits)}`;
}

export function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function machine() {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: CORES,
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    uptime: spawnSync('uptime', { encoding: 'utf8' }).stdout.trim(),
  };
}

/** The end every report shares: the errors seen (each cut to 300 characters), then when it finished and the load. */
export function reportEnding(md: string[], errors: string[]): void {
  if (errors.length) {
    md.push('');
    md.push(`Errors (${errors.length}):`);
    for (const e of errors) md.push(`- ${e.slice(0, 300)}`);
  }
  md.push('');
  md.push(`Finished ${new Date().toISOString()}; load average at the end ${loadavg()}.`);
}

export function writeReport(dir: string, stem: string, json: unknown, markdown: string): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const j = join(dir, `${stem}.json`);
  const m = join(dir, `${stem}.md`);
  writeFileSync(j, JSON.stringify(json, null, 2));
  writeFileSync(m, markdown.endsWith('\n') ? markdown : markdown + '\n');
  return { json: j, md: m };
}

export function stamp(): string {
  return new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
}
