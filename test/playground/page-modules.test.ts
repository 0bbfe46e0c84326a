/**
 * The playground's browser modules (public/playground/api.js and run.js) run in Node, which has the same fetch,
 * streams and TextDecoder: server-sent events split anywhere, the server's error shapes, the request each mode
 * sends, and a run's text and figures on a fake clock. (The DOM modules are exercised in browser.test.ts.)
 */
import t from 'tap';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PLAYGROUND_DIR } from '../../src/routes/playground.js';

// Plain browser JavaScript, type-checked on its own (tsconfig.playground.json); typed loosely here.
const load = async (file: string): Promise<any> => import(pathToFileURL(join(PLAYGROUND_DIR, file)).href);
const { Api, ApiError, errorFrom, serverSentData } = await load('api.js');
const { requestFor, runModel, textOf, timing } = await load('run.js');

const bytes = (s: string) => new TextEncoder().encode(s);
/** A body that yields these chunks; `cancelled` says whether the reader stopped it early. */
function body(chunks: Uint8Array[]) {
  const state = { cancelled: false, pulled: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (state.pulled < chunks.length) controller.enqueue(chunks[state.pulled++]);
      else controller.close();
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { stream, state };
}
const collect = async (chunks: Uint8Array[]) => {
  const out: string[] = [];
  for await (const d of serverSentData(body(chunks).stream)) out.push(d);
  return out;
};

t.test('server-sent events split anywhere, even inside a character or a CRLF', async (t) => {
  const wire = bytes('data: {"a":"é€😀"}\r\n\r\n: a comment\nevent: x\ndata: one\ndata: two\n\ndata:{"b":1}\n\n');
  const whole = await collect([wire]);
  t.same(whole, ['{"a":"é€😀"}', 'one\ntwo', '{"b":1}']);
  for (let cut = 1; cut < wire.length; cut++) {
    t.same(await collect([wire.slice(0, cut), wire.slice(cut)]), whole, `cut at byte ${cut}`);
  }
  t.same(await collect([...wire].map((b) => Uint8Array.of(b))), whole, 'one byte at a time');
});

t.test('[DONE] ends the events and stops the download', async (t) => {
  const { stream, state } = body([bytes('data: 1\n\ndata: [DONE]\n\n'), bytes('data: 2\n\n')]);
  const out: string[] = [];
  for await (const d of serverSentData(stream)) out.push(d);
  t.same(out, ['1']);
  t.ok(state.cancelled, 'the rest of the body is not read');
  t.same(await collect([bytes('data: 1\n\ndata: 2')]), ['1'], 'an unfinished last event is dropped');
});

t.test("the server's error shapes become one ApiError", async (t) => {
  const native = await errorFrom(new Response(JSON.stringify({ error: { code: 'unauthorized', message: 'This server needs an API key.' } }), { status: 401 }));
  t.ok(native instanceof ApiError);
  t.equal(native.describe(), '401 unauthorized: This server needs an API key.');
  const openai = await errorFrom(
    new Response(
      JSON.stringify({ error: { message: 'The model "x" does not exist.', type: 'invalid_request_error', param: 'model', code: 'model_not_found' } }),
      { status: 404 },
    ),
  );
  t.equal(openai.describe(), '404 model_not_found: The model "x" does not exist.');
  const plain = await errorFrom(new Response('Bad gateway', { status: 502, statusText: 'Bad Gateway' }));
  t.equal(plain.describe(), '502 Bad Gateway: Bad gateway');
});

/** A fetch that records its calls and answers with `respond`. */
function fakeFetch(respond: (url: string, init: RequestInit) => Response) {
  const calls: { url: string; init: RequestInit }[] = [];
  const f = async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    return respond(url, init);
  };
  return { f, calls };
}
const sse = (events: unknown[], headers: Record<string, string> = {}) =>
  new Response(events.map((e) => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`).join(''), {
    headers: { 'content-type': 'text/event-stream', ...headers },
  });

t.test('the key goes as a bearer token, and only when there is one', async (t) => {
  const { f, calls } = fakeFetch(() => Response.json({ data: [] }));
  let key = '';
  const api = new Api(() => key, f);
  await api.json('/v1/models');
  key = ' sk-abc ';
  await api.json('/v1/adapters/support/pin', { method: 'POST' });
  t.same(calls[0].init.headers, {});
  t.same(calls[1].init.headers, { authorization: 'Bearer sk-abc' });
  t.equal(calls[1].init.method, 'POST');
  const refused = new Api(
    () => '',
    fakeFetch(() => Response.json({ error: { code: 'unauthorized', message: 'This server needs an API key.' } }, { status: 401 })).f,
  );
  await t.rejects(refused.json('/v1/models'), { status: 401, code: 'unauthorized' });
  const down = new Api(
    () => '',
    async () => {
      throw new TypeError('fetch failed');
    },
  );
  await t.rejects(down.json('/v1/models'), { status: 0, code: 'network_error' });
});

t.test('what each mode sends', async (t) => {
  const settings = { mode: 'chat', prompt: 'Hi', temperature: 0, maxTokens: 16, seed: null };
  t.same(requestFor('support', settings), {
    path: '/v1/chat/completions',
    body: {
      model: 'support',
      max_tokens: 16,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'Hi' }],
    },
  });
  t.same(requestFor('demo', { ...settings, mode: 'completion', seed: 7 }), {
    path: '/v1/completions',
    body: { model: 'demo', max_tokens: 16, temperature: 0, seed: 7, stream: true, stream_options: { include_usage: true }, prompt: 'Hi' },
  });
  t.equal(textOf({ choices: [{ delta: { content: 'a' } }] }), 'a');
  t.equal(textOf({ choices: [{ text: 'b' }] }), 'b');
  t.equal(textOf({ choices: [], usage: { completion_tokens: 1 } }), '');
});

/** Runs one model on `api` with a clock that advances 10 ms per reading. */
async function run(api: unknown, signal = new AbortController().signal) {
  const seen: { route?: string | null; text: string[]; done?: any; error?: any } = { text: [] };
  let clock = 0;
  await runModel(
    api,
    'support',
    { mode: 'chat', prompt: 'Hi', temperature: 0, maxTokens: 16, seed: null },
    {
      onRoute: (r: string | null) => (seen.route = r),
      onText: (s: string) => seen.text.push(s),
      onDone: (d: unknown) => (seen.done = d),
      onError: (e: unknown) => (seen.error = e),
    },
    signal,
    () => (clock += 10),
  );
  return seen;
}
const chunk = (content: string | null, finish: string | null = null) => ({
  choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
});

t.test('a run: the text as it comes, the route, and its figures', async (t) => {
  const events = [
    chunk(''),
    chunk('Sum'),
    chunk('mary'),
    chunk(':'),
    chunk(null, 'stop'),
    { choices: [], usage: { prompt_tokens: 3, completion_tokens: 3 } },
    '[DONE]',
  ];
  const seen = await run(new Api(() => '', fakeFetch(() => sse(events, { 'x-inference-route': 'bedrock' })).f));
  t.equal(seen.route, 'bedrock');
  t.same(seen.text, ['Sum', 'mary', ':'], 'empty pieces are skipped');
  // Clock readings: start 10, texts at 20, 30, 40: TTFT 10 ms, 2 tokens after the first in 20 ms.
  t.same(seen.done, { tokens: 3, finishReason: 'stop', ttftMs: 10, tokensPerSecond: 100 });
  t.same(timing({ startedAt: 0, firstAt: 5, lastAt: 5, tokens: 1 }), { ttftMs: 5, tokensPerSecond: null }, 'no rate from one token');
  t.same(timing({ startedAt: 0, firstAt: null, lastAt: null, tokens: 0 }), { ttftMs: null, tokensPerSecond: null });
});

t.test('a run that fails: before the stream, inside it, or stopped', async (t) => {
  const refused = await run(
    new Api(
      () => '',
      fakeFetch(() => Response.json({ error: { code: 'forbidden', message: 'This API key may not use adapter "support".' } }, { status: 403 })).f,
    ),
  );
  t.equal(refused.error.describe(), '403 forbidden: This API key may not use adapter "support".');
  t.equal(refused.done, undefined);

  const midway = await run(new Api(() => '', fakeFetch(() => sse([chunk('a'), { error: { code: 'request_timeout', message: 'The request timed out.' } }])).f));
  t.same(midway.text, ['a']);
  t.equal(midway.error.describe(), 'request_timeout: The request timed out.', 'no status: the 200 went out before the failure');

  const stop = new AbortController();
  const stopped = await run(
    new Api(
      () => '',
      async (_url: string, init: RequestInit) => {
        stop.abort();
        throw Object.assign(new Error('aborted'), { name: 'AbortError', signal: init.signal });
      },
    ),
    stop.signal,
  );
  t.equal(stopped.error.code, 'stopped');
});
