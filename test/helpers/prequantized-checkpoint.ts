/**
 * Writes GPTQ and AWQ checkpoints from a float one, the way AutoGPTQ/GPTQModel and AutoAWQ lay them out, so the
 * pre-quantized readers can be tested without a model hub: each projection is quantized with our own
 * quantizeBlockwise (so the exact dequantized weights are known), then packed in the checkpoint's format.
 */
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointWeights } from '../../src/engine/model/weights.js';
import { encodeSafetensors } from '../../src/engine/model/safetensors.js';
import { quantizeBlockwise, type BlockQuantized, type Bits } from '../../src/engine/model/quantize.js';

export type PackedFormat = { method: 'gptq'; bits: Bits; version: 'gptq' | 'gptq_v2'; gIdx: 'none' | 'trivial' | 'permuted' } | { method: 'awq'; bits: 4 };

const AWQ_NIBBLE = [0, 4, 1, 5, 2, 6, 3, 7];

function unpack(q: BlockQuantized) {
  const blocks = Math.ceil(q.k / q.blockSize);
  const blob = (q.blockSize * q.bits) / 8;
  const zpRow = Math.ceil((blocks * q.bits) / 8);
  const get = (data: Uint8Array, base: number, i: number) => (q.bits === 8 ? data[base + i] : (data[base + (i >> 1)] >> ((i & 1) * 4)) & 15);
  return {
    value: (row: number, col: number) => get(q.packed, (row * blocks + Math.floor(col / q.blockSize)) * blob, col % q.blockSize),
    zero: (row: number, block: number) => (q.zeroPoints ? get(q.zeroPoints, row * zpRow, block) : 1 << (q.bits - 1)),
    scale: (row: number, block: number) => q.scales[row * blocks + block],
    groups: blocks,
  };
}

/** The tensors of one projection in the given format (qweight, qzeros, scales, g_idx). */
export function packProjection(prefix: string, q: BlockQuantized, format: PackedFormat) {
  const { n, k, bits } = q;
  const u = unpack(q);
  const perWord = 32 / bits;
  const scales = new Float32Array(u.groups * n);
  for (let g = 0; g < u.groups; g++) for (let row = 0; row < n; row++) scales[g * n + row] = u.scale(row, g);
  const out: Array<{ name: string; dtype: 'I32'; shape: number[]; data: Int32Array } | { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }> =
    [];
  if (format.method === 'gptq') {
    const offset = format.version === 'gptq' ? 1 : 0;
    const qweight = new Int32Array((k / perWord) * n);
    for (let col = 0; col < k; col++)
      for (let row = 0; row < n; row++) qweight[Math.floor(col / perWord) * n + row] |= u.value(row, col) << (bits * (col % perWord));
    const qzeros = new Int32Array(u.groups * (n / perWord));
    for (let g = 0; g < u.groups; g++)
      for (let row = 0; row < n; row++)
        qzeros[g * (n / perWord) + Math.floor(row / perWord)] |= ((u.zero(row, g) - offset) & ((1 << bits) - 1)) << (bits * (row % perWord));
    out.push(
      { name: `${prefix}.qweight`, dtype: 'I32', shape: [k / perWord, n], data: qweight },
      { name: `${prefix}.qzeros`, dtype: 'I32', shape: [u.groups, n / perWord], data: qzeros },
    );
    if (format.gIdx !== 'none') {
      const gIdx = Int32Array.from({ length: k }, (_, i) => Math.floor(i / q.blockSize));
      if (format.gIdx === 'permuted') [gIdx[0], gIdx[k - 1]] = [gIdx[k - 1], gIdx[0]];
      out.push({ name: `${prefix}.g_idx`, dtype: 'I32', shape: [k], data: gIdx });
    }
  } else {
    const qweight = new Int32Array(k * (n / 8));
    for (let col = 0; col < k; col++) for (let row = 0; row < n; row++) qweight[col * (n / 8) + (row >> 3)] |= u.value(row, col) << (4 * AWQ_NIBBLE[row & 7]);
    const qzeros = new Int32Array(u.groups * (n / 8));
    for (let g = 0; g < u.groups; g++) for (let row = 0; row < n; row++) qzeros[g * (n / 8) + (row >> 3)] |= u.zero(row, g) << (4 * AWQ_NIBBLE[row & 7]);
    out.push(
      { name: `${prefix}.qweight`, dtype: 'I32', shape: [k, n / 8], data: qweight },
      { name: `${prefix}.qzeros`, dtype: 'I32', shape: [u.groups, n / 8], data: qzeros },
    );
  }
  out.push({ name: `${prefix}.scales`, dtype: 'F32', shape: [u.groups, n], data: scales });
  return out;
}

export function quantizationConfig(format: PackedFormat, groupSize: number): Record<string, unknown> {
  return format.method === 'gptq'
    ? {
        quant_method: 'gptq',
        bits: format.bits,
        group_size: groupSize,
        desc_act: format.gIdx === 'permuted',
        sym: format.bits === 8,
        checkpoint_format: format.version,
      }
    : { quant_method: 'awq', bits: 4, group_size: groupSize, zero_point: true, version: 'gemm' };
}

/**
 * Writes `dst`: the float checkpoint `src` with every projection (`*_proj.weight`) quantized (`groupSize`
 * along K; int8 symmetric, int4 with zero points, as --quantize does) and packed in `format`. Returns the
 * quantized projections by name, to compare the reader's result against.
 */
export function writePrequantizedCheckpoint(
  src: string,
  dst: string,
  format: PackedFormat,
  groupSize: number,
  /** Projections left in float, as a checkpoint made with modules_to_not_convert has them. */
  keepFloat: (name: string) => boolean = () => false,
): Map<string, BlockQuantized> {
  mkdirSync(dst, { recursive: true });
  for (const f of readdirSync(src)) if (f !== 'model.safetensors' && f !== 'config.json') copyFileSync(join(src, f), join(dst, f));
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dst, 'config.json'), JSON.stringify({ ...config, quantization_config: quantizationConfig(format, groupSize) }, null, 2));
  const weights = new CheckpointWeights(src);
  const quantized = new Map<string, BlockQuantized>();
  const tensors: Parameters<typeof encodeSafetensors>[0] = [];
  const header = JSON.parse(
    readFileSync(join(src, 'model.safetensors'))
      .subarray(8, 8 + Number(readFileSync(join(src, 'model.safetensors')).readBigUInt64LE(0)))
      .toString('utf8'),
  ) as Record<string, unknown>;
  for (const name of Object.keys(header).filter((n) => n !== '__metadata__')) {
    const { shape } = weights.info(name);
    const data = weights.read(name, shape);
    if (!name.endsWith('_proj.weight') || keepFloat(name)) {
      tensors.push({ name, dtype: 'F32', shape, data });
      continue;
    }
    const [n, k] = shape;
    const q = quantizeBlockwise(data, n, k, format.bits, groupSize === -1 ? k : groupSize, format.bits === 8);
    quantized.set(name, q);
    tensors.push(...packProjection(name.replace(/\.weight$/, ''), q, format));
  }
  writeFileSync(join(dst, 'model.safetensors'), encodeSafetensors(tensors));
  return quantized;
}
