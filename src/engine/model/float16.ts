/**
 * float32 -> float16 for whole tensors (the graph's weights and the LoRA stacks in float16 mode). Round to
 * nearest, ties to even, as numpy and torch do; subnormals kept; values beyond float16's range become
 * infinity, so callers that must not overflow check with firstOverflow first.
 */

/** Smallest magnitude that rounds to infinity in float16 (65504 is the largest finite value). */
const OVERFLOW = 65520;

export function toFloat16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 112; // rebias 127 -> 15
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      const m = mant | 0x800000;
      const shift = 14 - e;
      let half = m >>> shift;
      const rest = m & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      if (rest > halfway || (rest === halfway && half & 1)) half++;
      out[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++; // a carry into the exponent is right, up to infinity
    out[i] = sign | half;
  }
  return out;
}

/** A checkpoint tensor holds a value float16 cannot represent. */
export class Float16RangeError extends Error {
  constructor(file: string, tensor: string, value: number) {
    super(`${file}: tensor ${tensor} holds ${value}, beyond float16's range (65504): serve this model with dtype float32`);
    this.name = 'Float16RangeError';
  }
}

/** Index of the first finite value that float16 cannot hold, or -1. */
export function firstOverflow(src: Float32Array): number {
  for (let i = 0; i < src.length; i++) if (Math.abs(src[i]) >= OVERFLOW && Number.isFinite(src[i])) return i;
  return -1;
}
