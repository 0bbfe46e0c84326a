/**
 * Weights that a float32 graph uses exactly as the checkpoint stores them (F32, little-endian, which safetensors
 * always is) are not copied into the graph cache: the cache entry holds a hard link to the safetensors file and the
 * ONNX external data points at the tensor's offset in it. onnxruntime only reads external data from inside the
 * model's folder (it refuses absolute paths, `..` and symbolic links that lead out), hence a hard link. Everything
 * else is written to the entry's own data file, for a reason the build reports per stored dtype:
 *
 * - BF16 / F16 tensors: converted to float32 (onnxruntime's CPU kernels compute in float32; there is no BF16 Gemm);
 * - any tensor of a float16 graph (`--dtype float16`): converted to float16;
 * - F32 tensors whose offset is not a multiple of 4 (a float read in place must be aligned);
 * - F32 tensors when the cache folder cannot hold a hard link to the checkpoint (another file system: EXDEV, or
 *   Linux's protected_hardlinks for a file this user does not own: EPERM);
 * - quantized and computed tensors (int8/int4 packs, rotary tables) never come from the checkpoint as they are.
 */
import { linkSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckpointWeights } from './weights.js';

export interface DataLayoutReport {
  /** Bytes referenced in place, by stored dtype (always F32). */
  referenced: Record<string, number>;
  /** Bytes of checkpoint tensors written as copies, by stored dtype, with why. */
  copied: Record<string, { bytes: number; why: string }>;
}

export class CheckpointLinks {
  /** Per checkpoint file: the hard link's name in the entry, or the error code that prevented it. */
  private readonly links = new Map<string, { location: string } | { error: string }>();
  readonly report: DataLayoutReport = { referenced: {}, copied: {} };

  constructor(
    private readonly entryDir: string,
    private readonly weights: CheckpointWeights,
  ) {}

  /** Where the stored bytes of `source` can be read in place, or null (and why, in the report) when they cannot. */
  reference(source: string): { location: string; offset: number } | null {
    const at = this.weights.storedAt(source);
    if (at.dtype !== 'F32') return this.copied(at.dtype, at.bytes, `${at.dtype} is converted to float32`);
    if (at.offset % 4 !== 0) return this.copied(at.dtype, at.bytes, 'stored at an offset that is not a multiple of 4');
    let link = this.links.get(at.file);
    if (!link) {
      const location = `checkpoint-${this.links.size}.safetensors`;
      try {
        linkSync(at.file, join(this.entryDir, location));
        link = { location };
      } catch (e) {
        link = { error: (e as NodeJS.ErrnoException).code ?? 'error' };
      }
      this.links.set(at.file, link);
    }
    if ('error' in link) return this.copied(at.dtype, at.bytes, `the cache folder cannot hold a hard link to the checkpoint (${link.error})`);
    this.report.referenced[at.dtype] = (this.report.referenced[at.dtype] ?? 0) + at.bytes;
    return { location: link.location, offset: at.offset };
  }

  private copied(dtype: string, bytes: number, why: string): null {
    const entry = (this.report.copied[dtype] ??= { bytes: 0, why });
    entry.bytes += bytes;
    if (!entry.why.includes(why)) entry.why += `; ${why}`;
    return null;
  }
}
