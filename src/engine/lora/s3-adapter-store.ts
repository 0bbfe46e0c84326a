/**
 * Adapters in S3 (`s3://BUCKET/PREFIX/`: every `NAME/` holding adapter_config.json and
 * adapter_model.safetensors is an adapter), read with @aws-sdk/client-s3. Credentials come from the SDK's
 * default provider chain (environment, profile/SSO, web identity, ECS/EC2 role); the endpoint follows the SDK's
 * own `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (MinIO, tests), with path-style addressing when one is set.
 *
 * Integrity: every download is bounded (the size the listing gave, and the configured limit), must come back
 * at exactly that size, is pinned to the listed ETag (If-Match, so a version replaced mid-way is not mixed in),
 * and is checked against the checksums the object carries: the ETag when it is the content's MD5 (a single-part
 * upload without SSE-KMS or SSE-C, as the AWS CLI checks it), a full-object x-amz-checksum-sha256, and an
 * `x-amz-meta-sha256` (hex) set by the uploader.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, ListObjectsV2Command, S3Client, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { EngineError } from '../errors.js';
import {
  IntegrityError,
  storeDenied,
  storeUnavailable,
  versionFrom,
  type RemoteAdapterStore,
  type RemoteFile,
  type RemoteVersion,
  type S3Location,
} from './adapter-store.js';

/** Listing pages read at most (1000 keys each): a prefix holding more is a misconfiguration, not an adapter set. */
const MAX_LIST_PAGES = 100;

const DENIED = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'AllAccessDisabled',
  'AccountProblem',
  'CredentialsProviderError',
]);

export interface S3StoreOptions {
  /** A client to use instead of the default one (tests). */
  client?: S3Client;
  env?: NodeJS.ProcessEnv;
}

/** Whether the SDK will send requests to a configured endpoint (MinIO, a test server) rather than AWS. */
function endpointOverride(env: NodeJS.ProcessEnv): string | undefined {
  if (env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS === 'true') return undefined;
  return env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
}

export class S3AdapterStore implements RemoteAdapterStore {
  readonly url: string;
  private readonly client: S3Client;

  constructor(
    private readonly location: S3Location,
    options: S3StoreOptions = {},
  ) {
    const env = options.env ?? process.env;
    this.url = `s3://${location.bucket}/${location.prefix}`;
    this.client =
      options.client ??
      new S3Client({
        // The SDK resolves the endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself; servers other than
        // AWS are addressed by path (no per-bucket DNS names on loopback or MinIO).
        ...(endpointOverride(env) ? { forcePathStyle: true } : {}),
        // Without a configured region, us-east-1; a bucket elsewhere answers with a redirect the SDK follows.
        region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
        followRegionRedirects: true,
        maxAttempts: 3,
      });
  }

  async list(): Promise<Map<string, RemoteVersion>> {
    const byName = new Map<string, Array<{ key: string; size: number; etag: string }>>();
    let token: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      const out: ListObjectsV2CommandOutput = await this.send(() =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: this.location.prefix, ContinuationToken: token })),
      );
      for (const o of out.Contents ?? []) {
        const rest = (o.Key ?? '').slice(this.location.prefix.length);
        const slash = rest.indexOf('/');
        if (slash <= 0 || rest.indexOf('/', slash + 1) >= 0) continue; // only NAME/FILE
        const name = rest.slice(0, slash);
        const list = byName.get(name) ?? [];
        list.push({ key: o.Key!, size: o.Size ?? 0, etag: o.ETag ?? '' });
        byName.set(name, list);
      }
      if (!out.IsTruncated || !out.NextContinuationToken) break;
      token = out.NextContinuationToken;
    }
    const versions = new Map<string, RemoteVersion>();
    for (const [name, objects] of byName) {
      const version = versionFrom(objects, `${this.location.prefix}${name}/`);
      if (version) versions.set(name, version);
    }
    return versions;
  }

  async describe(path: string): Promise<RemoteVersion | null> {
    const prefix = `${this.location.prefix}${path}/`;
    const out = await this.send(() => this.client.send(new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: prefix, Delimiter: '/' })));
    return versionFrom(
      (out.Contents ?? []).map((o) => ({ key: o.Key ?? '', size: o.Size ?? 0, etag: o.ETag ?? '' })),
      prefix,
    );
  }

  async download(file: RemoteFile, dest: string, maxBytes: number): Promise<void> {
    if (file.size > maxBytes) throw new IntegrityError(file.name, `is ${file.size} bytes, above this server's limit of ${maxBytes} bytes`);
    const out = await this.send(() =>
      this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: file.key, IfMatch: `"${file.etag}"`, ChecksumMode: 'ENABLED' })),
    );
    const md5 = createHash('md5');
    const sha256 = createHash('sha256');
    let received = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        if (received > file.size) return done(new IntegrityError(file.name, `holds more than the ${file.size} bytes the store listed`));
        md5.update(chunk);
        sha256.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(out.Body as Readable, meter, createWriteStream(dest, { mode: 0o600 }));
    } catch (e) {
      if (e instanceof IntegrityError) throw e;
      // The SDK validates a CRC or SHA checksum the object carries while the body streams.
      if (/checksum/i.test((e as Error).message)) throw new IntegrityError(file.name, `failed the checksum the store holds (${(e as Error).message})`);
      throw storeUnavailable(this.url, `reading ${file.key} was cut off: ${(e as Error).message}`);
    }
    if (received !== file.size) throw new IntegrityError(file.name, `came back with ${received} bytes, the store listed ${file.size} (truncated)`);
    const encrypted = out.ServerSideEncryption === 'aws:kms' || out.ServerSideEncryption === 'aws:kms:dsse' || out.SSECustomerAlgorithm !== undefined;
    if (/^[0-9a-f]{32}$/.test(file.etag) && !encrypted && md5.digest('hex') !== file.etag) {
      throw new IntegrityError(file.name, `does not match its ETag (MD5 ${file.etag}): the object is corrupt`);
    }
    const sha = sha256.digest();
    if (out.ChecksumSHA256 && !out.ChecksumSHA256.includes('-') && out.ChecksumSHA256 !== sha.toString('base64')) {
      throw new IntegrityError(file.name, 'does not match its x-amz-checksum-sha256');
    }
    const declared = out.Metadata?.sha256;
    if (declared && declared.toLowerCase() !== sha.toString('hex')) throw new IntegrityError(file.name, `does not match its x-amz-meta-sha256 ${declared}`);
  }

  /** Runs an S3 call and maps its failure to the engine's codes: gone -> adapter_not_found, denied, unavailable. */
  private async send<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (e) {
      throw this.mapError(e);
    }
  }

  private mapError(e: unknown): EngineError {
    const err = e as { name?: string; Code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const code = err.Code ?? err.name ?? 'Error';
    const status = err.$metadata?.httpStatusCode;
    const detail = `${code}${status ? ` ${status}` : ''}: ${err.message ?? 'no message'}`;
    if (code === 'NoSuchBucket') return storeUnavailable(this.url, `the bucket ${this.location.bucket} does not exist; check --adapters`);
    if (code === 'NoSuchKey' || code === 'NotFound') return new EngineError('adapter_not_found', `The adapter's files are no longer in ${this.url}.`);
    if (code === 'PreconditionFailed' || status === 412) return storeUnavailable(this.url, 'the adapter changed while it was downloaded; retry');
    if (DENIED.has(code) || status === 403) return storeDenied(this.url, detail);
    return storeUnavailable(this.url, detail);
  }
}
