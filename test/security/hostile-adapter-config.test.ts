/**
 * Hostile adapter_config.json files: huge, deeply nested, wrong types, catastrophic-backtracking
 * rank_pattern keys. Each is refused quickly with the file named; the adapter shows as errored and the
 * server keeps serving the others.
 */
import t from 'tap';
import { closeSync, cpSync, mkdtempSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdapterError, loadPeftAdapter, readAdapterConfig } from '../../src/engine/lora/peft-adapter.js';
import { MAX_ADAPTER_CONFIG_BYTES, jsonNestingExceeds, patternKeyProblem } from '../../src/engine/lora/untrusted-input.js';
import { readModelSpec } from '../../src/engine/model/hf-config.js';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL, loadFixtureEngine } from '../helpers/engine.js';
import { buildTestApp } from '../helpers/app.js';

const root = mkdtempSync(join(tmpdir(), 'hostile-config-'));
const base = JSON.parse(readFileSync(join(FIXTURE_ADAPTERS, 'support', 'adapter_config.json'), 'utf8'));
let counter = 0;
/** A copy of the support adapter with adapter_config.json replaced by `content` (an object is merged into the real config). */
function adapterWith(content: string | Record<string, unknown> | ((path: string) => void)): string {
  const name = `hostile-${counter++}`;
  const d = join(root, name);
  cpSync(join(FIXTURE_ADAPTERS, 'support'), d, { recursive: true });
  const file = join(d, 'adapter_config.json');
  if (typeof content === 'function') content(file);
  else writeFileSync(file, typeof content === 'string' ? content : JSON.stringify({ ...base, ...content }));
  return name;
}
const nested = (depth: number) => '['.repeat(depth) + '1' + ']'.repeat(depth);
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

const cases: Array<[string, string | Record<string, unknown> | ((path: string) => void), RegExp]> = [
  [
    '64 MiB file (sparse)',
    (p) => {
      const fd = openSync(p, 'w');
      writeSync(fd, Buffer.from('{"r": 8,'), 0, 8, 0);
      writeSync(fd, Buffer.from('}'), 0, 1, (64 << 20) - 1);
      closeSync(fd);
    },
    /is 67108864 bytes; adapter configs over \d+ bytes are refused/,
  ],
  ['nested 100k deep at the top', nested(100_000), /nested more than \d+ levels deep/],
  ['r nested 100k deep', `{"r": ${nested(100_000)}, "lora_alpha": 16, "target_modules": ["q_proj"]}`, /nested more than \d+ levels deep/],
  ['bias nested deep', `{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "bias": ${nested(50_000)}}`, /nested more than/],
  ['not JSON', '{"r": 8,', /is not valid JSON/],
  ['empty', '', /is not valid JSON/],
  ['null', 'null', /is not a JSON object/],
  ['array', '[1, 2]', /is not a JSON object|r must be/],
  ['string', '"LORA"', /is not a JSON object/],
  ['r a string', { r: '8' }, /r must be a positive integer, got "8"/],
  ['r fractional', { r: 8.5 }, /r must be a positive integer/],
  ['r negative', { r: -8 }, /r must be a positive integer/],
  ['r zero', { r: 0 }, /r must be a positive integer/],
  ['r huge', { r: 1e12 }, /rank 1000000000000 is above this server's maximum/],
  ['r as an object', { r: { valueOf: 8 } }, /r must be a positive integer/],
  ['lora_alpha a string', { lora_alpha: '16' }, /lora_alpha must be a number/],
  ['lora_alpha null', { lora_alpha: null }, /lora_alpha must be a number/],
  ['lora_alpha absurd', { lora_alpha: 1e300 }, /lora_alpha must be a finite number of magnitude at most/],
  ['target_modules a number', { target_modules: 5 }, /target_modules must be/],
  ['target_modules of numbers', { target_modules: [1, 2] }, /target_modules must be/],
  ['target_modules an object', { target_modules: { q_proj: true } }, /target_modules must be/],
  ['target_modules empty', { target_modules: [] }, /target_modules must be/],
  ['target_modules unknown', { target_modules: ['q_proj', 'lm_head'] }, /not supported/],
  ['peft_type not LORA', { peft_type: 'IA3' }, /peft_type "IA3" is not supported/],
  ['peft_type an object', { peft_type: { a: 1 } }, /peft_type .* is not supported/],
  ['rank_pattern a string', { rank_pattern: 'q_proj' }, /rank_pattern must be an object/],
  ['rank_pattern an array', { rank_pattern: [8] }, /rank_pattern must be an object/],
  ['rank_pattern value a string', { rank_pattern: { q_proj: '8' } }, /rank_pattern values must be positive integers/],
  ['rank_pattern value huge', { rank_pattern: { q_proj: 4096 } }, /rank 4096 is above/],
  ['alpha_pattern value a string', { alpha_pattern: { q_proj: 'x' } }, /alpha_pattern values must be finite numbers/],
  ['alpha_pattern value null', { alpha_pattern: { q_proj: null } }, /alpha_pattern values must be finite numbers/],
  ['alpha_pattern an array', { alpha_pattern: [16] }, /alpha_pattern must be an object/],
  [
    'rank_pattern with 100k entries (over the size limit)',
    { rank_pattern: Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`layers.${i}.q_proj`, 8])) },
    /adapter configs over \d+ bytes are refused/,
  ],
  [
    'rank_pattern with 5000 entries',
    { rank_pattern: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`l${i}`, 8])) },
    /rank_pattern has 5000 entries; at most \d+/,
  ],
  [
    '100 regex keys',
    { rank_pattern: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`layers\\.${i}\\.q_proj`, 8])) },
    /more than 64 regular-expression keys/,
  ],
  ['catastrophic backtracking key (.*)*x', { rank_pattern: { '(.*)*x': 8 } }, /rank_pattern key "\(\.\*\)\*x" is not allowed/],
  ['catastrophic backtracking key (a|a)+$', { alpha_pattern: { '(a|a)+$': 8 } }, /alpha_pattern key .* is not allowed/],
  ['polynomial backtracking key .*.*.*.*.*.*.*.*z', { rank_pattern: { '.*.*.*.*.*.*.*.*z': 8 } }, /rank_pattern key .* is not allowed/],
  ['backreference key', { rank_pattern: { '(a*)\\1*b': 8 } }, /rank_pattern key .* is not allowed/],
  ['key too long', { rank_pattern: { ['q'.repeat(300)]: 8 } }, /rank_pattern key .* is not allowed/],
  ['invalid regex key', { rank_pattern: { '(': 8 } }, /rank_pattern key "\(" is not allowed/],
];

/**
 * "Quickly" as properties, not as a time bound a loaded machine can break: no file over the size limit is read
 * (the buffers allocated stay under the limit), patterns that could backtrack are refused before they run (the
 * messages say "is not allowed"), and a hang would end at the test's timeout. The time is printed.
 */
t.test('readAdapterConfig refuses each hostile config quickly, naming the file', async (t) => {
  const times: string[] = [];
  for (const [name, content, message] of cases) {
    const dir = join(root, adapterWith(content));
    const file = join(dir, 'adapter_config.json');
    const buffersBefore = process.memoryUsage().arrayBuffers;
    const started = performance.now();
    let error: unknown = null;
    try {
      readAdapterConfig(dir, 64);
    } catch (e) {
      error = e;
    }
    const ms = performance.now() - started;
    const buffersGrew = process.memoryUsage().arrayBuffers - buffersBefore;
    t.type(error, AdapterError, `${name}: an AdapterError (got ${(error as Error)?.name}: ${(error as Error)?.message?.slice(0, 160)})`);
    t.match((error as Error)?.message ?? '', message, `${name}: says why`);
    t.match((error as Error)?.message ?? '', new RegExp(`^${escape(file)}: `), `${name}: names the file`);
    t.ok(((error as Error)?.message ?? '').length < 1000, `${name}: a bounded message`);
    t.ok(buffersGrew <= MAX_ADAPTER_CONFIG_BYTES, `${name}: read no more than the ${MAX_ADAPTER_CONFIG_BYTES}-byte limit (buffers grew ${buffersGrew} bytes)`);
    times.push(`${name} ${ms.toFixed(1)} ms`);
  }
  t.comment(`refused in: ${times.join('; ')}`);
});

t.test('pattern keys: safe ones pass, backtracking ones are refused, and checking is fast', async (t) => {
  for (const key of [
    'q_proj',
    'model.layers.0.self_attn.q_proj',
    'layers\\.\\d+\\.mlp\\.down_proj',
    '.*up_proj',
    '^model\\.layers\\.(0|1)\\.mlp$',
    '(?:q|k|v)_proj',
    '(?<which>q|k)_proj',
    '[a-z_]+proj',
    'layers\\.[0-9]{1,2}\\.q_proj',
    '(q_proj)?',
    'a.*?b',
  ]) {
    t.equal(patternKeyProblem(key), null, `${key} is fine`);
  }
  for (const key of [
    '(a+)+',
    '(.*)*x',
    '(?:a|aa)+b',
    '(a|a){2,}',
    'a**',
    'a{2,}{3}',
    '.*.*.*',
    '\\w+\\w+\\w+x',
    '(a)\\1',
    '(?<n>a)\\k<n>',
    '(',
    '[',
    '',
    'x'.repeat(257),
  ]) {
    t.ok(patternKeyProblem(key), `${JSON.stringify(key.slice(0, 20))} is refused: ${patternKeyProblem(key)}`);
  }
  t.equal(jsonNestingExceeds('{"a": "[[[[[[[[[["}', 3), false, 'brackets in strings do not count');
  t.equal(jsonNestingExceeds('{"a": "\\"[[[["}', 3), false, 'escaped quotes are handled');
  t.equal(jsonNestingExceeds('[[[[1]]]]', 3), true);
  // Megabyte inputs: a nesting bomb stops at the limit, a long string is one pass (no time asserted).
  t.equal(jsonNestingExceeds('['.repeat(1 << 20), 64), true);
  t.equal(jsonNestingExceeds(`"${'x'.repeat(1 << 20)}"`, 64), false);
});

t.test('patterns that are safe still work (PEFT semantics kept)', async (t) => {
  const spec = readModelSpec(FIXTURE_MODEL);
  const ok = join(
    root,
    adapterWith({
      rank_pattern: {},
      alpha_pattern: { q_proj: 32, 'model.layers.0.self_attn.v_proj': 8, 'layers\\.\\d+\\.mlp\\.down_proj': 4, '.*up_proj': 2 },
    }),
  );
  const adapter = loadPeftAdapter('ok', ok, spec, 64);
  t.ok(adapter.modules.size > 0, 'loads');
  t.doesNotThrow(
    () => readAdapterConfig(join(root, adapterWith({ rank_pattern: { '^model\\.layers\\.(0|1)\\.self_attn\\.q_proj$': 8 } })), 64),
    'anchors and a group without a quantifier are fine',
  );
});

t.test('at start-up and through the admin API, a hostile config errors that adapter only', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hostile-root-'));
  cpSync(FIXTURE_ADAPTERS, dir, { recursive: true });
  const hostile = (name: string, text: string) => {
    cpSync(join(FIXTURE_ADAPTERS, 'sales'), join(dir, name), { recursive: true });
    writeFileSync(join(dir, name, 'adapter_config.json'), text);
  };
  hostile('redos', JSON.stringify({ ...base, rank_pattern: { '(.*)*x': 8 } }));
  hostile('deep', `{"r": ${nested(100_000)}}`);
  // Start-up is not held up: it completes (within the test's timeout) with both adapters refused.
  const engine = await loadFixtureEngine({ adaptersDir: dir });
  const app = await buildTestApp(engine);
  t.teardown(async () => {
    await app.close();
    await engine.close();
  });
  const list = (await app.inject({ url: '/v1/adapters' })).json().data as Array<{ name: string; status: string; error?: string }>;
  t.equal(list.find((a) => a.name === 'redos')?.status, 'errored');
  t.match(list.find((a) => a.name === 'redos')?.error, /rank_pattern key .* is not allowed/);
  t.equal(list.find((a) => a.name === 'deep')?.status, 'errored');
  t.match(list.find((a) => a.name === 'deep')?.error, /nested more than/);
  hostile('late', JSON.stringify({ ...base, alpha_pattern: { '(a+)+$': 1 } }));
  const res = await app.inject({ method: 'POST', url: '/v1/adapters', payload: { name: 'late', path: 'late' } });
  t.equal(res.statusCode, 422, 'refused, not 201');
  t.equal(res.json().error.code, 'adapter_errored');
  t.match(res.json().error.message, /Adapter late was not registered: .*alpha_pattern key .* is not allowed/);
  const gen = await app.inject({ method: 'POST', url: '/v1/generate?adapter=late', payload: { prompt: 'Hi', max_tokens: 2 } });
  t.equal(gen.json().error.code, 'adapter_not_found', 'a refused registration leaves nothing behind');
  t.equal(
    (await app.inject({ method: 'POST', url: '/v1/generate?adapter=support', payload: { prompt: 'Hi', max_tokens: 2 } })).statusCode,
    200,
    'the others serve',
  );
});
