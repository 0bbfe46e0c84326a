/**
 * `npm run bench:burst`: time to first token under a burst. Against a real server process (by default the
 * project's `src/server.ts` started here on a free port with the random m100 checkpoint of bench/peer and its
 * adapters folder; or any running server with --url):
 *   lone   one streaming 128-token request (max_tokens 16, greedy, ignore_eos) at a time, --lone times after a
 *          warm-up: time to first token = send -> first SSE data event carrying a token, measured by the client;
 *   burst  --size (16) such requests sent at once, --bursts times: p50 / p90 / max time to first token over all
 *          requests of all bursts (nearest-rank percentiles), and per burst.
 * Ratio p90(burst) / median(lone); target <= 3. Prints a table and writes bench-results/burst/<time>.json + .md.
 *
 *   npm run bench:burst
 *   npm run bench:burst -- --quick                         # 3 lone, 1 burst: a smoke run
 *   npm run bench:burst -- --server-args "--max-batch 16"  # flags for the server started here
 *   npm run bench:burst -- --url http://127.0.0.1:8080 --vocab 32000
 */
import { parseArgs } from 'node:util';
import {
  commonOptions,
  SHAPES,
  fmt,
  loadavg,
  log,
  machine,
  makeModel,
  measured,
  median,
  percentile,
  promptMaker,
  reportEnding,
  splitArgs,
  stamp,
  startOurs,
  streamGenerate,
  writeReport,
  type Conditions,
  type ServerProcess,
} from './peer/lib.js';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string' },
    vocab: { type: 'string' },
    adapter: { type: 'string' },
    lone: { type: 'string' },
    bursts: { type: 'string' },
    size: { type: 'string', default: '16' },
    prompt: { type: 'string', default: '128' },
    'max-tokens': { type: 'string', default: '16' },
    ...commonOptions('burst'),
  },
});
if (a.help) {
  process.stdout.write(`npm run bench:burst -- [--url URL --vocab N] [--adapter NAME] [--lone 5] [--bursts 3] [--size 16] [--prompt 128]
  [--max-tokens 16] [--server-args "..."] [--quiet-pct 15] [--quiet-wait-s 60] [--out DIR] [--quick]\n`);
  process.exit(0);
}
const QUICK = a.quick;
const LONE = Number(a.lone ?? (QUICK ? 3 : 5));
const BURSTS = Number(a.bursts ?? (QUICK ? 1 : 3));
const SIZE = Number(a.size);
const PROMPT = Number(a.prompt);
const MAX_TOKENS = Number(a['max-tokens']);
const gate = { pct: Number(a['quiet-pct']), maxWaitS: Number(a['quiet-wait-s'] ?? (QUICK ? 4 : 60)) };
const serverArgs = splitArgs(a['server-args']);

const mach = machine();
const startedAt = new Date().toISOString();
log(`machine: ${mach.cpu}, ${mach.cores} cores, ${mach.memGiB} GiB; ${mach.uptime}`);

let server: ServerProcess | null = null;
let url = a.url;
let vocab = Number(a.vocab ?? SHAPES.m100.vocab);
if (!url) {
  server = await startOurs('ours-burst-m100', makeModel(SHAPES.m100), serverArgs);
  url = server.url;
  vocab = SHAPES.m100.vocab;
}
const pids = server ? [server.pid] : [];
const prompt = promptMaker(11, vocab, PROMPT);
const ttft = async (p: number[]) => {
  const r = await streamGenerate(url!, p, MAX_TOKENS, a.adapter);
  return r.tokenTimes[0] - r.sentAt;
};

const lone: Array<{ ttftMs: number; conditions: Conditions }> = [];
const bursts: Array<{ ttftMs: number[]; wallMs: number; conditions: Conditions; errors: number }> = [];
const errors: string[] = [];
try {
  await ttft(prompt()); // warm-up
  for (let i = 0; i < LONE; i++) {
    const { value, conditions } = await measured(pids, gate, () => ttft(prompt()));
    lone.push({ ttftMs: value, conditions });
    log(`lone ${i + 1}/${LONE}: TTFT ${value.toFixed(0)} ms; load ${loadavg()}`);
  }
  for (let b = 0; b < BURSTS; b++) {
    const ps = Array.from({ length: SIZE }, prompt);
    const t0 = performance.now();
    const { value: settled, conditions } = await measured(pids, gate, () => Promise.allSettled(ps.map(ttft)));
    const ok = settled.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
    for (const x of settled) if (x.status === 'rejected') errors.push(`burst ${b + 1}: ${(x.reason as Error).message}`);
    bursts.push({ ttftMs: ok, wallMs: performance.now() - t0, conditions, errors: SIZE - ok.length });
    log(
      `burst ${b + 1}/${BURSTS}: ${ok.length}/${SIZE} ok, TTFT p50 ${percentile(ok, 50).toFixed(0)} p90 ${percentile(ok, 90).toFixed(0)} max ${Math.max(...ok).toFixed(0)} ms; load ${loadavg()}`,
    );
  }
} finally {
  await server?.stop();
}

const loneMedian = median(lone.map((x) => x.ttftMs));
const all = bursts.flatMap((b) => b.ttftMs);
const summary = {
  loneMedianMs: loneMedian,
  loneMs: lone.map((x) => x.ttftMs),
  burstP50Ms: percentile(all, 50),
  burstP90Ms: percentile(all, 90),
  burstMaxMs: Math.max(...all),
  burstN: all.length,
  ratioP90ToLoneMedian: percentile(all, 90) / loneMedian,
};
const meets = summary.ratioP90ToLoneMedian <= 3;

const md: string[] = [];
md.push(`# bench:burst ${QUICK ? '(--quick smoke run) ' : ''}${startedAt}`);
md.push('');
md.push(`Machine: ${mach.cpu}, ${mach.cores} cores, ${mach.memGiB} GiB, Node ${mach.node}; at start: \`${mach.uptime}\`.`);
md.push(
  `Server: ${server ? `\`src/server.ts\` on the random m100 checkpoint (F32, hidden 768, 12 layers, vocab 32000)${serverArgs.length ? ' with `' + serverArgs.join(' ') + '`' : ', defaults'}` : url}${a.adapter ? `, adapter ${a.adapter}` : ''}.`,
);
md.push(
  `Requests: ${PROMPT}-token random prompts, max_tokens ${MAX_TOKENS}, greedy, ignore_eos, streaming; TTFT = send -> first SSE event carrying a token, measured by the client.`,
);
md.push('');
md.push("| measurement | n | p50 ms | p90 ms | max ms | load1 | other processes' CPU % |");
md.push('| --- | ---: | ---: | ---: | ---: | --- | --- |');
md.push(
  `| lone request | ${lone.length} | ${fmt(loneMedian, 0)} (median) | ${fmt(
    percentile(
      lone.map((x) => x.ttftMs),
      90,
    ),
    0,
  )} | ${fmt(Math.max(...lone.map((x) => x.ttftMs)), 0)} | ${lone.map((x) => x.conditions.load1Before.toFixed(2)).join(', ')} | ${lone.map((x) => x.conditions.foreignPct.toFixed(0)).join(', ')} |`,
);
for (const [i, b] of bursts.entries()) {
  md.push(
    `| burst ${i + 1} (${SIZE} at once) | ${b.ttftMs.length} | ${fmt(percentile(b.ttftMs, 50), 0)} | ${fmt(percentile(b.ttftMs, 90), 0)} | ${fmt(Math.max(...b.ttftMs), 0)} | ${b.conditions.load1Before.toFixed(2)} | ${b.conditions.foreignPct.toFixed(0)} |`,
  );
}
md.push(`| all bursts | ${all.length} | ${fmt(summary.burstP50Ms, 0)} | ${fmt(summary.burstP90Ms, 0)} | ${fmt(summary.burstMaxMs, 0)} | | |`);
md.push('');
md.push(`**p90(burst) / median(lone) = ${fmt(summary.ratioP90ToLoneMedian, 2)}** (target <= 3: ${meets ? 'met' : 'missed'}).`);
reportEnding(md, errors);
const text = md.join('\n');
const report = {
  benchmark: 'bench:burst',
  startedAt,
  machine: mach,
  quick: QUICK,
  url: server ? 'started here (m100)' : url,
  serverArgs,
  settings: { lone: LONE, bursts: BURSTS, size: SIZE, prompt: PROMPT, maxTokens: MAX_TOKENS, adapter: a.adapter ?? null, gate },
  summary,
  meets,
  lone,
  bursts,
  errors,
  log: server?.logFile ?? null,
};
const files = writeReport(a.out!, `${stamp()}${QUICK ? '-quick' : ''}`, report, text);
console.log(text);
log(`wrote ${files.json} and ${files.md}`);
