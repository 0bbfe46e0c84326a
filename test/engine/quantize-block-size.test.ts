/**
 * The quantization block size: the modes' defaults, the operator's override (--quantize-block-size), blocks
 * shortened for a K below the block, embeddings blocks that tile the hidden size, and refusal of a size
 * MatMulNBits does not take.
 */
import t from 'tap';
import { MODE_FORMAT } from '../../src/engine/model/quantize.js';
import { embeddingBlockSize, weightBlockSize } from '../../src/engine/model/quantized-weights.js';
import { join } from 'node:path';
import { buildDecoderGraph } from '../../src/engine/model/graph-builder.js';
import { readModelSpec } from '../../src/engine/model/hf-config.js';
import { CheckpointWeights } from '../../src/engine/model/weights.js';
import { DataType } from '../../src/engine/model/onnx-proto.js';
import { FIXTURES, freshCacheDir, greedyRequest, loadFixtureEngine, reference } from '../helpers/engine.js';

t.test('defaults: projections and LM head in blocks of 128; the embeddings in 32 (int8) and 128 (int4)', async (t) => {
  t.same(
    [MODE_FORMAT.int8.blockSize, MODE_FORMAT.int8.embeddingBlockSize, MODE_FORMAT.int4.blockSize, MODE_FORMAT.int4.embeddingBlockSize],
    [128, 32, 128, 128],
  );
});

t.test('a K shorter than the block gets the power of two that covers it, from 16', async (t) => {
  t.equal(weightBlockSize(4864, 128), 128);
  t.equal(weightBlockSize(688, 128), 128, 'longer than the block: padded, not shortened');
  t.equal(weightBlockSize(64, 128), 64);
  t.equal(weightBlockSize(40, 128), 64);
  t.equal(weightBlockSize(8, 32), 16);
});

t.test('embedding blocks divide the hidden size: the block, or a power-of-two fraction of it down to 16', async (t) => {
  t.equal(embeddingBlockSize(896, 128), 128);
  t.equal(embeddingBlockSize(2880, 128), 64);
  t.equal(embeddingBlockSize(64, 128), 64);
  t.equal(embeddingBlockSize(200, 32), null, 'no block of 16 or more tiles 200: the embeddings stay float');
});

t.test('--quantize-block-size 64 on int4: fewer bytes than 16, and still serves', async (t) => {
  const byDefault = await loadFixtureEngine({ quantize: 'int4', quantizeBlockSize: 16, cacheDir: freshCacheDir() });
  const larger = await loadFixtureEngine({ quantize: 'int4', quantizeBlockSize: 64, cacheDir: freshCacheDir() });
  t.teardown(async () => {
    await byDefault.close();
    await larger.close();
  });
  t.ok(larger.baseWeights.bytes < byDefault.baseWeights.bytes, `block 64 ${larger.baseWeights.bytes} bytes < block 16 ${byDefault.baseWeights.bytes}`);
  const c = reference.cases[0];
  const out = await larger.generate(greedyRequest(c));
  t.equal(out.tokenIds.length, c.greedy_token_ids.length);
});

t.test('a block size MatMulNBits does not take is refused at build', async (t) => {
  await t.rejects(
    loadFixtureEngine({ quantize: 'int4', quantizeBlockSize: 48, cacheDir: freshCacheDir() }),
    /quantize block size 48: MatMulNBits takes a power of two from 16/,
  );
});

t.test(
  'a tied embedding and LM head: int8 keeps the gather in its own blocks of 32 and the head in the projections blocks; int4 shares one matrix',
  async (t) => {
    const dir = join(FIXTURES, 'qwen3-tiny');
    const spec = readModelSpec(dir);
    t.ok(spec.tieWordEmbeddings, 'the fixture ties them');
    const H = spec.hiddenSize;
    for (const [quantize, blockSize, gatherBlock, shared] of [
      ['int8', 128, 32, false],
      ['int8', 32, 32, true],
      ['int4', 128, 64, true],
    ] as const) {
      const dims = new Map<string, number[]>();
      const types = new Map<string, string>();
      const model = buildDecoderGraph(
        spec,
        new CheckpointWeights(dir),
        { maxSequenceLength: 64, lora: false, attention: 'packed', quantize, quantizeBlockSize: blockSize },
        (name, data, d) => {
          dims.set(name, d);
          types.set(name, data.constructor.name);
        },
      );
      const gather = model.nodes.find((n) => n.opType === 'GatherBlockQuantized')!;
      const head = model.nodes.filter((n) => n.opType === 'MatMulNBits').at(-1)!;
      const label = `${quantize} --quantize-block-size ${blockSize}`;
      t.equal(gather.attributes!.block_size, gatherBlock, `${label}: gather blocks`);
      t.equal(head.attributes!.block_size, Math.min(blockSize, H), `${label}: LM head blocks (K = ${H})`);
      t.equal(head.attributes!.N, spec.vocabSize, `${label}: the last MatMulNBits is the LM head`);
      t.equal(gather.inputs[0] === head.inputs[1], shared, `${label}: ${shared ? 'one' : 'two'} packed matrices`);
      t.same(
        dims.get(gather.inputs[0]),
        [spec.vocabSize, H / gatherBlock, (gatherBlock * (quantize === 'int8' ? 8 : 4)) / 8],
        `${label}: the gather's matrix in its blocks`,
      );
      t.equal(types.get(gather.inputs[2]), 'Uint16Array', `${label}: the gather's scales are float16 (as llama.cpp's Q8_0 / Q4_0)`);
      const cast = model.nodes.find((n) => n.inputs[0] === gather.outputs[0]);
      t.same([cast?.opType, cast?.attributes?.to], ['Cast', DataType.FLOAT], `${label}: its rows are cast back to float32`);
    }
  },
);
