/**
 * Tied embeddings over a quantized base: when the embeddings and the LM head are in the same blocks (int4; int8
 * with --quantize-block-size 32), GatherBlockQuantized and MatMulNBits read one copy of the packed values, so a
 * tied checkpoint's graph holds exactly one V x H packed matrix fewer than the same weights untied. In different
 * blocks (int8 by default: embeddings 32, LM head 128) each reads its own, and tied and untied hold the same bytes.
 * Either way the tied base answers exactly as the untied one.
 */
import t from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointWeights } from '../../src/engine/model/weights.js';
import { encodeSafetensors } from '../../src/engine/model/safetensors.js';
import { FIXTURE_MODEL, freshCacheDir, greedyRequest, loadFixtureEngine, reference } from '../helpers/engine.js';

/** llama-tiny with lm_head.weight := embed_tokens (untied copy) or dropped (tie_word_embeddings true). */
function writeVariant(tied: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), tied ? 'tied-' : 'untied-'));
  for (const f of readdirSync(FIXTURE_MODEL)) if (f !== 'model.safetensors' && f !== 'config.json') copyFileSync(join(FIXTURE_MODEL, f), join(dir, f));
  const config = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, tie_word_embeddings: tied }));
  const weights = new CheckpointWeights(FIXTURE_MODEL);
  const header = JSON.parse(
    readFileSync(join(FIXTURE_MODEL, 'model.safetensors'))
      .subarray(8, 8 + Number(readFileSync(join(FIXTURE_MODEL, 'model.safetensors')).readBigUInt64LE(0)))
      .toString('utf8'),
  );
  const tensors = Object.keys(header)
    .filter((n) => n !== '__metadata__' && n !== 'lm_head.weight')
    .map((name) => ({ name, dtype: 'F32' as const, shape: weights.info(name).shape, data: weights.read(name, weights.info(name).shape) }));
  if (!tied) tensors.push({ ...tensors.find((x) => x.name === 'model.embed_tokens.weight')!, name: 'lm_head.weight' });
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  return dir;
}

t.test('int4 and int8: a tied base shares its packed matrix when both uses have the same blocks, and answers as the untied one', async (t) => {
  const [tiedDir, untiedDir] = [writeVariant(true), writeVariant(false)];
  const { vocab_size: v, hidden_size: h } = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'config.json'), 'utf8'));
  for (const [quantize, quantizeBlockSize, savedBytes, label] of [
    ['int4', undefined, v * h * 0.5, `one packed ${v} x ${h} matrix fewer`],
    ['int8', 32, v * h, `one packed ${v} x ${h} matrix fewer`],
    ['int8', undefined, 0, 'the same bytes: the embeddings (blocks of 32) and the LM head each have their own'],
  ] as const) {
    const name = `${quantize}${quantizeBlockSize ? ` --quantize-block-size ${quantizeBlockSize}` : ''}`;
    const tied = await loadFixtureEngine({ modelDir: tiedDir, quantize, quantizeBlockSize, cacheDir: freshCacheDir() });
    const untied = await loadFixtureEngine({ modelDir: untiedDir, quantize, quantizeBlockSize, cacheDir: freshCacheDir() });
    t.equal(untied.baseWeights.bytes - tied.baseWeights.bytes, savedBytes, `${name}: ${label}`);
    for (const c of reference.cases.slice(0, 4)) {
      const [a, b] = await Promise.all([tied.generate(greedyRequest(c)), untied.generate(greedyRequest(c))]);
      t.same(a.tokenIds, b.tokenIds, `${name} ${c.adapter ?? 'base'}: same tokens`);
      t.same(a.logprobs, b.logprobs, `${name} ${c.adapter ?? 'base'}: same logprobs`);
    }
    await tied.close();
    await untied.close();
  }
});
