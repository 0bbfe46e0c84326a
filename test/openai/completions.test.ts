/** POST /v1/completions on a real listening server, through the official openai client. */
import t from 'tap';
import type OpenAI from 'openai';
import { reference, type ReferenceCase } from '../helpers/engine.js';
import { logprobTolerance, maxDiff, startServer, tokenIds } from './helpers.js';

const server = await startServer();
t.teardown(() => server.close());
const { client, engine } = server;
const BASE = engine.modelName;
const modelOf = (adapter: string | null) => adapter ?? BASE;
/** Extensions the client's types do not know; spread into a request they are sent as they are. */
const ext = (o: Record<string, unknown>): object => o;
/** The greedy text as this server shows it (special tokens skipped; the reference's greedy_text keeps them). */
const greedyText = (c: ReferenceCase) => engine.tokenizer.decode(c.greedy_token_ids);

async function nativeGenerate(adapter: string | null, body: Record<string, unknown>) {
  const res = await fetch(`http://127.0.0.1:${server.port}/v1/generate${adapter ? `?adapter=${adapter}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await res.json()) as { text: string; token_ids: number[]; logprobs: number[] };
}

t.test('greedy completions of token-id prompts equal the HF reference and /v1/generate, base and every adapter', async (t) => {
  const results = await Promise.all(
    reference.cases.map((c) =>
      client.completions.create({
        model: modelOf(c.adapter),
        prompt: c.prompt_token_ids,
        max_tokens: c.greedy_token_ids.length,
        temperature: 0,
        logprobs: 0,
        ...ext({ ignore_eos: true, return_tokens_as_token_ids: true }),
      }),
    ),
  );
  const natives = await Promise.all(
    reference.cases.map((c) =>
      nativeGenerate(c.adapter, {
        prompt_token_ids: c.prompt_token_ids,
        max_tokens: c.greedy_token_ids.length,
        temperature: 0,
        ignore_eos: true,
        logprobs: true,
      }),
    ),
  );
  reference.cases.forEach((c, i) => {
    const name = `${c.adapter ?? 'base'} case ${i} (${c.prompt_token_ids.length}-token prompt)`;
    const r = results[i];
    t.equal(r.object, 'text_completion');
    t.equal(r.model, modelOf(c.adapter));
    t.match(r.id, /^cmpl-/);
    t.equal(r.choices.length, 1);
    const choice = r.choices[0];
    const lp = choice.logprobs!;
    t.same(tokenIds(lp.tokens!), c.greedy_token_ids, `${name}: greedy tokens equal HF`);
    const tolerance = logprobTolerance(c);
    const diff = maxDiff(lp.token_logprobs!, c.greedy_logprobs);
    t.ok(diff < tolerance, `${name}: logprobs within ${tolerance} of HF (max diff ${diff.toExponential(2)})`);
    t.same(tokenIds(lp.tokens!), natives[i].token_ids, `${name}: tokens equal /v1/generate`);
    t.ok(maxDiff(lp.token_logprobs!, natives[i].logprobs) < 1e-5, `${name}: logprobs equal /v1/generate's`);
    t.equal(choice.text, natives[i].text, `${name}: text equals /v1/generate's`);
    t.equal(choice.finish_reason, 'length');
    t.same(r.usage, {
      prompt_tokens: c.prompt_token_ids.length,
      completion_tokens: c.greedy_token_ids.length,
      total_tokens: c.prompt_token_ids.length + c.greedy_token_ids.length,
    });
  });
});

t.test('streaming completions, base and every adapter: chunks add up to the JSON reply, then usage, then [DONE]', async (t) => {
  for (const adapter of [null, 'support', 'sales', 'code']) {
    const c = reference.cases.find((x) => x.adapter === adapter)!;
    const params = {
      model: modelOf(adapter),
      prompt: c.prompt_token_ids,
      max_tokens: 24,
      temperature: 0,
      logprobs: 2,
      ...ext({ ignore_eos: true, return_tokens_as_token_ids: true }),
    };
    const whole = await client.completions.create(params);
    const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    let text = '';
    const tokens: string[] = [];
    const logprobs: number[] = [];
    const offsets: number[] = [];
    const finishes: Array<string | null> = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    const ids = new Set<string>();
    for await (const chunk of stream) {
      ids.add(chunk.id);
      t.equal(chunk.object, 'text_completion');
      if (chunk.usage) {
        t.same(chunk.choices, [], 'the usage chunk has no choices');
        usage = chunk.usage;
        continue;
      }
      const choice = chunk.choices[0];
      text += choice.text;
      tokens.push(...(choice.logprobs?.tokens ?? []));
      logprobs.push(...(choice.logprobs?.token_logprobs ?? []));
      offsets.push(...(choice.logprobs?.text_offset ?? []));
      if (choice.finish_reason) finishes.push(choice.finish_reason);
    }
    const name = adapter ?? 'base';
    t.equal(ids.size, 1, `${name}: one id for the whole stream`);
    t.equal(text, whole.choices[0].text, `${name}: streamed text equals the JSON reply`);
    t.same(tokenIds(tokens), c.greedy_token_ids, `${name}: streamed tokens equal HF`);
    t.ok(maxDiff(logprobs, c.greedy_logprobs) < logprobTolerance(c), `${name}: streamed logprobs equal HF`);
    t.same(offsets, whole.choices[0].logprobs!.text_offset, `${name}: same text offsets`);
    t.same(finishes, ['length']);
    t.same(usage, whole.usage, `${name}: usage chunk equals the JSON reply's usage`);
  }
});

t.test('the raw stream ends with data: [DONE] and carries usage: null before the usage chunk', async (t) => {
  const res = await fetch(`${server.baseURL}/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: BASE, prompt: 'Hi', max_tokens: 4, stream: true, stream_options: { include_usage: true }, ignore_eos: true }),
  });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /text\/event-stream/);
  const events = (await res.text()).split('\n\n').filter(Boolean);
  t.equal(events.at(-1), 'data: [DONE]');
  const data = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, '')));
  t.ok(
    data.slice(0, -1).every((d) => d.usage === null),
    'usage: null on every chunk before the last',
  );
  const promptTokens = engine.tokenizer.encode('Hi').length;
  t.same(data.at(-1).usage, { prompt_tokens: promptTokens, completion_tokens: 4, total_tokens: promptTokens + 4 });
});

t.test('text prompts, batches of prompts, and the default max_tokens of 16', async (t) => {
  const c = reference.cases[0];
  const text = await client.completions.create({ model: BASE, prompt: c.prompt, max_tokens: 24, temperature: 0, ...ext({ ignore_eos: true }) });
  t.equal(text.choices[0].text, greedyText(c), 'a text prompt gives the HF greedy text');
  t.equal(text.usage!.prompt_tokens, c.prompt_token_ids.length, 'the text prompt was tokenized as HF does (BOS added)');

  const [a, b] = reference.cases.filter((x) => x.adapter === null);
  const batch = await client.completions.create({
    model: BASE,
    prompt: [a.prompt_token_ids, b.prompt_token_ids],
    n: 2,
    max_tokens: 24,
    temperature: 0,
    ...ext({ ignore_eos: true }),
  });
  t.same(
    batch.choices.map((x) => x.index),
    [0, 1, 2, 3],
    'choice index = prompt index * n + i',
  );
  t.equal(batch.choices[0].text, greedyText(a));
  t.equal(batch.choices[1].text, greedyText(a));
  t.equal(batch.choices[2].text, greedyText(b));
  t.equal(batch.choices[3].text, greedyText(b));
  t.same(
    batch.usage,
    {
      prompt_tokens: a.prompt_token_ids.length + b.prompt_token_ids.length,
      completion_tokens: 96,
      total_tokens: a.prompt_token_ids.length + b.prompt_token_ids.length + 96,
    },
    'each prompt counted once',
  );

  const strings = await client.completions.create({
    model: 'sales',
    prompt: [a.prompt, b.prompt],
    max_tokens: 24,
    temperature: 0,
    ...ext({ ignore_eos: true }),
  });
  const salesA = reference.cases.find((x) => x.adapter === 'sales' && x.prompt === a.prompt)!;
  const salesB = reference.cases.find((x) => x.adapter === 'sales' && x.prompt === b.prompt)!;
  t.same(
    strings.choices.map((x) => x.text),
    [greedyText(salesA), greedyText(salesB)],
    'a batch of text prompts on an adapter',
  );

  const dflt = await client.completions.create({ model: BASE, prompt: 'Hi', ...ext({ ignore_eos: true }) });
  t.equal(dflt.usage!.completion_tokens, 16, "OpenAI's default max_tokens");
});

t.test('n choices with a seed: seed + i for choice i, reproducible', async (t) => {
  const params = { model: 'support', prompt: 'Hi Alex,', max_tokens: 12, temperature: 1.2, seed: 5, n: 3, ...ext({ ignore_eos: true }) };
  const first = await client.completions.create(params);
  const again = await client.completions.create(params);
  const texts = first.choices.map((c) => c.text);
  t.same(
    again.choices.map((c) => c.text),
    texts,
    'same seed, same choices',
  );
  t.ok(new Set(texts).size > 1, 'the choices differ');
  const one = await client.completions.create({ ...params, n: 1, seed: 6 });
  t.equal(one.choices[0].text, texts[1], 'choice 1 of seed 5 is choice 0 of seed 6');
  const stream = await client.completions.create({ ...params, stream: true });
  const streamed = ['', '', ''];
  for await (const chunk of stream) for (const c of chunk.choices) streamed[c.index] += c.text;
  t.same(streamed, texts, 'streamed n choices equal the JSON ones');
});

t.test('stop sequences and top logprobs', async (t) => {
  const c = reference.cases[2];
  const full = await client.completions.create({
    model: BASE,
    prompt: c.prompt_token_ids,
    max_tokens: 24,
    temperature: 0,
    logprobs: 3,
    ...ext({ ignore_eos: true, return_tokens_as_token_ids: true }),
  });
  const text = full.choices[0].text;
  const lp = full.choices[0].logprobs!;
  t.equal(lp.tokens!.length, 24);
  t.ok(
    lp.top_logprobs!.every((top, i) => Object.keys(top).length === 3 && top[lp.tokens![i]] === lp.token_logprobs![i]),
    'top_logprobs: the 3 most likely tokens, the (greedy) sampled one among them',
  );
  const sampled = await client.completions.create({
    model: BASE,
    prompt: c.prompt_token_ids,
    max_tokens: 24,
    temperature: 2,
    seed: 1,
    logprobs: 1,
    ...ext({ ignore_eos: true, return_tokens_as_token_ids: true }),
  });
  const slp = sampled.choices[0].logprobs!;
  t.ok(
    slp.top_logprobs!.every((top, i) => top[slp.tokens![i]] === slp.token_logprobs![i] && Object.keys(top).length <= 2),
    'sampled: the most likely token plus the sampled one',
  );
  t.ok(
    slp.top_logprobs!.some((top) => Object.keys(top).length === 2),
    'at temperature 2 some sampled token is not the most likely',
  );
  t.ok(
    lp.top_logprobs!.every((top, i) => Object.values(top).every((v) => v <= lp.token_logprobs![i] + 1e-9)),
    'greedy: the sampled token is the most likely',
  );
  t.equal(lp.text_offset![0], 0);
  t.ok(
    lp.text_offset!.every((o, i) => i === 0 || o >= lp.text_offset![i - 1]),
    'text offsets never decrease',
  );
  t.ok(
    lp.text_offset!.every((o) => o <= [...text].length),
    'text offsets lie within the text',
  );

  const stop = text.slice(6, 9);
  const stopped = await client.completions.create({
    model: BASE,
    prompt: c.prompt_token_ids,
    max_tokens: 24,
    temperature: 0,
    stop: [stop, 'never-seen'],
    ...ext({ ignore_eos: true }),
  });
  t.equal(stopped.choices[0].finish_reason, 'stop');
  t.equal(stopped.choices[0].text, text.slice(0, text.indexOf(stop)), 'text ends before the stop sequence');
});
