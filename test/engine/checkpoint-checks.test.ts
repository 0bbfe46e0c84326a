/** What start-up refuses about a checkpoint: unused tensors (naming one), unsupported architectures (naming it and what is supported). */
import t from 'tap';
import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES, freshCacheDir, loadFixtureEngine } from '../helpers/engine.js';
import { encodeSafetensors, readSafetensorsHeader, readTensorAsFloat32 } from '../../src/engine/model/safetensors.js';
import { SUPPORTED_ARCHITECTURES } from '../../src/engine/model/hf-config.js';

const QWEN3 = join(FIXTURES, 'qwen3-tiny');
const NO_ADAPTERS = mkdtempSync(join(tmpdir(), 'no-adapters-'));

/** A copy of the Qwen3 fixture with config.json edited and tensors added. */
function variant(editConfig: (c: Record<string, unknown>) => void, extra: Array<{ name: string; shape: number[] }> = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'checkpoint-'));
  cpSync(QWEN3, dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  editConfig(config);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  if (extra.length) {
    const header = readSafetensorsHeader(join(QWEN3, 'model.safetensors'));
    const tensors = [...header.tensors.values()].map((info) => ({
      name: info.name,
      dtype: 'F32' as const,
      shape: info.shape,
      data: readTensorAsFloat32(header, info.name),
    }));
    for (const e of extra) tensors.push({ name: e.name, dtype: 'F32', shape: e.shape, data: new Float32Array(e.shape.reduce((a, b) => a * b, 1)).fill(0.5) });
    writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  }
  return dir;
}

t.test('a Qwen3 checkpoint relabelled Qwen2ForCausalLM is refused, naming an unused q_norm/k_norm tensor', async (t) => {
  const dir = variant((c) => {
    c.architectures = ['Qwen2ForCausalLM'];
    c.attention_bias = false;
  });
  const cacheDir = freshCacheDir();
  await t.rejects(
    loadFixtureEngine({ modelDir: dir, adaptersDir: NO_ADAPTERS, cacheDir }),
    /tensor\(s\) that Qwen2ForCausalLM does not use: model\.layers\.\d+\.self_attn\.[qk]_norm\.weight.*q_norm\/k_norm belong to Qwen3ForCausalLM/,
  );
  t.same(readdirSync(cacheDir), [], 'refused from the headers, before any graph build');
});

t.test('an extra tensor of no known use is refused by name; rotary_emb.inv_freq is skipped as harmless', async (t) => {
  const extra = variant(() => {}, [{ name: 'model.layers.0.mlp.extra_scale', shape: [64] }]);
  const cacheDir = freshCacheDir();
  await t.rejects(loadFixtureEngine({ modelDir: extra, adaptersDir: NO_ADAPTERS, cacheDir }), /does not use: model\.layers\.0\.mlp\.extra_scale/);
  t.same(readdirSync(cacheDir), [], 'found after the build (what it read), and nothing of the refused build is cached');

  const harmless = variant(() => {}, [
    { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', shape: [16] },
    { name: 'lm_head.weight', shape: [384, 64] },
  ]);
  const logged: Array<{ obj: object; msg?: string }> = [];
  const log = { info: (obj: object, msg?: string) => logged.push({ obj, msg }), warn: () => {} };
  const { Engine } = await import('../../src/engine/engine.js');
  const { engineOptions } = await import('../helpers/engine.js');
  const engine = await Engine.load(engineOptions({ modelDir: harmless, adaptersDir: NO_ADAPTERS, cacheDir: freshCacheDir() }), log);
  t.teardown(() => engine.close());
  const skipped = logged.find((l) => l.msg?.startsWith('checkpoint tensors not used'))?.obj as { tensors: Array<{ tensor: string }> } | undefined;
  t.same(
    skipped?.tensors.map((x) => x.tensor).sort(),
    ['lm_head.weight', 'model.layers.0.self_attn.rotary_emb.inv_freq'],
    'both logged as skipped (lm_head.weight because the embeddings are tied)',
  );
});

t.test('an unsupported architecture is refused naming it and the supported ones', async (t) => {
  for (const architecture of ['Gemma2ForCausalLM', 'Phi3ForCausalLM', 'MixtralForCausalLM']) {
    const dir = variant((c) => (c.architectures = [architecture]));
    const error = await loadFixtureEngine({ modelDir: dir, adaptersDir: NO_ADAPTERS, cacheDir: freshCacheDir() }).then(
      () => null,
      (e: Error) => e,
    );
    t.match(error?.message, new RegExp(`architecture ${architecture} is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`), architecture);
  }
});
