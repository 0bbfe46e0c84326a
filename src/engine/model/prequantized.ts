/**
 * Pre-quantized Hugging Face checkpoints (`quantization_config` in config.json) read straight into
 * MatMulNBits' layout (quantize.ts): the packed integers are repacked, never turned into float weights.
 *
 * Supported:
 * - GPTQ (`quant_method: "gptq"`, AutoGPTQ / GPTQModel / optimum), 4 or 8 bits: `qweight` int32 [K*bits/32, N]
 *   packed along K (low bits first), `qzeros` int32 [groups, N*bits/32] packed along N, `scales` [groups, N],
 *   optional `g_idx` [K]. The v1 format (`checkpoint_format` "gptq", the default) stores each zero point minus
 *   one; "gptq_v2" stores it as is. Act-order checkpoints whose g_idx is not the plain k / group_size are refused.
 * - AWQ GEMM (`quant_method: "awq"`, `version: "gemm"`, AutoAWQ), 4 bits with zero points: `qweight` int32
 *   [K, N/8] packed along N in the order 0 2 4 6 1 3 5 7, `qzeros` int32 [groups, N/8] packed the same way,
 *   `scales` [groups, N].
 * Anything else (bitsandbytes, AWQ GEMV/Marlin, EXL2, FP8, compressed-tensors, 2/3-bit GPTQ, ...) is refused
 * at start with a message naming the format and what is supported.
 *
 * A group size that is not a MatMulNBits block size (a power of two, at least 16) or -1 (one group per row) is
 * served with smaller blocks that repeat the group's scale and zero point.
 */
import type { CheckpointWeights } from './weights.js';
import { ModelConfigError } from './hf-config.js';
import { packBlockwise, type BlockQuantized, type Bits } from './quantize.js';

export interface PrequantizedFormat {
  method: 'gptq' | 'awq';
  bits: Bits;
  /** Input features per group of one scale and zero point; -1 = the whole row. */
  groupSize: number;
  /** Added to each stored zero point (GPTQ v1 stores zero - 1). */
  zeroOffset: number;
  /** For logs and /readyz, e.g. "gptq-int4 (group 128)". */
  label: string;
}

export const SUPPORTED_PREQUANTIZED =
  'GPTQ (4 or 8 bits, checkpoint_format gptq or gptq_v2, desc_act false or a trivial g_idx) and AWQ GEMM (4 bits with zero points)';

/** AWQ packs column j of each group of 8 into nibble AWQ_NIBBLE[j]. */
const AWQ_NIBBLE = [0, 4, 1, 5, 2, 6, 3, 7];

/** The checkpoint's pre-quantized format, null for a float checkpoint; throws for a format that cannot be served. */
export function readQuantizationConfig(config: Record<string, unknown>, file: string): PrequantizedFormat | null {
  const q = config.quantization_config as Record<string, unknown> | undefined;
  if (q === undefined || q === null) return null;
  const refuse = (what: string): never => {
    throw new ModelConfigError(
      file,
      `quantization_config: ${what} is not supported. Supported pre-quantized checkpoints: ${SUPPORTED_PREQUANTIZED}; or serve a float checkpoint with --quantize int8|int4`,
    );
  };
  if (typeof q !== 'object' || Array.isArray(q)) return refuse('a value that is not an object');
  const method = String(q.quant_method ?? (q.load_in_4bit || q.load_in_8bit ? 'bitsandbytes' : 'unknown')).toLowerCase();
  const bits = Number(q.bits ?? q.w_bit);
  const groupSize = Number(q.group_size ?? q.q_group_size ?? -1);
  if (!Number.isInteger(groupSize) || (groupSize !== -1 && groupSize < 1)) refuse(`group_size ${JSON.stringify(q.group_size ?? q.q_group_size)}`);
  if (method === 'gptq') {
    if (bits !== 4 && bits !== 8) refuse(`GPTQ with bits ${JSON.stringify(q.bits)}`);
    const format = String(q.checkpoint_format ?? 'gptq').toLowerCase();
    if (format !== 'gptq' && format !== 'gptq_v2') refuse(`GPTQ checkpoint_format "${format}"`);
    return { method, bits: bits as Bits, groupSize, zeroOffset: format === 'gptq' ? 1 : 0, label: `gptq-int${bits} (group ${groupSize})` };
  }
  if (method === 'awq') {
    const version = String(q.version ?? 'gemm').toLowerCase();
    if (version !== 'gemm') refuse(`AWQ version "${version}"`);
    if (bits !== 4) refuse(`AWQ with bits ${JSON.stringify(q.bits ?? q.w_bit)}`);
    if (q.zero_point === false) refuse('AWQ without zero points (zero_point false)');
    return { method, bits: 4, groupSize, zeroOffset: 0, label: `awq-int4 (group ${groupSize})` };
  }
  return refuse(`quant_method "${method}"`);
}

/** The largest MatMulNBits block (a power of two from 16 to 128) that divides both the group and K. */
export function blockSizeFor(groupSize: number, k: number): number {
  const group = groupSize === -1 ? k : groupSize;
  for (let b = 128; b >= 16; b /= 2) if (group % b === 0 && k % b === 0) return b;
  throw new Error(`no MatMulNBits block size (16..128, a power of two) divides group size ${group} and K ${k}`);
}

function int32s(bytes: Buffer): Int32Array {
  return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/**
 * The projection `prefix` (e.g. model.layers.0.self_attn.q_proj) of weight [n, k] as MatMulNBits blocks, or
 * null when the checkpoint holds it as a float `.weight` (layers left out of quantization, the LM head).
 */
export function readPrequantizedLinear(weights: CheckpointWeights, prefix: string, n: number, k: number, format: PrequantizedFormat): BlockQuantized | null {
  if (!weights.has(`${prefix}.qweight`)) return null;
  const { bits, method } = format;
  const perWord = 32 / bits;
  const mask = (1 << bits) - 1;
  const group = format.groupSize === -1 ? k : format.groupSize;
  const groups = Math.ceil(k / group);
  const fail = (problem: string): never => {
    throw new ModelConfigError(weights.modelDir, `${prefix}: ${problem} (${format.label})`);
  };
  if (n % perWord !== 0) fail(`N ${n} is not a multiple of ${perWord}`);
  let blockSize = 0;
  try {
    blockSize = blockSizeFor(group, k);
  } catch (e) {
    fail((e as Error).message);
  }
  const scales = weights.read(`${prefix}.scales`, [groups, n]);
  let value: (row: number, col: number) => number;
  let zero: (row: number, group: number) => number;
  if (method === 'gptq') {
    if (k % perWord !== 0) fail(`K ${k} is not a multiple of ${perWord}`);
    const qweight = int32s(weights.readRaw(`${prefix}.qweight`, 'I32', [k / perWord, n]));
    const qzeros = int32s(weights.readRaw(`${prefix}.qzeros`, 'I32', [groups, n / perWord]));
    if (weights.has(`${prefix}.g_idx`)) {
      const gIdx = int32s(weights.readRaw(`${prefix}.g_idx`, 'I32', [k]));
      for (let i = 0; i < k; i++) if (gIdx[i] !== Math.floor(i / group)) fail('g_idx reorders the input features (act-order); re-export with desc_act false');
    }
    value = (row, col) => (qweight[Math.floor(col / perWord) * n + row] >>> (bits * (col % perWord))) & mask;
    zero = (row, g) => ((qzeros[g * (n / perWord) + Math.floor(row / perWord)] >>> (bits * (row % perWord))) & mask) + format.zeroOffset;
  } else {
    const qweight = int32s(weights.readRaw(`${prefix}.qweight`, 'I32', [k, n / 8]));
    const qzeros = int32s(weights.readRaw(`${prefix}.qzeros`, 'I32', [groups, n / 8]));
    value = (row, col) => (qweight[col * (n / 8) + (row >> 3)] >>> (4 * AWQ_NIBBLE[row & 7])) & 15;
    zero = (row, g) => (qzeros[g * (n / 8) + (row >> 3)] >>> (4 * AWQ_NIBBLE[row & 7])) & 15;
  }
  const subBlocks = group / blockSize;
  for (let row = 0; row < n; row++) {
    for (let g = 0; g < groups; g++) {
      if (zero(row, g) > mask) fail(`a zero point of ${zero(row, g)} does not fit ${bits} bits (a GPTQ v1 zero of 0)`);
    }
  }
  return packBlockwise(
    n,
    k,
    bits,
    blockSize,
    value,
    (row, b) => scales[Math.floor(b / subBlocks) * n + row],
    (row, b) => zero(row, Math.floor(b / subBlocks)),
  );
}
