import { BedrockRuntimeClient, InvokeModelWithResponseStreamCommand } from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { FakeBedrock } from '../helpers/fake-bedrock.js';
delete process.env.AWS_BEARER_TOKEN_BEDROCK;
const fake = await FakeBedrock.start();
const client = new BedrockRuntimeClient({ region: 'us-east-1', endpoint: fake.endpoint, requestHandler: new NodeHttpHandler(), maxAttempts: 1, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' } });
const arn = 'arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123';
fake.enqueue({ chunkDelayMs: 300, text: 'a b c d e f g h' });
const ac = new AbortController();
const t0 = Date.now();
(fake as any).server.on('connection', (s: any) => s.on('close', () => console.log('server socket closed', Date.now() - t0)));
try { const r6 = await client.send(new InvokeModelWithResponseStreamCommand({ modelId: arn, body: JSON.stringify({ prompt: 'hi there' }) }), { abortSignal: ac.signal }); console.log('sent', Date.now() - t0); setTimeout(() => { console.log('abort', Date.now() - t0); ac.abort(new Error('mine')) }, 400); for await (const ev of r6.body!) console.log('abort-ev', Date.now() - t0); } catch (e: any) { console.log('ERR', e.name, e.code, e.message, Date.now() - t0); }
client.destroy();
await fake.close();
