/**
 * llama.cpp (node-llama-cpp, installed at run time into its own folder by bench/peer/lib.ts) behind the same
 * request shape as the project's POST /v1/generate, for bench/peer/run.ts:
 *   POST /v1/generate[?adapter=NAME]  {"prompt_token_ids": [...], "max_tokens": 64, "stream": true|false}
 *     greedy, EOS ignored (the benchmark always asks ignore_eos); any adapter name = the LoRA context.
 *     stream: one `data: {"token_id": N}` event per token, then `data: {"finish_reason": "length", "usage",
 *     "timings"}` and `data: [DONE]` (the project's event shape); otherwise {token_ids, timings}.
 *     timings (server side): prefillMs (request start -> first token), decodeMs (first -> last token).
 *   GET /info -> pid, context settings (threads, sequences, batch size, flash attention), RSS.
 * One base context with --sequences sequences: concurrent requests share one llama_decode per step
 * (node-llama-cpp batches the sequences of a context); with --lora FILE, a second context (one sequence) that
 * applies that GGUF LoRA adapter.
 *   LLAMACPP_DIR=.cache/peer/llamacpp node --import tsx bench/peer/llama-http.ts --model M.gguf --port 18301 \
 *     [--lora L.gguf] [--sequences 8] [--ctx 2048] [--threads 2] [--flash-attention auto|true|false]
 */
import http from 'node:http';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    port: { type: 'string', default: '18301' },
    lora: { type: 'string' },
    sequences: { type: 'string', default: '8' },
    ctx: { type: 'string', default: '2048' },
    threads: { type: 'string', default: '2' },
    'flash-attention': { type: 'string', default: 'auto' },
  },
});
if (!a.model) throw new Error('--model FILE.gguf is required');
const dir = resolve(process.env.LLAMACPP_DIR ?? '.cache/peer/llamacpp');
const nlc = await import(pathToFileURL(join(dir, 'node_modules/node-llama-cpp/dist/index.js')).href);
const threads = Number(a.threads);
const fa = a['flash-attention'] === 'auto' ? 'auto' : a['flash-attention'] === 'true';
const llama = await nlc.getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: nlc.LlamaLogLevel.warn });
const t0 = performance.now();
const model = await llama.loadModel({ modelPath: a.model, gpuLayers: 0 });
const mkctx = (sequences: number, lora?: string) =>
  model.createContext({
    contextSize: Number(a.ctx),
    sequences,
    threads: { ideal: threads, min: threads },
    flashAttention: fa,
    ...(lora ? { lora: { adapters: [{ filePath: lora, scale: 1 }] } } : {}),
  });
const pools: Record<string, any> = { base: await mkctx(Number(a.sequences)) };
if (a.lora) pools.lora = await mkctx(1, a.lora);
const loadMs = performance.now() - t0;

const free: Record<string, any[]> = {};
const waiters: Record<string, Array<(s: any) => void>> = {};
for (const [k, ctx] of Object.entries(pools)) {
  free[k] = Array.from({ length: ctx.totalSequences }, () => ctx.getSequence());
  waiters[k] = [];
}
const acquire = (k: string): Promise<any> => (free[k].length ? Promise.resolve(free[k].pop()) : new Promise((r) => waiters[k].push(r)));
const release = (k: string, s: any) => {
  const w = waiters[k].shift();
  if (w) w(s);
  else free[k].push(s);
};

async function generate(k: string, prompt: number[], maxTokens: number, onToken: (t: number) => void) {
  const seq = await acquire(k);
  try {
    await seq.clearHistory();
    const out: number[] = [];
    const start = performance.now();
    let first = start;
    for await (const tok of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      if (out.length === 0) first = performance.now();
      out.push(tok);
      onToken(tok);
      if (out.length >= maxTokens) break;
    }
    const end = performance.now();
    return { token_ids: out, timings: { prefillMs: first - start, decodeMs: end - first, totalMs: end - start } };
  } finally {
    release(k, seq);
  }
}

const info = () => ({
  pid: process.pid,
  model: a.model,
  lora: a.lora ?? null,
  loadMs,
  contexts: Object.fromEntries(
    Object.entries(pools).map(([k, c]) => [
      k,
      {
        contextSize: c.contextSize,
        sequences: c.totalSequences,
        batchSize: c.batchSize,
        threads: c.currentThreads,
        idealThreads: c.idealThreads,
        flashAttention: c.flashAttention,
      },
    ]),
  ),
  node: process.version,
  rss: process.memoryUsage().rss,
});

http
  .createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (code: number, obj: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    if (req.method === 'GET' && url.pathname === '/info') return send(200, info());
    if (req.method !== 'POST' || url.pathname !== '/v1/generate') return send(404, { error: 'not found' });
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', async () => {
      try {
        const j = JSON.parse(body);
        const k = url.searchParams.get('adapter') ? 'lora' : 'base';
        if (!pools[k]) return send(404, { error: 'no lora context' });
        const maxTokens = j.max_tokens ?? 64;
        if (!j.stream) return send(200, await generate(k, j.prompt_token_ids, maxTokens, () => {}));
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        const r = await generate(k, j.prompt_token_ids, maxTokens, (t) => res.write(`data: ${JSON.stringify({ token_id: t })}\n\n`));
        res.write(
          `data: ${JSON.stringify({ finish_reason: 'length', usage: { prompt_tokens: j.prompt_token_ids.length, completion_tokens: r.token_ids.length }, timings: r.timings })}\n\n`,
        );
        res.end('data: [DONE]\n\n');
      } catch (e) {
        if (res.headersSent) res.end(`event: error\ndata: ${JSON.stringify({ error: String((e as Error)?.stack ?? e) })}\n\n`);
        else send(500, { error: String((e as Error)?.stack ?? e) });
      }
    });
  })
  .listen(Number(a.port), '127.0.0.1', () => console.log(JSON.stringify({ listening: Number(a.port), ...info() })));
