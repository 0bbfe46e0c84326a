/**
 * A real S3 API on loopback for tests: @20minutes/s3rver (the maintained fork of s3rver; 4.x is its last line
 * for Node 20), started on a free port with its objects in a temporary directory. The server is driven with the
 * real @aws-sdk/client-s3. s3rver does not reproduce SigV4 canonicalisation of every query string (it rejects the
 * SDK's ListObjectsV2 signature), so it runs with allowMismatchedSignatures: the client still signs; the fake
 * server does not check it. Every HTTP request it receives is recorded (method and path), so tests can count
 * downloads.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from '@20minutes/s3rver';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

export interface LoopbackS3 {
  endpoint: string;
  bucket: string;
  /** The environment the server's S3 client needs (endpoint, static credentials, region). */
  env: Record<string, string>;
  client: S3Client;
  /** Every request the server received: `METHOD /bucket/key?query`. */
  requests: string[];
  put(key: string, body: Buffer | string, metadata?: Record<string, string>): Promise<void>;
  /** Uploads an adapter directory's files under `prefix + name + '/'`. */
  putAdapter(prefix: string, name: string, dir: string): Promise<void>;
  remove(key: string): Promise<void>;
  /** Where s3rver keeps an object's bytes on disk (to corrupt it behind the server's back). */
  objectFile(key: string): string;
  /** GET requests for keys ending with `suffix`. */
  gets(suffix: string): number;
  close(): Promise<void>;
}

export async function startLoopbackS3(bucket = 'adapters-test'): Promise<LoopbackS3> {
  const directory = mkdtempSync(join(tmpdir(), 'lora-s3-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, allowMismatchedSignatures: true, directory, configureBuckets: [{ name: bucket }] });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const requests: string[] = [];
  server.httpServer.on('request', (req) => requests.push(`${req.method} ${req.url}`));
  const env = { AWS_ENDPOINT_URL_S3: endpoint, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
  // Uploads without the SDK's default streaming CRC trailer, which s3rver would store as part of the body.
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  const put = async (key: string, body: Buffer | string, metadata?: Record<string, string>) => {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ...(metadata ? { Metadata: metadata } : {}) }));
  };
  return {
    endpoint,
    bucket,
    env,
    client,
    requests,
    put,
    async putAdapter(prefix, name, dir) {
      for (const file of readdirSync(dir)) await put(`${prefix}${name}/${file}`, readFileSync(join(dir, file)));
    },
    async remove(key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
    objectFile: (key) => join(directory, bucket, `${key}._S3rver_object`),
    gets: (suffix) => requests.filter((r) => r.startsWith('GET ') && r.split('?')[0].endsWith(suffix)).length,
    async close() {
      client.destroy();
      await server.close().catch(() => undefined);
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
