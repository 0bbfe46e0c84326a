/**
 * safetensors reader: an 8-byte little-endian header length, a JSON header, then raw little-endian data.
 * Files are untrusted (adapters come from users), so every size and offset is bounds-checked against the
 * real file size before anything is allocated or read.
 */
import { openSync, readSync, fstatSync, closeSync } from 'node:fs';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte offsets relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  /** Absolute byte offset of the data section in the file. */
  dataStart: number;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/** Headers above this size are refused: real ones are kilobytes, a hostile one could claim gigabytes. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const BYTES_PER_ELEMENT: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export class SafetensorsError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = openSync(file, 'r');
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw new SafetensorsError(file, `file is ${fileSize} bytes, too short for a safetensors header (truncated?)`);
    const lengthBytes = Buffer.alloc(8);
    readSync(fd, lengthBytes, 0, 8, 0);
    const headerLength = lengthBytes.readBigUInt64LE(0);
    if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
      throw new SafetensorsError(file, `header claims ${headerLength} bytes but the file has ${fileSize - 8} after the length field (corrupt or truncated)`);
    }
    const headerBytes = Buffer.alloc(Number(headerLength));
    readSync(fd, headerBytes, 0, headerBytes.length, 8);
    let json: unknown;
    try {
      json = JSON.parse(headerBytes.toString('utf8'));
    } catch {
      throw new SafetensorsError(file, 'header is not valid JSON (corrupt file?)');
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      throw new SafetensorsError(file, 'header is not a JSON object');
    }
    const dataStart = 8 + headerBytes.length;
    const dataSize = fileSize - dataStart;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
          throw new SafetensorsError(file, '__metadata__ must be an object of strings');
        }
        metadata = raw as Record<string, string>;
        continue;
      }
      tensors.set(name, checkTensorEntry(file, name, raw, dataSize));
    }
    checkNoOverlap(file, tensors);
    return { file, dataStart, tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

/** Tensors may be listed in any order, but no two may share bytes (a hostile file could make many tensors read the same bytes). */
function checkNoOverlap(file: string, tensors: Map<string, TensorInfo>): void {
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw new SafetensorsError(
        file,
        `tensors ${short(sorted[i - 1].name)} and ${short(sorted[i].name)} overlap (bytes ${sorted[i].begin} to ${Math.min(sorted[i].end, sorted[i - 1].end)})`,
      );
    }
  }
}

/** A bounded, never-throwing rendering of an untrusted value for error messages. */
function short(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return value.length <= 8 && value.every((v) => typeof v === 'number') ? `[${value.join(', ')}]` : `an array of ${value.length}`;
  return `a${typeof value === 'object' ? 'n object' : ` ${typeof value}`}`;
}

function checkTensorEntry(file: string, name: string, raw: unknown, dataSize: number): TensorInfo {
  const entry = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  const label = short(name).slice(1, -1);
  if (typeof entry !== 'object' || entry === null) throw new SafetensorsError(file, `tensor ${label}: entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string' || !Object.hasOwn(BYTES_PER_ELEMENT, dtype)) throw new SafetensorsError(file, `tensor ${label}: unknown dtype ${short(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(file, `tensor ${label}: shape must be an array of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new SafetensorsError(file, `tensor ${label}: data_offsets must be two non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = elements * BYTES_PER_ELEMENT[dtype];
  if (end < begin || end - begin !== expected) {
    throw new SafetensorsError(
      file,
      `tensor ${label}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, shape ${short(shape)} of ${dtype} needs ${expected}`,
    );
  }
  if (end > dataSize) {
    throw new SafetensorsError(file, `tensor ${label}: data ends at byte ${end} but the data section has ${dataSize} bytes (truncated file?)`);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/** Reads one tensor and converts F32, F16 or BF16 to float32. */
export function readTensorAsFloat32(header: SafetensorsHeader, name: string): Float32Array {
  return toFloat32(header.file, header.tensors.get(name)!, readTensorBytes(header, name));
}

/** One tensor's raw little-endian bytes, as stored (e.g. the I32 words of a GPTQ/AWQ qweight). */
export function readTensorBytes(header: SafetensorsHeader, name: string): Buffer {
  const info = header.tensors.get(name);
  if (!info) throw new SafetensorsError(header.file, `tensor ${name} is missing`);
  const bytes = Buffer.alloc(info.end - info.begin);
  const fd = openSync(header.file, 'r');
  try {
    const read = readSync(fd, bytes, 0, bytes.length, header.dataStart + info.begin);
    if (read !== bytes.length) throw new SafetensorsError(header.file, `tensor ${name}: short read (truncated file?)`);
  } finally {
    closeSync(fd);
  }
  return bytes;
}

function toFloat32(file: string, info: TensorInfo, bytes: Buffer): Float32Array {
  const n = (info.end - info.begin) / BYTES_PER_ELEMENT[info.dtype];
  const out = new Float32Array(n);
  switch (info.dtype) {
    case 'F32':
      if (bytes.byteOffset % 4 === 0) out.set(new Float32Array(bytes.buffer, bytes.byteOffset, n));
      else for (let i = 0; i < n; i++) out[i] = bytes.readFloatLE(i * 4);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(bytes.readUInt16LE(i * 2));
      return out;
    case 'BF16': {
      const u32 = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u32[i] = bytes.readUInt16LE(i * 2) << 16;
      return out;
    }
    default:
      throw new SafetensorsError(file, `tensor ${info.name}: dtype ${info.dtype} is not supported (use F32, F16 or BF16)`);
  }
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Round-to-nearest-even float32 -> float16 bits; used by tests and tools that write F16 copies. */
export function floatToHalf(value: number): number {
  const f32 = new Float32Array([value]);
  const x = new Uint32Array(f32.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function floatToBfloat16(value: number): number {
  const f32 = new Float32Array([value]);
  const x = new Uint32Array(f32.buffer)[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40;
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** Writes a safetensors file (used by tests, benchmarks and tools). */
export function encodeSafetensors(
  tensors: Array<
    { name: string; dtype: SafetensorsDtype; shape: number[]; data: Float32Array } | { name: string; dtype: 'I32'; shape: number[]; data: Int32Array }
  >,
  metadata: Record<string, string> = { format: 'pt' },
): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const parts: Buffer[] = [];
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.dtype === 'I32' ? Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength) : encodeData(t.dtype, t.data);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let headerJson = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (headerJson.length % 8)) % 8;
  headerJson = Buffer.concat([headerJson, Buffer.alloc(pad, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerJson.length));
  return Buffer.concat([length, headerJson, ...parts]);
}

function encodeData(dtype: SafetensorsDtype, data: Float32Array): Buffer {
  if (dtype === 'F32') return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out = Buffer.alloc(data.length * 2);
  const convert = dtype === 'F16' ? floatToHalf : floatToBfloat16;
  for (let i = 0; i < data.length; i++) out.writeUInt16LE(convert(data[i]), i * 2);
  return out;
}
