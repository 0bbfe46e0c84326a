/**
 * generation_config.json used as transformers and vLLM use it: its eos_token_id joins the stop tokens, its
 * temperature / top_p / top_k become request defaults (a request's own values win), max_new_tokens the default
 * chat max_tokens; `--generation-config none` ignores the sampling values. Real engine on the llama-tiny fixture,
 * routes through app.inject().
 */
import t from 'tap';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_MODEL, greedyRequest, loadFixtureEngine, reference } from '../helpers/engine.js';
import { buildTestApp } from '../helpers/app.js';
import { parseGenerationConfig } from '../../src/engine/model/generation-config.js';
import type { EngineOptions } from '../../src/engine/engine.js';

/** llama-tiny with its generation_config.json replaced (null: none at all). */
function withGenerationConfig(json: Record<string, unknown> | null): string {
  const dir = mkdtempSync(join(tmpdir(), 'gen-config-'));
  cpSync(FIXTURE_MODEL, dir, { recursive: true });
  if (json) writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(json));
  else writeFileSync(join(dir, 'generation_config.json'), '{}');
  return dir;
}

const engineWith = async (json: Record<string, unknown> | null, options: Partial<EngineOptions> = {}) => {
  const engine = await loadFixtureEngine({ modelDir: withGenerationConfig(json), ...options });
  t.teardown(() => engine.close());
  return engine;
};

t.test('parsing: eos ids (one or a list), sampling values, none, values out of range, ignored settings', async (t) => {
  t.same(parseGenerationConfig({ eos_token_id: 7 }, 'auto'), { source: null, eosTokenIds: [7], ignored: [] });
  t.same(parseGenerationConfig({ eos_token_id: [128001, 128008, 128009], do_sample: true, temperature: 0.6, top_p: 0.9 }, 'auto'), {
    source: 'generation_config.json',
    eosTokenIds: [128001, 128008, 128009],
    ignored: [],
    temperature: 0.6,
    topP: 0.9,
  });
  t.same(
    parseGenerationConfig({ eos_token_id: [1, 2], temperature: 0.6, top_k: 20, max_new_tokens: 100 }, 'none'),
    { source: null, eosTokenIds: [1, 2], ignored: [] },
    'none keeps the stop tokens only',
  );
  t.match(parseGenerationConfig({ top_k: 20, max_new_tokens: 100, repetition_penalty: 1.1 }, 'auto'), {
    topK: 20,
    maxTokens: 100,
    ignored: ['repetition_penalty 1.1 (not implemented by this server)'],
  });
  t.same(parseGenerationConfig({ repetition_penalty: 1.0 }, 'auto').ignored, [], 'a penalty of 1 is a no-op, not reported');
  t.throws(() => parseGenerationConfig({ temperature: 5 }, 'auto'), /temperature 5 is outside what this server accepts \(0 to 2\).*--generation-config none/);
  t.throws(() => parseGenerationConfig({ eos_token_id: 'x' }, 'auto'), /eos_token_id must be a token id/);
});

const c = reference.cases[0];
const stopAt = 3; // the greedy continuation's 4th token becomes an EOS id
const eosId = c.greedy_token_ids[stopAt];

t.test('an EOS id listed only in generation_config.json stops the generation there; without it, it runs to max_tokens', async (t) => {
  t.notOk(c.greedy_token_ids.slice(0, stopAt).includes(eosId), 'the chosen id does not occur earlier');
  const withEos = await engineWith({ eos_token_id: [1, eosId] });
  const stopped = await withEos.generate(greedyRequest(c, { ignoreEos: false }));
  t.equal(stopped.finishReason, 'stop');
  t.same(stopped.tokenIds.slice(0, stopAt), c.greedy_token_ids.slice(0, stopAt), 'the same tokens up to the stop');
  t.ok(stopped.tokenIds.length <= stopAt + 1, `stopped at the EOS id (${stopped.tokenIds.length} tokens)`);

  const without = await engineWith(null);
  const ran = await without.generate(greedyRequest(c, { ignoreEos: false }));
  t.equal(ran.finishReason, 'length');
  t.same(ran.tokenIds, c.greedy_token_ids);

  const ignored = await withEos.generate(greedyRequest(c, { ignoreEos: true }));
  t.equal(ignored.finishReason, 'length', 'ignore_eos still goes past it');
});

t.test('sampling defaults from generation_config.json apply to requests that leave them out; a request value wins; none ignores them', async (t) => {
  // top_k 1 with the server's temperature 1: the default makes every request greedy.
  const engine = await engineWith({ top_k: 1, max_new_tokens: 5 });
  const app = await buildTestApp(engine);
  t.teardown(() => app.close());
  const ids = c.prompt_token_ids;
  const n = c.greedy_token_ids.length;
  const generate = (extra: Record<string, unknown>) =>
    app.inject({ method: 'POST', url: '/v1/generate', payload: { prompt_token_ids: ids, max_tokens: n, ignore_eos: true, ...extra } }).then((r) => r.json());

  t.same((await generate({ seed: 1 })).token_ids, c.greedy_token_ids, 'top_k 1 from the file: greedy although the request samples at temperature 1');
  const own = await generate({ seed: 1, top_k: 0 });
  t.notSame(own.token_ids, c.greedy_token_ids, "the request's top_k 0 wins: sampled");

  const ready = (await app.inject({ url: '/readyz' })).json();
  t.match(ready.generation_defaults, { source: 'generation_config.json', temperature: 1, top_p: 1, top_k: 1, chat_max_tokens: 5 });
  t.same(ready.eos_token_ids, [1]);

  const chat = (
    await app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model: engine.modelName, messages: [{ role: 'user', content: 'hi' }], ignore_eos: true },
    })
  ).json();
  t.equal(chat.usage.completion_tokens, 5, 'max_new_tokens is the chat default max_tokens');
  const completion = (
    await app.inject({ method: 'POST', url: '/v1/completions', payload: { model: engine.modelName, prompt: 'hi', ignore_eos: true } })
  ).json();
  t.equal(completion.usage.completion_tokens, 16, "completions keep OpenAI's default of 16");

  const noneEngine = await engineWith({ top_k: 1 }, { generationConfig: 'none' });
  const noneApp = await buildTestApp(noneEngine);
  t.teardown(() => noneApp.close());
  const sampled = (
    await noneApp.inject({ method: 'POST', url: '/v1/generate', payload: { prompt_token_ids: ids, max_tokens: n, ignore_eos: true, seed: 1 } })
  ).json();
  t.notSame(sampled.token_ids, c.greedy_token_ids, '--generation-config none: the server defaults (temperature 1, no top_k) sample');
  t.match((await noneApp.inject({ url: '/readyz' })).json().generation_defaults, { source: 'server', temperature: 1, top_p: 1, top_k: 0 });
});
