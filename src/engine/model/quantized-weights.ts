/**
 * The graph builder's hook for a quantized base (`--quantize int8|int4`, or a GPTQ/AWQ checkpoint): the
 * base's linear projections become com.microsoft MatMulNBits, the embeddings GatherBlockQuantized and the LM
 * head MatMulNBits (both quantized too: on a small model with a large vocabulary they are a large share of the
 * bytes, e.g. 27% of Qwen2.5-0.5B's, and the measured perplexity cost is small; docs/benchmarks.md).
 * LoRA stays in full precision on top (the graph builder adds it to what `linear` returns).
 *
 * accuracy_level 4 (activations quantized to int8 per block inside MatMulNBits) is what makes MLAS fast: at
 * levels 0-3 the 8-bit kernel dequantizes the whole weight every call (25-75 ms for a 4864x896 matrix against
 * 0.1-0.7 ms at level 4 on this machine), and 4-bit runs 2-6x slower.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph } from './graph.js';
import type { CheckpointWeights } from './weights.js';
import { firstOverflow, toFloat16 } from './float16.js';
import { DataType } from './onnx-proto.js';
import {
  MODE_FORMAT,
  blocksOf,
  canConcatRows,
  concatRows,
  quantizeBlockwise,
  zeroPointBytesPerRow,
  type BlockQuantized,
  type QuantizeMode,
} from './quantize.js';
import { readPrequantizedLinear, readQuantizationConfig, type PrequantizedFormat } from './prequantized.js';

export const ACCURACY_LEVEL = 4;

/** Receives quantized tensors (uint8 packed values and zero points, float scales) for the external data file. */
export type QuantizedSink = (name: string, data: Float32Array | Uint16Array | Uint8Array, dims: number[]) => void;

/** The pre-quantized format of a checkpoint directory, from its config.json (null for a float checkpoint). */
export function checkpointQuantization(modelDir: string): PrequantizedFormat | null {
  const file = join(modelDir, 'config.json');
  return readQuantizationConfig(JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>, file);
}

/**
 * The blocks along K of a mode: the projections' and the LM head's (MODE_FORMAT's, or `override`,
 * --quantize-block-size) and the embedding matrix's (MODE_FORMAT.embeddingBlockSize, or the projections' when smaller).
 */
export function quantizedBlocks(mode: Exclude<QuantizeMode, 'none'>, override?: number): { projections: number; embeddings: number } {
  if (override !== undefined && !(override >= 16 && Number.isInteger(Math.log2(override))))
    throw new Error(`quantize block size ${override}: MatMulNBits takes a power of two from 16`);
  const projections = override ?? MODE_FORMAT[mode].blockSize;
  return { projections, embeddings: Math.min(projections, MODE_FORMAT[mode].embeddingBlockSize) };
}

/**
 * What /readyz and the start log call the base's weight format, e.g. `float32`, `int4 (blocks of 128)`,
 * `int8 (blocks of 128; embeddings 32)`, `gptq-int4 (group 128); other weights int4 (blocks of 128)`.
 */
export function weightFormatLabel(prequantized: PrequantizedFormat | null, quantize: QuantizeMode, dtype: 'float32' | 'float16', blockSize?: number): string {
  let rest: string = dtype;
  if (quantize !== 'none') {
    const { projections, embeddings } = quantizedBlocks(quantize, blockSize);
    rest = `${quantize} (blocks of ${projections}${embeddings !== projections ? `; embeddings ${embeddings}` : ''})`;
  }
  return prequantized ? `${prequantized.label}; other weights ${rest}` : rest;
}

/** The mode's block size, or for a K shorter than it the power of two (>= 16, MatMulNBits' smallest) that covers K, not padding it twice over. */
export function weightBlockSize(k: number, modeBlockSize: number): number {
  let b = 16;
  while (b < k && b < modeBlockSize) b *= 2;
  return b;
}

/**
 * GatherBlockQuantized needs blocks that tile each embedding row exactly: the mode's block size, or the largest
 * power-of-two fraction of it (down to 16, the op's smallest) that divides the hidden size; null when none does
 * (the embeddings then stay float).
 */
export function embeddingBlockSize(hidden: number, modeBlockSize: number): number | null {
  for (let b = modeBlockSize; b >= 16; b /= 2) if (hidden % b === 0) return b;
  return null;
}

export class QuantizedWeights {
  private readonly cache = new Map<string, BlockQuantized>();
  /** The packed-values initializers written so far: a tied embedding and LM head of one format share one. */
  private readonly writtenData = new Set<string>();

  private constructor(
    private readonly g: Graph,
    private readonly weights: CheckpointWeights,
    private readonly mode: QuantizeMode,
    private readonly half: boolean,
    private readonly sink: QuantizedSink,
    readonly prequantized: PrequantizedFormat | null,
    /** The projections' and the LM head's block along K (MODE_FORMAT's, or the operator's choice). */
    private readonly blockSize: number,
    /** The embedding matrix's (MODE_FORMAT.embeddingBlockSize, or the projections' when smaller). */
    private readonly embeddingBlockSize: number,
  ) {}

  /** Null when nothing is quantized: a float checkpoint with --quantize none keeps today's graph. */
  static create(g: Graph, weights: CheckpointWeights, mode: QuantizeMode, half: boolean, sink: QuantizedSink, blockSize?: number): QuantizedWeights | null {
    const prequantized = checkpointQuantization(weights.modelDir);
    if (mode === 'none' && !prequantized) return null;
    const blocks = mode === 'none' ? { projections: 0, embeddings: 0 } : quantizedBlocks(mode, blockSize);
    return new QuantizedWeights(g, weights, mode, half, sink, prequantized, blocks.projections, blocks.embeddings);
  }

  /**
   * The float weight `name` [n, k] in the mode's format (null with --quantize none). `keep`: hold it for a second
   * reader (the embedding matrix, which a tied LM head of the same format reads again); projections are dropped
   * once written. `blockSize`: the block to cover K with (default the projections'; the embeddings' must divide
   * the hidden size).
   */
  private quantizeFloat(name: string, n: number, k: number, keep = false, blockSize = this.blockSize): BlockQuantized | null {
    if (this.mode === 'none') return null;
    let q = this.cache.get(name);
    if (!q) {
      const format = MODE_FORMAT[this.mode];
      q = quantizeBlockwise(this.weights.read(name, [n, k]), n, k, format.bits, weightBlockSize(k, blockSize), format.symmetric);
      if (keep) this.cache.set(name, q);
    }
    return q;
  }

  /** B [n, blocks, blockSize*bits/8] as the initializer `tensor`, written once (MatMulNBits' shape; the embeddings' Gather reads it too). */
  private data(tensor: string, q: BlockQuantized): string {
    if (!this.writtenData.has(tensor)) {
      this.sink(tensor, q.packed, [q.n, blocksOf(q.k, q.blockSize), (q.blockSize * q.bits) / 8]);
      this.writtenData.add(tensor);
    }
    return tensor;
  }

  private matMul(x: string, name: string, q: BlockQuantized): string {
    const blocks = blocksOf(q.k, q.blockSize);
    const inputs = [x, this.data(`${name}.quantized`, q), `${name}.scales`];
    this.sink(`${name}.scales`, this.half ? toFloat16(q.scales) : q.scales, [q.n, blocks]);
    if (q.zeroPoints) {
      this.sink(`${name}.zero_points`, q.zeroPoints, [q.n, zeroPointBytesPerRow(blocks, q.bits)]);
      inputs.push(`${name}.zero_points`);
    }
    return this.g.one('MatMulNBits', inputs, { K: q.k, N: q.n, bits: q.bits, block_size: q.blockSize, accuracy_level: ACCURACY_LEVEL }, 'com.microsoft');
  }

  /**
   * x [tokens, k] times the HF weights `names` ([rows[i], k] each, `<prefix>.weight`) stacked along N (one
   * MatMulNBits for projections that read the same input), plus `bias` when given; null when any of them stays
   * float or they cannot share one MatMulNBits (pre-quantized parts of different formats): the caller then
   * emits one projection at a time.
   */
  linear(x: string, names: string[], rows: number[], k: number, bias?: string): string | null {
    const parts: BlockQuantized[] = [];
    for (let i = 0; i < names.length; i++) {
      const prefix = names[i].replace(/\.weight$/, '');
      const q = (this.prequantized && readPrequantizedLinear(this.weights, prefix, rows[i], k, this.prequantized)) || this.quantizeFloat(names[i], rows[i], k);
      if (!q) return null;
      parts.push(q);
    }
    if (!canConcatRows(parts)) return null;
    const y = this.matMul(x, names.join('+'), concatRows(parts));
    return bias ? this.g.one('Add', [y, bias]) : y;
  }

  /**
   * Embeddings [v, h] gathered by `ids` through GatherBlockQuantized, as [tokens, h], or null when they stay float.
   * The op reads the packed values in MatMulNBits' shape [v, blocks, blob] (quantized along the last axis, one
   * block per row of it), so a tied LM head in the same blocks shares them (in other blocks it gets its own, and
   * these are `<name>.gather_quantized`); the scales [v, blocks, 1] and zero points (one per byte) are the
   * gather's own, MatMulNBits refusing that shape.
   */
  embedding(ids: string, name: string, v: number, h: number): string | null {
    if (this.mode === 'none') return null;
    const blockSize = embeddingBlockSize(h, this.embeddingBlockSize);
    if (!blockSize) return null;
    const sharedWithHead = blockSize === weightBlockSize(h, this.blockSize);
    const q = this.quantizeFloat(name, v, h, sharedWithHead, blockSize)!;
    const blocks = h / q.blockSize;
    const inputs = [this.data(sharedWithHead ? `${name}.quantized` : `${name}.gather_quantized`, q), ids, `${name}.gather_scales`];
    // float16 scales in a float32 graph too: they stay mapped from the file (a row is read when a token uses it)
    // and at int8's blocks of 32 they are a tenth of the gather's bytes; the rows come out float16 and are cast.
    const halfScales = this.half || firstOverflow(q.scales) < 0;
    this.sink(`${name}.gather_scales`, halfScales ? toFloat16(q.scales) : q.scales, [v, blocks, 1]);
    if (q.zeroPoints) {
      const zpRow = zeroPointBytesPerRow(blocks, q.bits);
      const zeros = new Uint8Array(v * blocks);
      for (let row = 0; row < v; row++) {
        for (let b = 0; b < blocks; b++)
          zeros[row * blocks + b] = q.bits === 8 ? q.zeroPoints[row * zpRow + b] : (q.zeroPoints[row * zpRow + (b >> 1)] >> ((b & 1) * 4)) & 15;
      }
      this.sink(`${name}.gather_zero_points`, zeros, [v, blocks, 1]);
      inputs.push(`${name}.gather_zero_points`);
    }
    const gathered = this.g.one('GatherBlockQuantized', inputs, { bits: q.bits, block_size: q.blockSize, gather_axis: 0, quantize_axis: 2 }, 'com.microsoft');
    const rows = halfScales && !this.half ? this.g.one('Cast', [gathered], { to: DataType.FLOAT }) : gathered;
    return this.g.one('Reshape', [rows, this.g.int64(`shape.embeddings.${h}`, [-1, h])]);
  }

  /** Logits = x [rows, h] times the LM head [v, h] (the embeddings when tied) as MatMulNBits, or null when float. */
  lmHead(x: string, name: string, v: number, h: number): string | null {
    const q = this.quantizeFloat(name, v, h);
    return q ? this.matMul(x, name, q) : null;
  }
}
