/**
 * `npm run bench:context`: does the server's speed and memory depend on the context it is configured for?
 * The same random m100 checkpoint (max_position_embeddings 16384) served by two real `src/server.ts` processes,
 * one with `--max-sequence-length 512` and one with `16384` (everything else equal), and the same 8 concurrent
 * 128-token prompts x 64 greedy tokens (streaming, ignore_eos) sent to each in turn, interleaved, medians of N
 * rounds after a warm-up. Per server: aggregate tok/s (8 x 64 / (last response - first send)), decode-phase
 * aggregate (tokens after all 8 had their first token / that span), mean step time when /metrics exposes a
 * histogram named *step* (else the mean inter-token latency, lora_inter_token_latency_seconds, as a proxy),
 * and resident memory (VmRSS after each round, VmHWM at the end, from /proc/PID/status). Ratios 16384 / 512;
 * targets: aggregate tok/s within 1.15x, resident memory within 10%.
 *
 *   npm run bench:context                 # 5 rounds
 *   npm run bench:context -- --quick      # 32 tokens, 1 round after the warm-up: a smoke run
 *   npm run bench:context -- --lengths 512,16384 --server-args "--max-batch 8"
 */
import { parseArgs } from 'node:util';
import {
  commonOptions,
  SHAPES,
  concurrentFigures,
  fmt,
  histogramMeans,
  loadavg,
  log,
  machine,
  makeModel,
  measured,
  median,
  procStatus,
  promptMaker,
  reportEnding,
  scrapeMetrics,
  splitArgs,
  stamp,
  startOurs,
  streamGenerate,
  writeReport,
  type Conditions,
  type ServerProcess,
} from './lib.js';

const { values: a } = parseArgs({
  options: {
    lengths: { type: 'string', default: '512,16384' },
    rounds: { type: 'string' },
    conc: { type: 'string', default: '8' },
    prompt: { type: 'string', default: '128' },
    tokens: { type: 'string' },
    ...commonOptions('context'),
  },
});
if (a.help) {
  process.stdout.write(`npm run bench:context -- [--lengths 512,16384] [--rounds 5] [--conc 8] [--prompt 128] [--tokens 64]
  [--server-args "..."] [--quiet-pct 15] [--quiet-wait-s 120] [--out DIR] [--quick]\n`);
  process.exit(0);
}
const QUICK = a.quick;
const lengths = a.lengths!.split(',').map(Number);
if (lengths.length !== 2 || lengths.some((x) => !Number.isInteger(x) || x < 256)) throw new Error('--lengths: two integers, e.g. 512,16384');
const ROUNDS = Number(a.rounds ?? (QUICK ? 1 : 5));
const CONC = Number(a.conc);
const PROMPT = Number(a.prompt);
const TOKENS = Number(a.tokens ?? (QUICK ? 32 : 64));
const gate = { pct: Number(a['quiet-pct']), maxWaitS: Number(a['quiet-wait-s'] ?? (QUICK ? 4 : 120)) };
const serverArgs = splitArgs(a['server-args']);
const maxPositions = Math.max(...lengths);

const mach = machine();
const startedAt = new Date().toISOString();
log(`machine: ${mach.cpu}, ${mach.cores} cores, ${mach.memGiB} GiB; ${mach.uptime}`);
const shape = { ...SHAPES.m100, maxPositions };
const tag = `m100-ctx${maxPositions}`;
const model = makeModel(shape, tag);

interface Sample {
  round: number;
  conditions: Conditions;
  aggregateTokPerS: number;
  decodePhaseTokPerS: number;
  wallMs: number;
  meanTtftMs: number;
  metricMeansS: Record<string, number>;
  rssMiB: number;
}

const servers: ServerProcess[] = [];
const samples: Record<number, Sample[]> = Object.fromEntries(lengths.map((l) => [l, []]));
const rssAfterLoad: Record<number, { rssMiB: number; hwmMiB: number }> = {};
const rssEnd: Record<number, { rssMiB: number; hwmMiB: number }> = {};
const errors: string[] = [];
try {
  for (const len of lengths) {
    const s = await startOurs(`ours-${tag}-maxseq${len}`, model, ['--max-sequence-length', String(len), ...serverArgs]);
    servers.push(s);
    rssAfterLoad[len] = procStatus(s.pid);
  }
  log(`servers ready; load ${loadavg()}`);
  const prompt = promptMaker(7, shape.vocab, PROMPT);
  for (let r = 0; r <= ROUNDS; r++) {
    const ps = Array.from({ length: CONC }, prompt);
    for (const [i, len] of lengths.entries()) {
      const s = servers[i];
      const before = await scrapeMetrics(s.url);
      const { value: settled, conditions } = await measured([s.pid], gate, () => Promise.allSettled(ps.map((p) => streamGenerate(s.url, p, TOKENS))));
      const after = await scrapeMetrics(s.url);
      const ok = settled.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
      for (const x of settled)
        if (x.status === 'rejected') {
          errors.push(`round ${r} max-seq ${len}: ${(x.reason as Error).message}`);
          log(`ERROR ${errors.at(-1)}`);
        }
      if (r > 0 && ok.length === CONC) {
        const f = concurrentFigures(ok);
        samples[len].push({
          round: r,
          conditions,
          aggregateTokPerS: f.aggregateTokPerS,
          decodePhaseTokPerS: f.decodePhaseTokPerS,
          wallMs: f.wallMs,
          meanTtftMs: f.meanTtftMs,
          metricMeansS: histogramMeans(before, after),
          rssMiB: procStatus(s.pid).rssMiB,
        });
      }
    }
    log(
      `round ${r}${r === 0 ? ' (warm-up)' : ''} done; load ${loadavg()}; ${lengths.map((l) => `max-seq ${l}: ${fmt(samples[l].at(-1)?.aggregateTokPerS ?? NaN)} tok/s, RSS ${fmt(procStatus(servers[lengths.indexOf(l)].pid).rssMiB, 0)} MiB`).join('; ')}`,
    );
  }
  for (const [i, len] of lengths.entries()) rssEnd[len] = procStatus(servers[i].pid);
} finally {
  for (const s of servers) await s.stop();
}

const metricNames = [...new Set(Object.values(samples).flatMap((xs) => xs.flatMap((x) => Object.keys(x.metricMeansS))))];
const summary = Object.fromEntries(
  lengths.map((len) => {
    const xs = samples[len];
    return [
      len,
      {
        n: xs.length,
        aggregateTokPerS: median(xs.map((x) => x.aggregateTokPerS)),
        decodePhaseTokPerS: median(xs.map((x) => x.decodePhaseTokPerS)),
        meanTtftMs: median(xs.map((x) => x.meanTtftMs)),
        metricMeansMs: Object.fromEntries(metricNames.map((n) => [n, median(xs.map((x) => (x.metricMeansS[n] ?? NaN) * 1000))])),
        rssMiB: median(xs.map((x) => x.rssMiB)),
        rssAfterLoadMiB: rssAfterLoad[len]?.rssMiB,
        hwmMiB: rssEnd[len]?.hwmMiB,
        load1: xs.map((x) => x.conditions.load1Before),
        foreignPct: xs.map((x) => x.conditions.foreignPct),
      },
    ];
  }),
);
const [lo, hi] = lengths;
const ratios = {
  aggregateTokPerS: summary[lo].aggregateTokPerS / summary[hi].aggregateTokPerS,
  decodePhaseTokPerS: summary[lo].decodePhaseTokPerS / summary[hi].decodePhaseTokPerS,
  rss: summary[hi].rssMiB / summary[lo].rssMiB,
  hwm: summary[hi].hwmMiB / summary[lo].hwmMiB,
  ...Object.fromEntries(metricNames.map((n) => [n, summary[hi].metricMeansMs[n] / summary[lo].metricMeansMs[n]])),
};
const meets = { throughput: ratios.aggregateTokPerS <= 1.15, memory: Math.abs(ratios.rss - 1) <= 0.1 };

const md: string[] = [];
md.push(`# bench:context ${QUICK ? '(--quick smoke run) ' : ''}${startedAt}`);
md.push('');
md.push(`Machine: ${mach.cpu}, ${mach.cores} cores, ${mach.memGiB} GiB, Node ${mach.node}; at start: \`${mach.uptime}\`.`);
md.push(
  `Model: random m100 (hidden 768, 12 layers, 12 / 4 heads, vocab 32000, F32), max_position_embeddings ${maxPositions}. Two \`src/server.ts\` processes, \`--max-sequence-length ${lo}\` and \`${hi}\`${serverArgs.length ? ', both with `' + serverArgs.join(' ') + '`' : ''}.`,
);
md.push(
  `Workload: ${CONC} concurrent requests, ${PROMPT}-token random prompts, ${TOKENS} greedy tokens each (ignore_eos, streaming, timed by the client); ${ROUNDS} interleaved round(s) after one warm-up, medians.`,
);
md.push('');
const mcols = metricNames.map((n) => `mean ${n.replace(/^lora_/, '').replace(/_seconds$/, '')} ms`);
md.push(
  `| max-sequence-length | aggregate tok/s | decode-phase tok/s | mean TTFT ms | ${mcols.join(' | ')}${mcols.length ? ' | ' : ''}RSS after load MiB | RSS after rounds MiB (median) | peak RSS (VmHWM) MiB | load1 | other processes' CPU % |`,
);
md.push(`| ---: | ---: | ---: | ---: | ${mcols.map(() => '---: | ').join('')}---: | ---: | ---: | --- | --- |`);
for (const len of lengths) {
  const s = summary[len];
  md.push(
    `| ${len} | ${fmt(s.aggregateTokPerS, 2)} | ${fmt(s.decodePhaseTokPerS, 2)} | ${fmt(s.meanTtftMs, 0)} | ${metricNames.map((n) => fmt(s.metricMeansMs[n], 1) + ' | ').join('')}${fmt(s.rssAfterLoadMiB, 0)} | ${fmt(s.rssMiB, 0)} | ${fmt(s.hwmMiB, 0)} | ${s.load1.map((x) => x.toFixed(2)).join(', ')} | ${s.foreignPct.map((x) => x.toFixed(0)).join(', ')} |`,
  );
}
md.push('');
md.push(
  `Ratios: aggregate tok/s ${lo} / ${hi} = **${fmt(ratios.aggregateTokPerS, 3)}** (target <= 1.15: ${meets.throughput ? 'met' : 'missed'}); decode-phase ${fmt(ratios.decodePhaseTokPerS, 3)}; ` +
    `${metricNames.map((n) => `mean ${n} ${hi} / ${lo} = ${fmt((ratios as Record<string, number>)[n], 3)}; `).join('')}` +
    `RSS ${hi} / ${lo} = **${fmt(ratios.rss, 3)}** (target within 10%: ${meets.memory ? 'met' : 'missed'}); peak RSS ${fmt(ratios.hwm, 3)}.`,
);
if (!metricNames.some((n) => /step/.test(n))) md.push('(/metrics exposes no step-time histogram; the inter-token latency mean stands in for the step time.)');
reportEnding(md, errors);
const text = md.join('\n');
const report = {
  benchmark: 'bench:context',
  startedAt,
  machine: mach,
  quick: QUICK,
  settings: { lengths, rounds: ROUNDS, conc: CONC, prompt: PROMPT, tokens: TOKENS, serverArgs, gate },
  summary,
  ratios,
  meets,
  samples,
  errors,
  logs: servers.map((s) => s.logFile),
};
const files = writeReport(a.out!, `${stamp()}${QUICK ? '-quick' : ''}`, report, text);
console.log(text);
log(`wrote ${files.json} and ${files.md}`);
