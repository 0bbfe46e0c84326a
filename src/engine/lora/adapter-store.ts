/**
 * Where adapters come from when they are not in a local directory: a remote store (S3) that holds one
 * `NAME/` per adapter under a prefix. The store lists and describes adapters and downloads their files; the
 * disk cache (adapter-disk-cache.ts) keeps downloaded versions; the adapter manager validates them exactly as
 * local adapters. No HTTP status here: store failures carry engine codes (src/engine/errors.ts).
 */
import { createHash } from 'node:crypto';
import { EngineError } from '../errors.js';

/** The files an adapter is made of, as the store holds them under `NAME/`. */
export const REQUIRED_FILES = ['adapter_config.json', 'adapter_model.safetensors'] as const;
export const OPTIONAL_FILES = ['chat_template.jinja'] as const;
export type AdapterFileName = (typeof REQUIRED_FILES)[number] | (typeof OPTIONAL_FILES)[number];

/** Small files are bounded whatever the configured adapter limit (adapter_config.json, chat_template.jinja). */
export const SMALL_FILE_LIMIT_BYTES = 1 << 20;

export interface RemoteFile {
  name: AdapterFileName;
  key: string;
  size: number;
  /** As the store reports it, quotes removed. */
  etag: string;
}

/** One version of an adapter in the store: its files, and a tag that changes whenever any of them does. */
export interface RemoteVersion {
  tag: string;
  files: RemoteFile[];
}

/** A remote adapter store; the only implementation is S3 (s3-adapter-store.ts). */
export interface RemoteAdapterStore {
  /** Where it is, e.g. `s3://bucket/prefix/` (logs, messages, /v1/adapters). */
  readonly url: string;
  /** Every complete adapter under the prefix (both required files present), by name. */
  list(): Promise<Map<string, RemoteVersion>>;
  /** One adapter (`path` under the prefix, the name by default), or null when its files are not there. */
  describe(path: string): Promise<RemoteVersion | null>;
  /** Downloads one file of a version to `dest`, checking its size and checksum (IntegrityError otherwise). */
  download(file: RemoteFile, dest: string, maxBytes: number): Promise<void>;
}

/** The tag of a version: a short hash of every file's name, size and ETag. */
export function versionTag(files: RemoteFile[]): string {
  const text = [...files]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((f) => `${f.name}:${f.size}:${f.etag}`)
    .join('\n');
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** A version from the objects found directly under `NAME/`, or null when a required file is missing. */
export function versionFrom(objects: Array<{ key: string; size: number; etag: string }>, prefix: string): RemoteVersion | null {
  const files: RemoteFile[] = [];
  for (const o of objects) {
    const name = o.key.slice(prefix.length);
    if ((REQUIRED_FILES as readonly string[]).includes(name) || (OPTIONAL_FILES as readonly string[]).includes(name)) {
      files.push({ name: name as AdapterFileName, key: o.key, size: o.size, etag: o.etag.replace(/"/g, '') });
    }
  }
  if (!REQUIRED_FILES.every((r) => files.some((f) => f.name === r))) return null;
  return { tag: versionTag(files), files };
}

/** The adapter's content is not what the store says it is (size, checksum), or is larger than allowed. */
export class IntegrityError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'IntegrityError';
  }
}

/** The store failed (unreachable, throttled, denied...): the request fails, the adapter is not marked broken. */
export function storeUnavailable(url: string, detail: string): EngineError {
  return new EngineError('adapter_store_unavailable', `The adapter store ${url} could not be read (${detail}).`, { retryAfterSeconds: 5 });
}

export function storeDenied(url: string, detail: string): EngineError {
  return new EngineError('adapter_store_denied', `The server may not read the adapter store ${url} (${detail}).`);
}

export interface S3Location {
  bucket: string;
  /** Ends with '/' unless empty (the whole bucket). */
  prefix: string;
}

/** `s3://BUCKET/PREFIX/` -> bucket and prefix; null when `value` is not an S3 URL at all; throws when malformed. */
export function parseS3Url(value: string): S3Location | null {
  if (!value.startsWith('s3://')) return null;
  const rest = value.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  let prefix = slash < 0 ? '' : rest.slice(slash + 1);
  // S3's bucket naming rules (general purpose buckets): 3-63 characters, lowercase letters, digits, dots, hyphens.
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new Error(`"${value}" does not name a valid S3 bucket (s3://BUCKET/PREFIX/)`);
  if (prefix && !prefix.endsWith('/')) prefix += '/';
  if (prefix.split('/').some((part, i, all) => (part === '' && i < all.length - 1) || part === '..' || part === '.')) {
    throw new Error(`"${value}" has an empty, "." or ".." path segment`);
  }
  return { bucket, prefix };
}
