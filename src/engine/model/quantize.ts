/**
 * Weight-only block quantization in the layout of onnxruntime's com.microsoft MatMulNBits (and
 * GatherBlockQuantized, whose uint8 layout is the same bytes): a weight W [N, K] (the HF `[out, in]` layout)
 * is cut along K into blocks of `blockSize`; each block of each row has a float scale and an unsigned zero
 * point, and w = (q - zero) * scale. Packed as B [N, ceil(K/blockSize), blockSize*bits/8] uint8, 4-bit values
 * low nibble first; scales [N, blocks]; zero points [N, ceil(blocks*bits/8)] uint8 packed the same way, or
 * none (then MatMulNBits uses 2^(bits-1)).
 */

export type Bits = 4 | 8;

/** `--quantize`: how float weights of the base are stored in the graph. */
export type QuantizeMode = 'none' | 'int8' | 'int4';

export interface BlockQuantized {
  bits: Bits;
  blockSize: number;
  /** Rows (output features). */
  n: number;
  /** Columns (input features), the quantized axis. */
  k: number;
  /** [n, blocks, blockSize*bits/8]. */
  packed: Uint8Array;
  /** [n, blocks]. */
  scales: Float32Array;
  /** [n, ceil(blocks*bits/8)] packed like `packed`, or null for the default zero point 2^(bits-1). */
  zeroPoints: Uint8Array | null;
}

/**
 * The choices of the `int8` and `int4` modes (measured on this machine, docs/benchmarks.md "Quantized base"):
 * - `blockSize`, the projections' and the LM head's: 128 along K (GPTQ's and AWQ's usual group size; llama.cpp's
 *   Q8_0/Q4_0 use 32). onnxruntime's packed copy of a MatMulNBits weight carries about 12 bytes per block beside
 *   the values, so on a 100M-parameter model 128 against 32 holds ~30 MiB less and decodes 6-18% faster.
 * - `embeddingBlockSize`, the embedding matrix's (GatherBlockQuantized): int8 32, int4 128. The embeddings are
 *   what the int8 faithfulness criterion is sensitive to: with them at 64 the Qwen3 reference loses greedy tokens
 *   of clear margin that 32 keeps, while the LM head at 64 (a whole row there) keeps all of them
 *   (test/engine/reference-quantized.test.ts). A gather reads only the rows of the tokens it is given, so the
 *   smaller block costs memory only as rows are used, not bandwidth per token. When the embedding matrix and
 *   the LM head are one tied matrix but their blocks differ, the graph holds it twice (one per format): the
 *   head's copy is prepacked and its file pages released, the gather's is mapped from the file.
 * int8 is symmetric (the default zero point, as Q8_0), int4 has a zero point per block (min/max), which Q4_0
 * lacks. `--quantize-block-size` sets the projections' and the LM head's block; the embeddings' is then the
 * smaller of the two.
 */
export const MODE_FORMAT: Record<Exclude<QuantizeMode, 'none'>, { bits: Bits; blockSize: number; embeddingBlockSize: number; symmetric: boolean }> = {
  int8: { bits: 8, blockSize: 128, embeddingBlockSize: 32, symmetric: true },
  int4: { bits: 4, blockSize: 128, embeddingBlockSize: 128, symmetric: false },
};

export const blocksOf = (k: number, blockSize: number) => Math.ceil(k / blockSize);
export const zeroPointBytesPerRow = (blocks: number, bits: Bits) => Math.ceil((blocks * bits) / 8);

/** Writes a `bits`-wide value at element `index` of a packed row (low bits first). */
function put(out: Uint8Array, base: number, index: number, bits: Bits, value: number): void {
  if (bits === 8) out[base + index] = value;
  else out[base + (index >> 1)] |= (index & 1) === 0 ? value : value << 4;
}

function get(data: Uint8Array, base: number, index: number, bits: Bits): number {
  if (bits === 8) return data[base + index];
  const byte = data[base + (index >> 1)];
  return (index & 1) === 0 ? byte & 0x0f : byte >> 4;
}

/**
 * Quantizes W [n, k] (row-major) block-wise along k. Symmetric: scale = max|w| / (2^(bits-1) - 1) and the
 * default zero point; asymmetric: the block's [min, max] (widened to hold 0, so zeros stay exact) mapped onto
 * [0, 2^bits - 1] with a zero point per block. A k that is not a multiple of the block size pads the last
 * block with zeros.
 */
export function quantizeBlockwise(w: Float32Array, n: number, k: number, bits: Bits, blockSize: number, symmetric: boolean): BlockQuantized {
  if (w.length !== n * k) throw new Error(`quantizeBlockwise: ${w.length} values for [${n}, ${k}]`);
  const blocks = blocksOf(k, blockSize);
  const blob = (blockSize * bits) / 8;
  const packed = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  const zpRow = zeroPointBytesPerRow(blocks, bits);
  const zeroPoints = symmetric ? null : new Uint8Array(n * zpRow);
  const qmax = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocks; b++) {
      const from = row * k + b * blockSize;
      const to = row * k + Math.min((b + 1) * blockSize, k);
      let scale: number;
      let zero: number;
      if (symmetric) {
        let amax = 0;
        for (let i = from; i < to; i++) amax = Math.max(amax, Math.abs(w[i]));
        scale = amax / (mid - 1);
        zero = mid;
      } else {
        let lo = 0;
        let hi = 0;
        for (let i = from; i < to; i++) {
          lo = Math.min(lo, w[i]);
          hi = Math.max(hi, w[i]);
        }
        scale = (hi - lo) / qmax;
        zero = scale === 0 ? 0 : Math.min(qmax, Math.max(0, Math.round(-lo / scale)));
      }
      scale = Math.fround(scale);
      scales[row * blocks + b] = scale;
      if (zeroPoints) put(zeroPoints, row * zpRow, b, bits, zero);
      const base = (row * blocks + b) * blob;
      const inv = scale === 0 ? 0 : 1 / scale;
      for (let i = 0; i < blockSize; i++) {
        const x = from + i < to ? w[from + i] : 0;
        put(packed, base, i, bits, Math.min(qmax, Math.max(0, Math.round(x * inv) + zero)));
      }
    }
  }
  return { bits, blockSize, n, k, packed, scales, zeroPoints };
}

/** The float weight [n, k] that MatMulNBits multiplies by: (q - zero) * scale. */
export function dequantize(q: BlockQuantized): Float32Array {
  const { n, k, bits, blockSize } = q;
  const blocks = blocksOf(k, blockSize);
  const blob = (blockSize * bits) / 8;
  const zpRow = zeroPointBytesPerRow(blocks, bits);
  const out = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocks; b++) {
      const scale = q.scales[row * blocks + b];
      const zero = q.zeroPoints ? get(q.zeroPoints, row * zpRow, b, bits) : 1 << (bits - 1);
      const base = (row * blocks + b) * blob;
      for (let i = 0; i < blockSize && b * blockSize + i < k; i++) out[row * k + b * blockSize + i] = (get(q.packed, base, i, bits) - zero) * scale;
    }
  }
  return out;
}

/**
 * Builds a BlockQuantized from unpacked integer values: q(row, col) and zero(row, block) in [0, 2^bits), and
 * scale(row, block). The pre-quantized readers (prequantized.ts) use it to lay GPTQ/AWQ tensors out for
 * MatMulNBits without going through float weights.
 */
export function packBlockwise(
  n: number,
  k: number,
  bits: Bits,
  blockSize: number,
  value: (row: number, col: number) => number,
  scale: (row: number, block: number) => number,
  zero: ((row: number, block: number) => number) | null,
): BlockQuantized {
  const blocks = blocksOf(k, blockSize);
  const blob = (blockSize * bits) / 8;
  const packed = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  const zpRow = zeroPointBytesPerRow(blocks, bits);
  const zeroPoints = zero ? new Uint8Array(n * zpRow) : null;
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocks; b++) {
      scales[row * blocks + b] = scale(row, b);
      if (zeroPoints) put(zeroPoints, row * zpRow, b, bits, zero!(row, b));
      const base = (row * blocks + b) * blob;
      for (let i = 0; i < blockSize && b * blockSize + i < k; i++) put(packed, base, i, bits, value(row, b * blockSize + i));
    }
  }
  return { bits, blockSize, n, k, packed, scales, zeroPoints };
}

/** Whether `parts` can be stacked into one weight: the same bits, block size, K and zero points or none. */
export function canConcatRows(parts: BlockQuantized[]): boolean {
  const [first] = parts;
  return parts.every((p) => p.bits === first.bits && p.blockSize === first.blockSize && p.k === first.k && !p.zeroPoints === !first.zeroPoints);
}

/** Stacks quantized weights along N (rows), e.g. to fuse projections that share an input. */
export function concatRows(parts: BlockQuantized[]): BlockQuantized {
  if (parts.length === 1) return parts[0];
  if (!canConcatRows(parts)) throw new Error('concatRows: parts differ in bits, block size, K or zero points');
  const [first] = parts;
  const cat = <T extends Uint8Array | Float32Array>(arrays: T[], make: (n: number) => T): T => {
    const out = make(arrays.reduce((s, a) => s + a.length, 0));
    let at = 0;
    for (const a of arrays) {
      out.set(a, at);
      at += a.length;
    }
    return out;
  };
  return {
    ...first,
    n: parts.reduce((s, p) => s + p.n, 0),
    packed: cat(
      parts.map((p) => p.packed),
      (n) => new Uint8Array(n),
    ),
    scales: cat(
      parts.map((p) => p.scales),
      (n) => new Float32Array(n),
    ),
    zeroPoints: first.zeroPoints
      ? cat(
          parts.map((p) => p.zeroPoints!),
          (n) => new Uint8Array(n),
        )
      : null,
  };
}

/** Bytes the quantized weight occupies (packed values, float32 scales, zero points). */
export function quantizedBytes(q: BlockQuantized): number {
  return q.packed.byteLength + q.scales.byteLength + (q.zeroPoints?.byteLength ?? 0);
}
