/**
 * Builds the ONNX model for a checkpoint once and keeps it on disk, keyed by a hash of the config, the
 * weight files and the build options, so a restart reuses it. Weights go to an external data file beside
 * the .onnx (a protobuf cannot exceed 2 GiB). Writes go to a temporary folder renamed into place.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDecoderGraph, type GraphOptions } from './graph-builder.js';
import type { ModelSpec } from './hf-config.js';
import { DataType, encodeModel, type DataTypeCode } from './onnx-proto.js';
import type { CheckpointWeights } from './weights.js';
import { checkEveryTensorUsed } from './checkpoint-tensors.js';
import { CheckpointLinks, type DataLayoutReport } from './checkpoint-links.js';
import { MODE_FORMAT } from './quantize.js';

/** Bump when the graph layout changes so old cache entries are not reused. */
export const GRAPH_BUILDER_VERSION = 27;
const MODEL_FILE = 'model.onnx';
const DATA_FILE = 'model.onnx.data';
/** Facts about the build that a reused graph still needs (the base's weight bytes). */
const BUILD_FILE = 'build.json';

export interface CachedModel {
  path: string;
  /** True when this call built it, false when it came from the cache. */
  built: boolean;
  /** Built now: the checkpoint's tensors skipped on purpose (checkpoint-tensors.ts), for the start-up log. */
  skippedTensors?: Array<{ tensor: string; reason: string }>;
  /** Built now: which checkpoint bytes the graph reads in place and which it holds as copies, and why (checkpoint-links.ts). */
  dataLayout?: DataLayoutReport;
  /** Bytes of the base's weights in the graph (embeddings, norms, projections, LM head; not the rotary tables). */
  weightBytes: number;
}

export function cacheKey(modelDir: string, weights: CheckpointWeights, options: GraphOptions): string {
  const hash = createHash('sha256');
  // The quantized modes' formats too, so that changing a default block size never reuses an old graph.
  hash.update(
    JSON.stringify({
      v: GRAPH_BUILDER_VERSION,
      options,
      ...(options.quantize && options.quantize !== 'none' ? { format: MODE_FORMAT[options.quantize] } : {}),
    }),
  );
  hash.update(readFileSync(join(modelDir, 'config.json')));
  hash.update(weights.fingerprint());
  return hash.digest('hex').slice(0, 24);
}

export function ensureOnnxModel(modelDir: string, spec: ModelSpec, weights: CheckpointWeights, options: GraphOptions, cacheDir: string): CachedModel {
  const dir = join(cacheDir, cacheKey(modelDir, weights, options));
  const path = join(dir, MODEL_FILE);
  if (existsSync(path) && existsSync(join(dir, DATA_FILE)) && existsSync(join(dir, BUILD_FILE))) {
    return { path, built: false, weightBytes: (JSON.parse(readFileSync(join(dir, BUILD_FILE), 'utf8')) as { weightBytes: number }).weightBytes };
  }

  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  let skippedTensors: CachedModel['skippedTensors'];
  let dataLayout: DataLayoutReport | undefined;
  let weightBytes = 0;
  mkdirSync(tmp, { recursive: true });
  try {
    const fd = openSync(join(tmp, DATA_FILE), 'w');
    let offset = 0;
    const external: Array<{ name: string; dims: number[]; offset: number; length: number; dataType: DataTypeCode; location?: string }> = [];
    const links = new CheckpointLinks(tmp, weights);
    const model = buildDecoderGraph(spec, weights, options, (name, data, dims, source) => {
      const inPlace = source ? links.reference(source) : null;
      if (inPlace) {
        external.push({ name, dims, offset: inPlace.offset, length: data.byteLength, dataType: DataType.FLOAT, location: inPlace.location });
        if (!name.startsWith('rotary.')) weightBytes += data.byteLength;
        return;
      }
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      writeSync(fd, bytes, 0, bytes.length, offset);
      const dataType = data instanceof Uint8Array ? DataType.UINT8 : data instanceof Uint16Array ? DataType.FLOAT16 : DataType.FLOAT;
      external.push({ name, dims, offset, length: bytes.length, dataType });
      if (!name.startsWith('rotary.')) weightBytes += bytes.length;
      offset += Math.ceil(bytes.length / 64) * 64;
    });
    closeSync(fd);
    skippedTensors = checkEveryTensorUsed(spec, weights);
    model.externalInitializers = external.map((e) => ({ ...e, location: e.location ?? DATA_FILE }));
    dataLayout = links.report;
    writeFileSync(join(tmp, MODEL_FILE), encodeModel(model));
    writeFileSync(join(tmp, BUILD_FILE), JSON.stringify({ weightBytes }));
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { path, built: true, skippedTensors, weightBytes, dataLayout };
}
