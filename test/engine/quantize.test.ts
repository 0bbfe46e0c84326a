/**
 * Block quantization in MatMulNBits' layout: packing round trips, the error bound of each mode, and that
 * onnxruntime's CPU MatMulNBits and GatherBlockQuantized read our bytes as we dequantize them (tiny graphs).
 */
import t from 'tap';
import * as ort from 'onnxruntime-node';
import { DataType, encodeModel, type InlineInitializer } from '../../src/engine/model/onnx-proto.js';
import { concatRows, dequantize, packBlockwise, quantizeBlockwise, type Bits } from '../../src/engine/model/quantize.js';

function random(n: number, seed: number, scale = 0.2): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = ((s >>> 8) / 2 ** 24 - 0.5) * scale;
  }
  return out;
}
const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

t.test('quantize then dequantize stays within half a step of each block', async (t) => {
  for (const [bits, symmetric] of [
    [8, true],
    [8, false],
    [4, true],
    [4, false],
  ] as Array<[Bits, boolean]>) {
    const n = 7;
    const k = 100; // not a multiple of the block: the last block is padded
    const w = random(n * k, 11);
    const q = quantizeBlockwise(w, n, k, bits, 32, symmetric);
    t.equal(q.packed.length, (n * 4 * (32 * bits)) / 8);
    t.equal(q.zeroPoints === null, symmetric);
    const back = dequantize(q);
    let worst = 0;
    for (let row = 0; row < n; row++) {
      for (let col = 0; col < k; col++) {
        const step = q.scales[row * 4 + Math.floor(col / 32)];
        worst = Math.max(worst, Math.abs(back[row * k + col] - w[row * k + col]) / step);
      }
    }
    t.ok(worst <= 0.5 + 1e-4, `bits ${bits} symmetric ${symmetric}: error ${worst.toFixed(3)} steps`);
  }
  const zeros = quantizeBlockwise(new Float32Array(64), 2, 32, 4, 32, false);
  t.same([...dequantize(zeros)], new Array(64).fill(0), 'an all-zero block dequantizes to zeros');
});

t.test('packBlockwise lays unpacked integers out like quantizeBlockwise; concatRows stacks rows', async (t) => {
  const q = quantizeBlockwise(random(3 * 64, 5), 3, 64, 4, 32, false);
  const ref = dequantize(q);
  const qv = (row: number, col: number) => {
    const byte = q.packed[row * 32 + (col >> 1)];
    return col & 1 ? byte >> 4 : byte & 15;
  };
  const zero = (row: number, block: number) => (q.zeroPoints![row] >> (4 * block)) & 15;
  const again = packBlockwise(3, 64, 4, 32, qv, (row, b) => q.scales[row * 2 + b], zero);
  t.same(again.packed, q.packed);
  t.same(again.zeroPoints, q.zeroPoints);
  const both = concatRows([q, again]);
  t.equal(both.n, 6);
  t.same([...dequantize(both)], [...ref, ...ref]);
});

async function runOnnx(
  nodes: Parameters<typeof encodeModel>[0]['nodes'],
  inline: InlineInitializer[],
  feeds: Record<string, ort.Tensor>,
  inputs: Parameters<typeof encodeModel>[0]['inputs'],
  outputs: Parameters<typeof encodeModel>[0]['outputs'],
) {
  const model = encodeModel({
    graphName: 'q',
    nodes,
    inputs,
    outputs,
    externalInitializers: [],
    inlineInitializers: inline,
    opsets: [
      { domain: '', version: 17 },
      { domain: 'com.microsoft', version: 1 },
    ],
  });
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

t.test('onnxruntime MatMulNBits (CPU) multiplies by exactly our dequantized weights', async (t) => {
  for (const [bits, symmetric] of [
    [8, true],
    [4, false],
    [4, true],
  ] as Array<[Bits, boolean]>) {
    const [m, n, k] = [3, 40, 100];
    const q = quantizeBlockwise(random(n * k, 7), n, k, bits, 32, symmetric);
    const blocks = Math.ceil(k / 32);
    const inline: InlineInitializer[] = [
      { name: 'B', dataType: DataType.UINT8, dims: [n, blocks, (32 * bits) / 8], raw: q.packed },
      { name: 'scales', dataType: DataType.FLOAT, dims: [n * blocks], raw: bytes(q.scales) },
    ];
    if (q.zeroPoints) inline.push({ name: 'zero_points', dataType: DataType.UINT8, dims: [q.zeroPoints.length], raw: q.zeroPoints });
    const a = random(m * k, 3);
    const out = await runOnnx(
      [
        {
          opType: 'MatMulNBits',
          domain: 'com.microsoft',
          inputs: ['A', ...inline.map((i) => i.name)],
          outputs: ['Y'],
          name: 'mm',
          attributes: { K: k, N: n, bits, block_size: 32, accuracy_level: 0 },
        },
      ],
      inline,
      { A: new ort.Tensor('float32', a, [m, k]) },
      [{ name: 'A', dataType: DataType.FLOAT, shape: ['m', k] }],
      [{ name: 'Y', dataType: DataType.FLOAT, shape: ['m', n] }],
    );
    const y = out.Y.data as Float32Array;
    const w = dequantize(q);
    let worst = 0;
    for (let r = 0; r < m; r++) {
      for (let c = 0; c < n; c++) {
        let sum = 0;
        for (let i = 0; i < k; i++) sum += a[r * k + i] * w[c * k + i];
        worst = Math.max(worst, Math.abs(sum - y[r * n + c]));
      }
    }
    t.ok(worst < 1e-6, `bits ${bits} symmetric ${symmetric}: |MatMulNBits - ours| = ${worst.toExponential(2)}`);
  }
});

t.test("onnxruntime GatherBlockQuantized (CPU) reads MatMulNBits' packed values as embeddings (one shared copy)", async (t) => {
  for (const [bits, symmetric] of [
    [8, true],
    [4, false],
  ] as Array<[Bits, boolean]>) {
    const [v, h] = [20, 64];
    const blocks = h / 32;
    const q = quantizeBlockwise(random(v * h, 9), v, h, bits, 32, symmetric);
    // The layout quantized-weights.ts writes: data [v, blocks, blob] shared by both ops; scales and zero points per op.
    const inline: InlineInitializer[] = [
      { name: 'data', dataType: DataType.UINT8, dims: [v, blocks, (32 * bits) / 8], raw: q.packed },
      { name: 'gather_scales', dataType: DataType.FLOAT, dims: [v, blocks, 1], raw: bytes(q.scales) },
      { name: 'scales', dataType: DataType.FLOAT, dims: [v, blocks], raw: bytes(q.scales) },
    ];
    const gatherInputs = ['data', 'ids', 'gather_scales'];
    const matMulInputs = ['A', 'data', 'scales'];
    if (q.zeroPoints) {
      const unpacked = Uint8Array.from(
        { length: v * blocks },
        (_, i) => (q.zeroPoints![Math.floor(i / blocks) * Math.ceil(blocks / 2) + ((i % blocks) >> 1)] >> (((i % blocks) & 1) * 4)) & 15,
      );
      inline.push({ name: 'gather_zero_points', dataType: DataType.UINT8, dims: [v, blocks, 1], raw: unpacked });
      inline.push({ name: 'zero_points', dataType: DataType.UINT8, dims: [v, q.zeroPoints.length / v], raw: q.zeroPoints });
      gatherInputs.push('gather_zero_points');
      matMulInputs.push('zero_points');
    }
    const ids = [3, 0, 19];
    const a = random(h, 4);
    const out = await runOnnx(
      [
        {
          opType: 'GatherBlockQuantized',
          domain: 'com.microsoft',
          inputs: gatherInputs,
          outputs: ['E'],
          name: 'g',
          attributes: { bits, block_size: 32, gather_axis: 0, quantize_axis: 2 },
        },
        {
          opType: 'MatMulNBits',
          domain: 'com.microsoft',
          inputs: matMulInputs,
          outputs: ['Y'],
          name: 'mm',
          attributes: { K: h, N: v, bits, block_size: 32, accuracy_level: 0 },
        },
      ],
      inline,
      { ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [3]), A: new ort.Tensor('float32', a, [1, h]) },
      [
        { name: 'ids', dataType: DataType.INT64, shape: ['t'] },
        { name: 'A', dataType: DataType.FLOAT, shape: [1, h] },
      ],
      [
        { name: 'E', dataType: DataType.FLOAT, shape: ['t', blocks, 32] },
        { name: 'Y', dataType: DataType.FLOAT, shape: [1, v] },
      ],
    );
    const w = dequantize(q);
    t.same(
      [...(out.E.data as Float32Array)],
      ids.flatMap((id) => [...w.subarray(id * h, (id + 1) * h)]),
      `bits ${bits}: gathered rows`,
    );
    const y = out.Y.data as Float32Array;
    let worst = 0;
    for (let c = 0; c < v; c++) {
      let sum = 0;
      for (let i = 0; i < h; i++) sum += a[i] * w[c * h + i];
      worst = Math.max(worst, Math.abs(sum - y[c]));
    }
    t.ok(worst < 1e-6, `bits ${bits}: the LM head product from the same bytes (${worst.toExponential(2)})`);
  }
});
