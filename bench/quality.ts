/**
 * npm run bench:quality: perplexity of the demo model (and each demo adapter) on held-out text of its own
 * corpus, with the base in float32, int8 and int4 (--quantize). The held-out text is made at run time by the
 * corpus generator with another seed (tools/train/gen_data.py --seed N), minus every record that is also in
 * the training files; the code set has no randomness in its records, so it has no held-out text and is left out.
 *
 * Perplexity = exp(mean negative log-likelihood per token) of the completions given their prompts (the whole
 * text for the base corpus), teacher-forced through the engine's prompt log-probabilities.
 *
 *   npm run bench:quality [-- --records=40 --seed=777 --model=models/demo --adapters=adapters]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadavg } from 'node:os';
import { Engine } from '../src/engine/engine.js';
import type { QuantizeMode } from '../src/engine/model/quantize.js';

const arg = (name: string, fallback: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback;
const RECORDS = Number(arg('records', '40'));
const SEED = Number(arg('seed', '777'));
const MODEL = resolve(arg('model', 'models/demo'));
const ADAPTERS = resolve(arg('adapters', 'adapters'));
const DATA = resolve('tools/train/data');
const OUT = resolve('.cache/quality-heldout', String(SEED));

interface Sample {
  prompt: string;
  text: string;
}

const readJsonl = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, string>);
const asSample = (r: Record<string, string>): Sample => (r.input !== undefined ? { prompt: '', text: r.input } : { prompt: r.prompt, text: r.completion });
const key = (s: Sample) => `${s.prompt}\u0000${s.text}`;

/**
 * Where the training files are: tools/train/data, whose general corpus (~6 MB) is not committed. A fresh clone
 * lacks it, so it is regenerated here the way tools/train/run.sh makes it (gen_data.py's default seed, hash seed
 * 0; ~3 s), after checking that the same run reproduces the committed support and sales files byte for byte.
 */
function trainingData(): string {
  if (existsSync(join(DATA, 'general.jsonl'))) return DATA;
  const dir = resolve('.cache/quality-heldout/training');
  if (!existsSync(join(dir, 'general.jsonl'))) {
    console.log(`${join(DATA, 'general.jsonl')} is not committed; regenerating the training corpus into ${dir}`);
    execFileSync('python3', [join('tools', 'train', 'gen_data.py'), '--out', dir], { stdio: 'inherit', env: { ...process.env, PYTHONHASHSEED: '0' } });
  }
  for (const file of ['support.jsonl', 'sales.jsonl']) {
    if (!readFileSync(join(dir, file)).equals(readFileSync(join(DATA, file))))
      throw new Error(`the regenerated ${file} differs from the committed one: the generator changed, so ${dir} is not the training corpus`);
  }
  return dir;
}

function heldOut(file: string, trainingDir: string): Sample[] {
  const seen = new Set(readJsonl(join(trainingDir, file)).map((r) => key(asSample(r))));
  return readJsonl(join(OUT, file))
    .map(asSample)
    .filter((s) => !seen.has(key(s)))
    .slice(0, RECORDS);
}

async function perplexity(engine: Engine, adapter: string | null, samples: Sample[]): Promise<{ ppl: number; tokens: number }> {
  let nll = 0;
  let tokens = 0;
  for (const s of samples) {
    const promptIds = s.prompt ? engine.tokenizer.encode(s.prompt) : [];
    const allIds = engine.tokenizer.encode(s.prompt + s.text);
    const scored = allIds.length - Math.max(promptIds.length, 1);
    const r = await engine.generate(
      { adapter, promptTokenIds: allIds, maxTokens: 1, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true, logprobs: false },
      { promptLogprobs: true },
    );
    const logprobs = r.scores!.promptLogprobs;
    for (let i = logprobs.length - scored; i < logprobs.length; i++) nll -= logprobs[i];
    tokens += scored;
  }
  return { ppl: Math.exp(nll / tokens), tokens };
}

async function main(): Promise<void> {
  if (!existsSync(join(OUT, 'general.jsonl'))) {
    execFileSync(
      'python3',
      [
        join('tools', 'train', 'gen_data.py'),
        '--seed',
        String(SEED),
        '--support',
        String(RECORDS * 4),
        '--sales',
        String(RECORDS * 4),
        '--general',
        String(RECORDS * 4),
        '--out',
        OUT,
      ],
      { stdio: 'inherit' },
    );
  }
  const training = trainingData();
  const sets: Array<{ name: string; adapter: string | null; samples: Sample[] }> = [
    { name: 'general corpus (base)', adapter: null, samples: heldOut('general.jsonl', training) },
    { name: 'support (adapter support)', adapter: 'support', samples: heldOut('support.jsonl', training) },
    { name: 'sales (adapter sales)', adapter: 'sales', samples: heldOut('sales.jsonl', training) },
  ];
  console.log(
    `held-out records per set: ${sets.map((s) => `${s.name} ${s.samples.length}`).join(', ')}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const rows: Record<string, Record<QuantizeMode, { ppl: number; tokens: number }>> = {};
  const bytes: Partial<Record<QuantizeMode, { format: string; bytes: number }>> = {};
  for (const quantize of ['none', 'int8', 'int4'] as QuantizeMode[]) {
    const engine = await Engine.load({
      modelDir: MODEL,
      adaptersDir: ADAPTERS,
      cacheDir: resolve('.cache/onnx'),
      executionProviders: ['cpu'],
      quantize,
      maxBatch: 8,
      maxBatchTokens: 16384,
      maxQueue: 64,
      adapterSlots: 4,
      maxLoraRank: 64,
      hostCacheBytes: 256 << 20,
      maxSequenceLength: 512,
      prefillChunk: 512,
      requestTimeoutMs: 600_000,
    });
    bytes[quantize] = engine.baseWeights;
    for (const set of sets) {
      rows[set.name] ??= {} as Record<QuantizeMode, { ppl: number; tokens: number }>;
      rows[set.name][quantize] = await perplexity(engine, set.adapter, set.samples);
    }
    await engine.close();
  }
  console.log('\n| text (adapter) | tokens | float32 | int8 | int4 | int8 / float32 | int4 / float32 |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const [name, r] of Object.entries(rows)) {
    const f = r.none.ppl;
    console.log(
      `| ${name} | ${r.none.tokens} | ${f.toFixed(4)} | ${r.int8.ppl.toFixed(4)} | ${r.int4.ppl.toFixed(4)} | ${(r.int8.ppl / f).toFixed(4)} | ${(r.int4.ppl / f).toFixed(4)} |`,
    );
  }
  console.log(
    `\nbase weight bytes in the graph: ${(['none', 'int8', 'int4'] as QuantizeMode[]).map((q) => `${bytes[q]!.format} ${(bytes[q]!.bytes / 2 ** 20).toFixed(2)} MiB`).join(', ')}`,
  );
  console.log(
    `load average after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
}

await main();
