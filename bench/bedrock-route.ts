/**
 * `npm run bench:bedrock`: what the Bedrock route itself adds. In the same run, interleaved:
 *   direct - the AWS SDK client calls InvokeModel on the loopback fake Bedrock;
 *   routed - an HTTP client calls our server's /v1/generate for a Bedrock-only adapter, which calls the fake.
 * The fake answers immediately, so the difference of the medians is the route's own overhead
 * (HTTP parse and validation, route policy, request mapping, response mapping, serialization).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, cpus } from 'node:os';
import { BedrockRuntimeClient, InvokeModelCommand } from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { BedrockFallback } from '../src/fallback/bedrock-client.js';
import { parseBedrockConfig } from '../src/fallback/bedrock-config.js';
import { FakeBedrock } from '../test/helpers/fake-bedrock.js';

const N = Number(process.env.BENCH_REQUESTS ?? 400);
const ARN = 'arn:aws:bedrock:us-east-1:123456789012:provisioned-model/bench-pt';
process.env.AWS_ACCESS_KEY_ID = 'AKIDBENCHLOOPBACK01';
process.env.AWS_SECRET_ACCESS_KEY = 'bench-secret-loopback-only';
delete process.env.AWS_BEARER_TOKEN_BEDROCK;

const fake = await FakeBedrock.start();
fake.setDefault({ text: 'Hello team, welcome aboard' });
const bedrock = new BedrockFallback(
  parseBedrockConfig({ endpoint: fake.endpoint, targets: { remote: { modelId: ARN, family: 'llama', region: 'us-east-1' } } }),
);
const app = await buildApp({ config: loadConfig({ argv: [], env: {} }), engine: null, bedrock });
await app.listen({ port: 0, host: '127.0.0.1' });
const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/generate?adapter=remote`;
const sdk = new BedrockRuntimeClient({ region: 'us-east-1', endpoint: fake.endpoint, requestHandler: new NodeHttpHandler(), maxAttempts: 1 });
const body = { prompt: 'Say hello to the team', max_tokens: 20, temperature: 0.5 };

async function direct(): Promise<number> {
  const t0 = performance.now();
  const out = await sdk.send(
    new InvokeModelCommand({
      modelId: ARN,
      contentType: 'application/json',
      accept: 'application/json',
      body: JSON.stringify({ prompt: body.prompt, max_gen_len: 20, temperature: 0.5 }),
    }),
  );
  JSON.parse(new TextDecoder().decode(out.body));
  return performance.now() - t0;
}

// The routed client uses node:http with keep-alive, like the SDK's NodeHttpHandler, so both sides pay the same client cost.
const agent = new http.Agent({ keepAlive: true });
function routed(): Promise<number> {
  const t0 = performance.now();
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`routed call failed: ${res.statusCode} ${Buffer.concat(chunks)}`));
          JSON.parse(Buffer.concat(chunks).toString());
          resolve(performance.now() - t0);
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

for (let i = 0; i < 50; i++) {
  await direct();
  await routed();
}
const times = { direct: [] as number[], routed: [] as number[] };
for (let i = 0; i < N; i++) {
  times.direct.push(await direct());
  times.routed.push(await routed());
}
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)];
console.log(
  `machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, node ${process.version}; ${N} sequential calls each, interleaved, after 50 warm-up pairs\n`,
);
console.log('| path | p50 ms | p90 ms | p99 ms |\n| --- | ---: | ---: | ---: |');
for (const [name, xs] of Object.entries(times))
  console.log(
    `| ${name === 'direct' ? 'SDK -> fake Bedrock' : 'HTTP client -> our server -> SDK -> fake Bedrock'} | ${pct(xs, 0.5).toFixed(2)} | ${pct(xs, 0.9).toFixed(2)} | ${pct(xs, 0.99).toFixed(2)} |`,
  );
console.log(`\nroute overhead at the median: ${(pct(times.routed, 0.5) - pct(times.direct, 0.5)).toFixed(2)} ms (target < 2 ms)`);
await app.close();
await fake.close();
sdk.destroy();
