/**
 * F16 and BF16 checkpoints. Conversion to float32 on load is exact, so an F16 (or BF16) checkpoint must
 * give the same numbers as an F32 checkpoint holding the same rounded values (checked to 1e-5). Against the
 * original float32 reference the rounding of the weights themselves changes the model; the justified bound
 * is relative: F16 keeps 11 significant bits (relative rounding 2^-11 ~ 4.9e-4 per weight), BF16 keeps 8
 * (2^-8 ~ 3.9e-3); through two layers of this deliberately peaked random model we require the mean absolute
 * difference of the last-position log-probabilities over the likely tokens (logprob > -10) to stay under
 * 0.05 for F16 and 0.3 for BF16, and the first greedy token to agree where the reference margin exceeds that.
 */
import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeSafetensors,
  readSafetensorsHeader,
  readTensorAsFloat32,
  halfToFloat,
  floatToHalf,
  floatToBfloat16,
  type SafetensorsDtype,
} from '../../src/engine/model/safetensors.js';
import { FIXTURE_MODEL, greedyRequest, loadFixtureEngine, reference } from '../helpers/engine.js';

function convertedCopy(dtype: SafetensorsDtype, storeAs: SafetensorsDtype): string {
  const dir = mkdtempSync(join(tmpdir(), `model-${dtype}-as-${storeAs}-`));
  cpSync(FIXTURE_MODEL, dir, { recursive: true });
  const header = readSafetensorsHeader(join(FIXTURE_MODEL, 'model.safetensors'));
  const round =
    dtype === 'F16'
      ? (v: number) => halfToFloat(floatToHalf(v))
      : dtype === 'BF16'
        ? (v: number) => new Float32Array(new Uint32Array([floatToBfloat16(v) << 16]).buffer)[0]
        : (v: number) => v;
  const tensors = [...header.tensors.values()].map((info) => ({
    name: info.name,
    dtype: storeAs,
    shape: info.shape,
    data: readTensorAsFloat32(header, info.name).map(round),
  }));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  return dir;
}

for (const dtype of ['F16', 'BF16'] as const) {
  t.test(`${dtype} checkpoint`, async (t) => {
    const native = await loadFixtureEngine({ modelDir: convertedCopy(dtype, dtype) });
    const asF32 = await loadFixtureEngine({ modelDir: convertedCopy(dtype, 'F32') });
    t.teardown(async () => {
      await native.close();
      await asF32.close();
    });
    const bound = dtype === 'F16' ? 0.05 : 0.3;
    for (const c of reference.cases.filter((x) => x.adapter === null || x.adapter === 'code')) {
      const a = await native.generate(greedyRequest(c, { maxTokens: 4 }), { promptLogprobs: true });
      const b = await asF32.generate(greedyRequest(c, { maxTokens: 4 }), { promptLogprobs: true });
      const exact = Math.max(...a.scores!.lastLogprobs.map((v, i) => Math.abs(v - b.scores!.lastLogprobs[i])));
      t.ok(exact < 1e-5, `${c.adapter ?? 'base'}: ${dtype} on disk equals the same values stored as F32 (max diff ${exact.toExponential(1)})`);
      const likely = c.last_logprobs.map((v, i) => [v, i] as const).filter(([v]) => v > -10);
      const meanDiff = likely.reduce((s, [v, i]) => s + Math.abs(a.scores!.lastLogprobs[i] - v), 0) / likely.length;
      t.ok(meanDiff < bound, `${c.adapter ?? 'base'}: mean |Δ logprob| vs float32 reference ${meanDiff.toFixed(4)} < ${bound}`);
      const sorted = [...c.last_logprobs].sort((x, y) => y - x);
      if (sorted[0] - sorted[1] > 2 * bound) t.equal(a.tokenIds[0], c.greedy_token_ids[0], 'clear first greedy token agrees');
    }
  });
}

t.test('the shipped reference weights are float32', async (t) => {
  const header = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'config.json'), 'utf8'));
  t.equal(header.dtype, 'float32');
});
