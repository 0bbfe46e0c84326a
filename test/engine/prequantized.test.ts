/**
 * GPTQ and AWQ checkpoints (made here from llama-tiny by test/helpers/prequantized-checkpoint.ts, packed as
 * AutoGPTQ/GPTQModel and AutoAWQ pack them) read straight into MatMulNBits: the repacked weights dequantize to
 * exactly the known ones, the engine serves them with the same tokens as the float checkpoint quantized the same
 * way at build, and formats that are not supported are refused at start, naming the format.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointWeights } from '../../src/engine/model/weights.js';
import { readModelSpec } from '../../src/engine/model/hf-config.js';
import { PROJECTIONS, hfWeightName, projectionShape } from '../../src/engine/model/graph-builder.js';
import { dequantize } from '../../src/engine/model/quantize.js';
import { readPrequantizedLinear, readQuantizationConfig } from '../../src/engine/model/prequantized.js';
import { FIXTURE_MODEL, freshCacheDir, greedyRequest, loadFixtureEngine, reference } from '../helpers/engine.js';
import { writePrequantizedCheckpoint, type PackedFormat } from '../helpers/prequantized-checkpoint.js';

const scratch = mkdtempSync(join(tmpdir(), 'prequantized-'));
const spec = readModelSpec(FIXTURE_MODEL);

const FORMATS: Array<{ label: string; format: PackedFormat; group: number }> = [
  { label: 'GPTQ v1 4-bit group 32', format: { method: 'gptq', bits: 4, version: 'gptq', gIdx: 'trivial' }, group: 32 },
  { label: 'GPTQ v2 4-bit group 64', format: { method: 'gptq', bits: 4, version: 'gptq_v2', gIdx: 'none' }, group: 64 },
  { label: 'GPTQ v1 8-bit symmetric, one group per row', format: { method: 'gptq', bits: 8, version: 'gptq', gIdx: 'none' }, group: -1 },
  { label: 'AWQ GEMM 4-bit group 32', format: { method: 'awq', bits: 4 }, group: 32 },
];

for (const { label, format, group } of FORMATS) {
  t.test(`${label}: every projection dequantizes to exactly the packed weights`, async (t) => {
    const dir = join(scratch, label.replace(/\W+/g, '-'));
    const expected = writePrequantizedCheckpoint(FIXTURE_MODEL, dir, format, group);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const detected = readQuantizationConfig(config, 'config.json')!;
    t.equal(detected.method, format.method);
    t.equal(detected.bits, format.bits);
    const weights = new CheckpointWeights(dir);
    for (let layer = 0; layer < spec.numLayers; layer++) {
      for (const p of PROJECTIONS) {
        const [k, n] = projectionShape(spec, p);
        const name = hfWeightName(layer, p);
        const got = readPrequantizedLinear(weights, name.replace(/\.weight$/, ''), n, k, detected)!;
        t.same([...dequantize(got)], [...dequantize(expected.get(name)!)], `${name} [${n}, ${k}] (MatMulNBits block ${got.blockSize})`);
      }
    }
    t.equal(readPrequantizedLinear(weights, 'lm_head', spec.vocabSize, spec.hiddenSize, detected), null, 'a float tensor (the LM head) is not read as packed');
  });
}

t.test('a GPTQ 4-bit checkpoint serves the same tokens as the float checkpoint quantized the same way at build', async (t) => {
  const dir = join(scratch, 'gptq-serve');
  writePrequantizedCheckpoint(FIXTURE_MODEL, dir, { method: 'gptq', bits: 4, version: 'gptq', gIdx: 'trivial' }, 32);
  // The float checkpoint with --quantize int4 --quantize-block-size 32 gets byte-identical projections (block 32,
  // zero points); the embeddings and LM head are quantized from the same float values in both.
  const fromFloat = await loadFixtureEngine({ quantize: 'int4', quantizeBlockSize: 32, cacheDir: freshCacheDir() });
  const fromGptq = await loadFixtureEngine({ modelDir: dir, quantize: 'int4', quantizeBlockSize: 32, cacheDir: freshCacheDir() });
  t.teardown(async () => {
    await fromFloat.close();
    await fromGptq.close();
  });
  t.equal(fromGptq.baseWeights.format, 'gptq-int4 (group 32); other weights int4 (blocks of 32)');
  t.equal(fromGptq.baseWeights.bytes, fromFloat.baseWeights.bytes, 'the same bytes in the graph');
  for (const c of reference.cases.slice(0, 8)) {
    const [a, b] = await Promise.all([fromFloat.generate(greedyRequest(c)), fromGptq.generate(greedyRequest(c))]);
    t.same(b.tokenIds, a.tokenIds, `${c.adapter ?? 'base'}: same tokens`);
    t.same(b.logprobs, a.logprobs, `${c.adapter ?? 'base'}: same logprobs`);
  }
});

t.test('unsupported quantization formats are refused at start, naming the format and what is supported', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['bitsandbytes', { quant_method: 'bitsandbytes', load_in_4bit: true }, /quant_method "bitsandbytes" is not supported/],
    ['AWQ GEMV', { quant_method: 'awq', bits: 4, group_size: 128, version: 'gemv', zero_point: true }, /AWQ version "gemv" is not supported/],
    ['GPTQ 3-bit', { quant_method: 'gptq', bits: 3, group_size: 128 }, /GPTQ with bits 3 is not supported/],
    ['FP8', { quant_method: 'fp8' }, /quant_method "fp8" is not supported/],
  ];
  const base = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
  for (const [label, q, message] of cases) {
    t.throws(() => readQuantizationConfig({ ...base, quantization_config: q }, 'config.json'), { message }, label);
    t.throws(
      () => readQuantizationConfig({ ...base, quantization_config: q }, 'config.json'),
      { message: /Supported pre-quantized checkpoints: GPTQ .* AWQ GEMM/ },
      `${label}: names what is supported`,
    );
  }
  // The engine refuses at start (the graph build), not at the first request.
  const dir = join(scratch, 'bnb');
  writePrequantizedCheckpoint(FIXTURE_MODEL, dir, { method: 'awq', bits: 4 }, 32);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...base, quantization_config: { quant_method: 'bitsandbytes', load_in_4bit: true } }));
  await t.rejects(loadFixtureEngine({ modelDir: dir, cacheDir: freshCacheDir() }), { message: /bitsandbytes/ });
});

t.test('act-order GPTQ (a g_idx that reorders the input features) is refused naming the problem', async (t) => {
  const dir = join(scratch, 'act-order');
  writePrequantizedCheckpoint(FIXTURE_MODEL, dir, { method: 'gptq', bits: 4, version: 'gptq', gIdx: 'permuted' }, 32);
  await t.rejects(loadFixtureEngine({ modelDir: dir, cacheDir: freshCacheDir() }), { message: /g_idx reorders the input features/ });
});
