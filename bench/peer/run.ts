/**
 * `npm run bench:peer`: the project's server against llama.cpp on the same random weights, side by side, CPU.
 *
 * Per shape (m100, q05): writes a random F32 checkpoint (HF format) and a rank-16 q/k/v/o adapter, converts the
 * weights to GGUF f32 / f16 / q8_0 (bench/peer/hf2gguf.py), starts the project's real server (`src/server.ts`,
 * a process of its own on a free port, with the checkpoint and its adapters folder) and one llama.cpp server per
 * GGUF kind (bench/peer/llama-http.ts: node-llama-cpp installed at run time into .cache/peer/llamacpp, one
 * context of 8 sequences), then measures all of them over HTTP with the same streaming client, interleaved
 * (A B C D A B C D ...), medians of N rounds after one warm-up round:
 *   batch 1     one 128-token prompt, 64 greedy tokens (ignore_eos), per target in turn; client side:
 *               prefill tok/s = 128 / time to the first token; decode tok/s = 63 / (last token - first token)
 *   concurrent  8 requests at once (8 different 128-token prompts, 64 tokens each):
 *               aggregate tok/s = 8 x 64 / (last response - first send);
 *               decode-phase aggregate = tokens that arrived after all 8 had their first token / that span
 * Beside them: the 2-thread read bandwidth (bench/peer/membw.c), the weights' bytes read per token (every weight
 * once; a tied embedding once, by the LM head) and each figure as a fraction of the weights bound
 * (bandwidth / bytes per token; x8 for 8 concurrent, the weights being read once per step), the load average
 * and the CPU share used by other processes during each measurement, and each server's resident memory.
 * Writes bench-results/peer/<time>.json and .md.
 *
 *   npm run bench:peer                              # both shapes, 5 batch-1 rounds, 3 concurrent rounds
 *   npm run bench:peer -- --quick                   # m100, 32 tokens, 2 + 1 rounds: a smoke run, minutes
 *   npm run bench:peer -- --shapes m100 --rounds 7 --server-args "--max-sequence-length 512" --lora
 */
import { parseArgs } from 'node:util';
import {
  commonOptions,
  ADAPTER_NAME,
  BYTES_PER_WEIGHT,
  CACHE,
  LLAMACPP_VERSION,
  load1,
  quietGate,
  SHAPES,
  medianBaseResident,
  batch1Figures,
  concurrentFigures,
  ensureLlamaCpp,
  fmt,
  ggufLoraOf,
  ggufOf,
  loadavg,
  log,
  machine,
  makeModel,
  measured,
  median,
  procStatus,
  promptMaker,
  readBandwidth,
  servedGraphPath,
  splitArgs,
  stamp,
  startLlama,
  startOurs,
  streamGenerate,
  weightBytesPerToken,
  writeReport,
  type Conditions,
  type ServerProcess,
  type Shape,
  type StreamResult,
  type WeightKind,
} from './lib.js';
import { MODE_FORMAT } from '../../src/engine/model/quantize.js';

const { values: a } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'm100,q05' },
    kinds: { type: 'string', default: 'f32,f16,q8_0,q4_0' },
    quantize: { type: 'string', default: 'int8,int4' },
    rounds: { type: 'string' },
    'conc-rounds': { type: 'string' },
    'resident-rounds': { type: 'string' },
    conc: { type: 'string', default: '8' },
    prompt: { type: 'string', default: '128' },
    tokens: { type: 'string' },
    lora: { type: 'boolean', default: false },
    'llama-ctx': { type: 'string', default: '2048' },
    threads: { type: 'string', default: '2' },
    'bandwidth-gbs': { type: 'string' },
    'bandwidth-mib': { type: 'string' },
    ...commonOptions('peer'),
  },
});
if (a.help) {
  process.stdout.write(`npm run bench:peer -- [flags]
  --shapes m100,q05        shapes to run (m100: hidden 768, 12 layers; q05: hidden 896, 24 layers, vocab 151936)
  --kinds f32,f16,q8_0,q4_0  llama.cpp weight kinds beside ours (f32)
  --quantize int8,int4     also our server with --quantize X for each (empty: none), compared with q8_0 / q4_0
  --rounds N               batch-1 rounds after the warm-up (default 5; --quick 2)
  --conc-rounds N          concurrent rounds after the warm-up (default 3; --quick 1)
  --conc N                 concurrent requests (default 8)
  --resident-rounds N      fresh processes measuring each base's resident memory, interleaved; the median is kept (default 3; --quick 1)
  --prompt N / --tokens N  prompt and generated tokens (default 128 / 64; --quick 32 tokens)
  --server-args "..."      extra flags for our server, e.g. "--max-sequence-length 512"
  --lora                   also batch-1 with the rank-16 q/k/v/o adapter (ours and llama.cpp f32)
  --llama-ctx N            llama.cpp context size, shared by its 8 sequences (default 2048)
  --threads N              llama.cpp threads and bandwidth-probe threads (default 2)
  --bandwidth-gbs X        use X GB/s for the weights bound instead of the higher of the measured 2-thread medians
  --quiet-pct P            before each measurement wait until other processes use < P % of the cores (default 15)
  --quiet-wait-s S         ... for at most S seconds (default 120; --quick 4; 0 = never wait)
  --out DIR                report folder (default bench-results/peer)
  --quick                  smoke run: m100 only, 32 tokens, 2 + 1 rounds, short waits
`);
  process.exit(0);
}

const QUICK = a.quick;
const shapeNames = (QUICK && !process.argv.some((x) => x === '--shapes' || x.startsWith('--shapes=')) ? 'm100' : a.shapes!)
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
for (const s of shapeNames) if (!SHAPES[s]) throw new Error(`unknown shape ${s} (known: ${Object.keys(SHAPES).join(', ')})`);
const kinds = a.kinds!.split(',').map((s) => s.trim()) as WeightKind[];
for (const k of kinds) if (!['f32', 'f16', 'q8_0', 'q4_0'].includes(k)) throw new Error(`unknown kind ${k}`);
const quantizeModes = a
  .quantize!.split(',')
  .map((s) => s.trim())
  .filter(Boolean) as Array<'int8' | 'int4'>;
for (const q of quantizeModes) if (q !== 'int8' && q !== 'int4') throw new Error(`unknown --quantize ${q}`);
const ROUNDS = Number(a.rounds ?? (QUICK ? 2 : 5));
const CROUNDS = Number(a['conc-rounds'] ?? (QUICK ? 1 : 3));
const CONC = Number(a.conc);
const RESIDENT_ROUNDS = Number(a['resident-rounds'] ?? (QUICK ? 1 : 3));
if (!(Number.isInteger(RESIDENT_ROUNDS) && RESIDENT_ROUNDS >= 1)) throw new Error(`--resident-rounds ${a['resident-rounds']}: a whole number from 1`);
const PROMPT = Number(a.prompt);
const TOKENS = Number(a.tokens ?? (QUICK ? 32 : 64));
const THREADS = Number(a.threads);
const gate = { pct: Number(a['quiet-pct']), maxWaitS: Number(a['quiet-wait-s'] ?? (QUICK ? 4 : 120)) };
const serverArgs = splitArgs(a['server-args']);

const startedAt = new Date().toISOString();
const mach = machine();
log(`machine: ${mach.cpu}, ${mach.cores} cores, ${mach.memGiB} GiB; ${mach.uptime}`);

ensureLlamaCpp();

// Read bandwidth, 2 threads: one stream per thread and 8 interleaved streams per thread (closer to a
// matrix-vector product reading several weight rows at once).
const bwMib = Number(a['bandwidth-mib'] ?? 1024);
// The probe keeps both cores busy, so the other processes' share is taken in the quiet gate's 2 s just before it.
const bandwidth: Array<ReturnType<typeof readBandwidth> & { load1: number; foreignPctBefore: number }> = [];
for (const streams of [1, 8]) {
  const g = await quietGate(gate.pct, Math.max(gate.maxWaitS, 0.1));
  const l = load1();
  const value = readBandwidth(THREADS, streams, bwMib, QUICK ? 5 : 10);
  bandwidth.push({ ...value, load1: l, foreignPctBefore: g.foreignPct });
  log(`bandwidth: ${value.line}; load ${l}, other processes ${g.foreignPct.toFixed(0)} % of the cores just before`);
}
// Other processes can only lower a measured rate: the bound uses the higher of the two medians.
const boundGBs = a['bandwidth-gbs'] ? Number(a['bandwidth-gbs']) : Math.max(...bandwidth.map((b) => b.medianGBs));

interface Target {
  name: string;
  server: ServerProcess;
  kind: WeightKind;
  adapter?: string;
  conc: boolean;
}

interface Batch1Sample {
  round: number;
  conditions: Conditions;
  ttftMs: number;
  prefillTokPerS: number;
  decodeTokPerS: number;
  e2eTokPerS: number;
}
interface ConcSample {
  round: number;
  conditions: Conditions;
  ok: number;
  wallMs: number;
  aggregateTokPerS: number;
  decodePhaseTokPerS: number;
  decodePhaseTokens: number;
  decodePhaseMs: number;
  allFirstTokenMs: number;
  meanTtftMs: number;
}

const report: any = {
  benchmark: 'bench:peer',
  startedAt,
  machine: mach,
  quick: QUICK,
  llamaCpp: `node-llama-cpp@${LLAMACPP_VERSION}`,
  settings: {
    shapes: shapeNames,
    kinds,
    quantize: quantizeModes,
    rounds: ROUNDS,
    concRounds: CROUNDS,
    residentRounds: RESIDENT_ROUNDS,
    conc: CONC,
    prompt: PROMPT,
    tokens: TOKENS,
    threads: THREADS,
    serverArgs,
    lora: a.lora,
    llamaCtx: Number(a['llama-ctx']),
    gate,
  },
  bandwidth,
  boundGBs,
  shapes: {},
};
const md: string[] = [];
md.push(`# bench:peer ${QUICK ? '(--quick smoke run) ' : ''}${startedAt}`);
md.push('');
md.push(
  `Machine: ${mach.cpu}, ${mach.cores} cores, ${mach.memGiB} GiB, Node ${mach.node}; at start: \`${mach.uptime}\`. llama.cpp: node-llama-cpp@${LLAMACPP_VERSION}, ${THREADS} threads.`,
);
md.push(
  `Read bandwidth (${THREADS} threads, ${bwMib} MiB): ${bandwidth.map((b) => `${b.streams} stream(s)/thread median ${fmt(b.medianGBs, 2)} GB/s (best ${fmt(b.bestGBs, 2)}; load1 ${b.load1}, other processes ${fmt(b.foreignPctBefore, 0)} % of the cores just before)`).join('; ')}. Bound uses **${fmt(boundGBs, 2)} GB/s**${a['bandwidth-gbs'] ? ' (--bandwidth-gbs)' : ' (the higher median)'}.`,
);
md.push(
  `Workload: ${PROMPT}-token random prompts, ${TOKENS} greedy tokens (ignore_eos), streaming, timed by the client; ${ROUNDS} batch-1 and ${CROUNDS} concurrent (${CONC} at once) interleaved round(s) after one warm-up, medians. Our server: \`src/server.ts\` ${serverArgs.length ? '`' + serverArgs.join(' ') + '`' : '(defaults)'}, F32.`,
);
md.push('');

for (const shapeName of shapeNames) {
  const shape: Shape = SHAPES[shapeName];
  log(`== ${shapeName}`);
  const model = makeModel(shape);
  const ggufs = Object.fromEntries(kinds.map((k) => [k, ggufOf(model, shapeName, k)])) as Record<WeightKind, string>;
  const loraGguf = a.lora ? ggufLoraOf(model, shapeName) : undefined;
  const bytes = Object.fromEntries((Object.keys(BYTES_PER_WEIGHT) as WeightKind[]).map((k) => [k, weightBytesPerToken(shape, k)])) as Record<
    WeightKind,
    number
  >;

  const servers: ServerProcess[] = [];
  const targets: Target[] = [];
  try {
    const ours = await startOurs(`ours-${shapeName}`, model, serverArgs);
    servers.push(ours);
    targets.push({ name: 'ours-f32', server: ours, kind: 'f32', conc: true });
    if (a.lora) targets.push({ name: 'ours-f32+lora16', server: ours, kind: 'f32', adapter: ADAPTER_NAME, conc: false });
    for (const q of quantizeModes) {
      const s = await startOurs(`ours-${shapeName}-${q}`, model, [...serverArgs, '--quantize', q]);
      servers.push(s);
      targets.push({ name: `ours-${q}`, server: s, kind: q, conc: true });
    }
    for (const k of kinds) {
      const lora = a.lora && k === 'f32' ? loraGguf : undefined;
      const s = await startLlama(`llama-${shapeName}-${k}`, ggufs[k], { lora, ctx: Number(a['llama-ctx']), sequences: CONC, threads: THREADS });
      servers.push(s);
      targets.push({ name: `llama-${k}`, server: s, kind: k, conc: true });
      if (lora) targets.push({ name: `llama-${k}+lora16`, server: s, kind: k, adapter: 'lora', conc: false });
    }
    const llamaInfo = Object.fromEntries(
      await Promise.all(servers.filter((s) => s.name.startsWith('llama')).map(async (s) => [s.name, await (await fetch(s.url + '/info')).json()])),
    );
    const rssAfterLoad = Object.fromEntries(servers.map((s) => [s.name, procStatus(s.pid)]));
    // Our servers' base weights as /readyz reports them (format and bytes in the graph).
    const oursWeights = Object.fromEntries(
      await Promise.all(
        targets
          .filter((t) => t.name.startsWith('ours-') && !t.adapter)
          .map(async (t) => {
            const r = (await (await fetch(t.server.url + '/readyz')).json()) as { weight_format: string; base_weight_bytes: number };
            return [t.name, { format: r.weight_format, bytes: r.base_weight_bytes }];
          }),
      ),
    ) as Record<string, { format: string; bytes: number }>;
    // The host memory each of our bases takes, measured in fresh processes on the graph that server serves.
    const oursResident = medianBaseResident(
      Object.fromEntries(Object.keys(oursWeights).map((name) => [name, servedGraphPath(targets.find((t) => t.name === name)!.server)])),
      THREADS,
      RESIDENT_ROUNDS,
    );
    log(
      `servers ready; base resident MiB (with code pages), median of ${RESIDENT_ROUNDS} (min-max) ${Object.entries(oursResident)
        .map(
          ([n, b]) =>
            `${n} ${fmt(b.baseBytes / 2 ** 20, 0)} (${fmt(b.residentBytes / 2 ** 20, 0)}; ${fmt(b.baseBytesRange[0] / 2 ** 20, 1)}-${fmt(b.baseBytesRange[1] / 2 ** 20, 1)}; second session ${fmt(b.secondSessionBaseBytes / 2 ** 20, 0)})`,
        )
        .join(', ')}; load ${loadavg()}`,
    );

    const prompt = promptMaker(1, shape.vocab, PROMPT);
    const b1: Record<string, Batch1Sample[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
    const firstTokens: Record<string, number[]> = {};
    const errors: string[] = [];
    for (let r = 0; r <= ROUNDS; r++) {
      const p = prompt();
      for (const t of targets) {
        try {
          const { value, conditions } = await measured([t.server.pid], gate, () => streamGenerate(t.server.url, p, TOKENS, t.adapter));
          if (r === 1 || (ROUNDS === 0 && r === 0)) firstTokens[t.name] = value.tokens.slice(0, 16);
          if (r > 0) b1[t.name].push({ round: r, conditions, ...batch1Figures(value, PROMPT) });
        } catch (e) {
          errors.push(`batch1 round ${r} ${t.name}: ${(e as Error).message}`);
          log(`ERROR ${errors.at(-1)}`);
        }
      }
      log(
        `${shapeName} batch-1 round ${r}${r === 0 ? ' (warm-up)' : ''} done; load ${loadavg()}; ${targets.map((t) => `${t.name} ${fmt(b1[t.name].at(-1)?.decodeTokPerS ?? NaN)}`).join(', ')} tok/s`,
      );
    }
    const conc: Record<string, ConcSample[]> = Object.fromEntries(targets.filter((t) => t.conc).map((t) => [t.name, []]));
    for (let r = 0; r <= CROUNDS; r++) {
      const ps = Array.from({ length: CONC }, prompt);
      for (const t of targets.filter((x) => x.conc)) {
        const { value: settled, conditions } = await measured([t.server.pid], gate, () =>
          Promise.allSettled(ps.map((p) => streamGenerate(t.server.url, p, TOKENS, t.adapter))),
        );
        const ok = settled.filter((x): x is PromiseFulfilledResult<StreamResult> => x.status === 'fulfilled').map((x) => x.value);
        for (const x of settled)
          if (x.status === 'rejected') {
            errors.push(`concurrent round ${r} ${t.name}: ${(x.reason as Error).message}`);
            log(`ERROR ${errors.at(-1)}`);
          }
        if (r > 0 && ok.length === CONC) conc[t.name].push({ round: r, conditions, ok: ok.length, ...concurrentFigures(ok) });
      }
      log(
        `${shapeName} concurrent round ${r}${r === 0 ? ' (warm-up)' : ''} done; load ${loadavg()}; ${Object.entries(conc)
          .map(([n, xs]) => `${n} ${fmt(xs.at(-1)?.aggregateTokPerS ?? NaN)}`)
          .join(', ')} tok/s`,
      );
    }
    const rssAfter = Object.fromEntries(servers.map((s) => [s.name, procStatus(s.pid)]));

    // ------------------------------------------------------------------ summary of this shape
    const bound1 = (k: WeightKind) => (boundGBs * 1e9) / bytes[k];
    const ref = firstTokens['ours-f32'];
    const summary = {
      batch1: Object.fromEntries(
        targets.map((t) => {
          const xs = b1[t.name];
          const decode = median(xs.map((x) => x.decodeTokPerS));
          return [
            t.name,
            {
              n: xs.length,
              prefillTokPerS: median(xs.map((x) => x.prefillTokPerS)),
              decodeTokPerS: decode,
              e2eTokPerS: median(xs.map((x) => x.e2eTokPerS)),
              ttftMs: median(xs.map((x) => x.ttftMs)),
              boundTokPerS: bound1(t.kind),
              fractionOfBound: decode / bound1(t.kind),
              load1: xs.map((x) => x.conditions.load1Before),
              foreignPct: xs.map((x) => x.conditions.foreignPct),
              gateWaitS: xs.map((x) => x.conditions.gateWaitS),
            },
          ];
        }),
      ),
      concurrent: Object.fromEntries(
        targets
          .filter((t) => t.conc)
          .map((t) => {
            const xs = conc[t.name];
            const agg = median(xs.map((x) => x.aggregateTokPerS));
            const dp = median(xs.map((x) => x.decodePhaseTokPerS));
            const bound = CONC * bound1(t.kind);
            return [
              t.name,
              {
                n: xs.length,
                aggregateTokPerS: agg,
                decodePhaseTokPerS: dp,
                wallMs: median(xs.map((x) => x.wallMs)),
                meanTtftMs: median(xs.map((x) => x.meanTtftMs)),
                boundTokPerS: bound,
                aggregateFraction: agg / bound,
                decodePhaseFraction: dp / bound,
                load1: xs.map((x) => x.conditions.load1Before),
                foreignPct: xs.map((x) => x.conditions.foreignPct),
                gateWaitS: xs.map((x) => x.conditions.gateWaitS),
              },
            ];
          }),
      ),
    };
    report.shapes[shapeName] = {
      shape,
      params: model.params,
      bytesPerToken: bytes,
      llamaInfo,
      oursWeights,
      oursResident,
      rssAfterLoad,
      rssAfter,
      firstTokens,
      errors,
      summary,
      batch1: b1,
      concurrent: conc,
      logs: Object.fromEntries(servers.map((s) => [s.name, s.logFile])),
    };

    const loadRange = (xs: number[]) => (xs.length ? `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}` : '-');
    const foreign = (xs: number[]) => (xs.length ? `${fmt(median(xs), 0)} (${fmt(Math.max(...xs), 0)})` : '-');
    md.push(
      `## ${shapeName}: hidden ${shape.hidden}, intermediate ${shape.intermediate}, ${shape.layers} layers, ${shape.heads} heads / ${shape.kvHeads} KV heads, vocab ${shape.vocab}, tied embeddings; ${(model.params / 1e6).toFixed(1)}M parameters`,
    );
    md.push('');
    const usedKinds = [...new Set(targets.map((t) => t.kind))];
    md.push(
      `Weights read per token: ${usedKinds.map((k) => `${k} ${(bytes[k] / 1e6).toFixed(1)} MB`).join(', ')}; weights bound at ${fmt(boundGBs, 2)} GB/s: ${usedKinds.map((k) => `${k} ${fmt(bound1(k))}`).join(', ')} tok/s (x${CONC} for ${CONC} concurrent). Ours int8/int4: MatMulNBits with float32 scales (int4 with zero points), accuracy level 4, projections and LM head in blocks of ${MODE_FORMAT.int8.blockSize}, the embeddings' gather in blocks of ${MODE_FORMAT.int8.embeddingBlockSize} (int8) / ${MODE_FORMAT.int4.embeddingBlockSize} (int4) unless --server-args set --quantize-block-size; llama.cpp q8_0/q4_0: blocks of 32 with f16 scales (bench/peer/hf2gguf.py, every matrix including the tied embedding).`,
    );
    md.push('');
    md.push(`Batch 1 (prefill = ${PROMPT} / time to first token; decode = ${TOKENS - 1} / (last token - first token); client side, medians of ${ROUNDS}):`);
    md.push('');
    md.push(
      "| target | prefill tok/s | decode tok/s | weights bound tok/s | decode / bound | e2e tok/s | load1 (min-max) | other processes' CPU % median (max) | first 16 tokens = ours-f32 |",
    );
    md.push('| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |');
    for (const t of targets) {
      const s = summary.batch1[t.name];
      const ft = firstTokens[t.name];
      const agree = ref && ft ? `${ft.filter((x, i) => x === ref[i]).length}/${ref.length}` : '-';
      md.push(
        `| ${t.name} | ${fmt(s.prefillTokPerS, 0)} | ${fmt(s.decodeTokPerS, 2)} | ${fmt(s.boundTokPerS)} | ${fmt(s.fractionOfBound, 3)} | ${fmt(s.e2eTokPerS, 2)} | ${loadRange(s.load1)} | ${foreign(s.foreignPct)} | ${t.adapter ? '(adapter)' : agree} |`,
      );
    }
    md.push('');
    md.push(
      `${CONC} concurrent (aggregate = ${CONC} x ${TOKENS} / (last response - first send); decode-phase = tokens after all ${CONC} had their first token / time from then to the last token; medians of ${CROUNDS}):`,
    );
    md.push('');
    md.push(
      `| target | aggregate tok/s | decode-phase tok/s | weights bound x${CONC} tok/s | aggregate / bound | decode-phase / bound | mean TTFT ms | load1 (min-max) | other processes' CPU % median (max) |`,
    );
    md.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |');
    for (const t of targets.filter((x) => x.conc)) {
      const s = summary.concurrent[t.name];
      md.push(
        `| ${t.name} | ${fmt(s.aggregateTokPerS, 2)} | ${fmt(s.decodePhaseTokPerS, 2)} | ${fmt(s.boundTokPerS)} | ${fmt(s.aggregateFraction, 3)} | ${fmt(s.decodePhaseFraction, 3)} | ${fmt(s.meanTtftMs, 0)} | ${loadRange(s.load1)} | ${foreign(s.foreignPct)} |`,
      );
    }
    md.push('');
    const pairs = (
      [
        ['int8', 'q8_0'],
        ['int4', 'q4_0'],
      ] as const
    ).filter(([o, l]) => summary.batch1[`ours-${o}`] && summary.batch1[`llama-${l}`]);
    if (pairs.length) {
      md.push(
        `Quantized base, ours against llama.cpp at equal bits (ratios of the medians above; resident = process RSS after load; base resident = host memory the base took, measured as the RSS growth of a fresh process creating a session on the served graph (median of ${RESIDENT_ROUNDS} such processes per graph, interleaved), less the pages of the onnxruntime library code that creating it touched, plus the pages of the graph files it maps but has not read yet, as if every embedding row had been used (bench/peer/session-resident.ts; in brackets: the raw growth at creation); second session = the same for a second session on the graph in that process, which onnxruntime's own start no longer adds to (median of the same processes); base weights = bytes in our graph from /readyz):`,
      );
      md.push('');
      md.push(
        '| ours | llama.cpp | batch-1 decode ours / llama | 8 concurrent aggregate ours / llama | 8 concurrent decode phase ours / llama (prefill left out) | ours resident MiB | llama resident MiB | ours resident / ours-f32 | ours base resident MiB | ours base resident / ours-f32 | second session MiB | second session / ours-f32 | ours base weight bytes / ours-f32 |',
      );
      md.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
      for (const [o, l] of pairs) {
        const on = `ours-${o}`;
        const ln = `llama-${l}`;
        const ls = servers.find((s) => s.name === `llama-${shapeName}-${l}`)!;
        const os = targets.find((t) => t.name === on)!.server;
        md.push(
          `| ${on} (${oursWeights[on].format}) | ${ln} | ${fmt(summary.batch1[on].decodeTokPerS / summary.batch1[ln].decodeTokPerS, 2)} | ${fmt(summary.concurrent[on].aggregateTokPerS / summary.concurrent[ln].aggregateTokPerS, 2)} | ${fmt(summary.concurrent[on].decodePhaseTokPerS / summary.concurrent[ln].decodePhaseTokPerS, 2)} | ${fmt(rssAfterLoad[os.name].rssMiB, 0)} | ${fmt(rssAfterLoad[ls.name].rssMiB, 0)} | ${fmt(rssAfterLoad[os.name].rssMiB / rssAfterLoad[ours.name].rssMiB, 3)} | ${fmt(oursResident[on].baseBytes / 2 ** 20, 0)} (${fmt(oursResident[on].residentBytes / 2 ** 20, 0)}) | ${fmt(oursResident[on].baseBytes / oursResident['ours-f32'].baseBytes, 3)} (${fmt(oursResident[on].residentBytes / oursResident['ours-f32'].residentBytes, 3)}) | ${fmt(oursResident[on].secondSessionBaseBytes / 2 ** 20, 0)} | ${fmt(oursResident[on].secondSessionBaseBytes / oursResident['ours-f32'].secondSessionBaseBytes, 3)} | ${fmt(oursWeights[on].bytes / oursWeights['ours-f32'].bytes, 3)} |`,
        );
      }
      md.push('');
    }
    md.push(
      'Resident memory (MiB): ' +
        servers
          .map(
            (s) =>
              `${s.name} ${fmt(rssAfterLoad[s.name].rssMiB, 0)} after load, ${fmt(rssAfter[s.name].rssMiB, 0)} after the runs (peak ${fmt(rssAfter[s.name].hwmMiB, 0)})`,
          )
          .join('; ') +
        '.',
    );
    if (errors.length) {
      md.push('');
      md.push(`Errors (${errors.length}; failed requests are left out of the figures):`);
      for (const e of errors) md.push(`- ${e.slice(0, 300)}`);
    }
    md.push('');
  } finally {
    for (const s of servers) await s.stop();
  }
}

report.finishedAt = new Date().toISOString();
report.loadAtEnd = loadavg();
md.push(`Finished ${report.finishedAt}; load average at the end ${report.loadAtEnd}. Server logs and models: ${CACHE}.`);
const text = md.join('\n');
const files = writeReport(a.out!, `${stamp()}${QUICK ? '-quick' : ''}`, report, text);
console.log(text);
log(`wrote ${files.json} and ${files.md}`);
