import { BedrockRuntimeClient, InvokeModelCommand, InvokeModelWithResponseStreamCommand, ConverseCommand, ConverseStreamCommand } from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { FakeBedrock } from '../helpers/fake-bedrock.js';
delete process.env.AWS_BEARER_TOKEN_BEDROCK;
const fake = await FakeBedrock.start();
const client = new BedrockRuntimeClient({ region: 'us-east-1', endpoint: fake.endpoint, requestHandler: new NodeHttpHandler(), maxAttempts: 1, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' } });
const arn = 'arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123';
const r1 = await client.send(new InvokeModelCommand({ modelId: arn, body: JSON.stringify({ prompt: 'hi there', max_gen_len: 3 }), contentType: 'application/json', accept: 'application/json' }));
console.log(r1.body.transformToString(), fake.requests[0].path, fake.requests[0].modelId, fake.requests[0].headers.authorization);
const r2 = await client.send(new InvokeModelWithResponseStreamCommand({ modelId: arn, body: JSON.stringify({ inputText: 'hi there' }), contentType: 'application/json', accept: 'application/json' }));
for await (const ev of r2.body!) console.log(JSON.stringify(ev), ev.chunk?.bytes && Buffer.from(ev.chunk.bytes).toString());
const r3 = await client.send(new ConverseCommand({ modelId: 'meta.llama3', messages: [{ role: 'user', content: [{ text: 'hi' }] }] }));
console.log(JSON.stringify(r3.output), r3.stopReason, r3.usage);
const r4 = await client.send(new ConverseStreamCommand({ modelId: 'meta.llama3', messages: [{ role: 'user', content: [{ text: 'hi' }] }] }));
for await (const ev of r4.stream!) console.log(JSON.stringify(ev));
fake.enqueue({ exceptionAfterChunks: { after: 2, type: 'modelStreamErrorException' } });
try { const r5 = await client.send(new ConverseStreamCommand({ modelId: 'm', messages: [{ role: 'user', content: [{ text: 'hi' }] }] })); for await (const ev of r5.stream!) console.log(JSON.stringify(ev)); } catch (e: any) { console.log('ERR', e.name, e.message, e.$fault, e.$metadata); }
fake.enqueue({ error: { type: 'ThrottlingException' } });
try { await client.send(new ConverseCommand({ modelId: 'm', messages: [{ role: 'user', content: [{ text: 'hi' }] }] })); } catch (e: any) { console.log('ERR', e.name, e.message, e.$fault, e.$metadata); }
fake.enqueue({ dropAfterChunks: 2 });
try { const r5 = await client.send(new InvokeModelWithResponseStreamCommand({ modelId: arn, body: JSON.stringify({ prompt: 'hi there' }) })); for await (const ev of r5.body!) console.log('drop-ev'); } catch (e: any) { console.log('ERR', e.name, e.code, e.message); }
// abort mid stream
fake.enqueue({ chunkDelayMs: 300 });
const ac = new AbortController();
const t0 = Date.now();
try { const r6 = await client.send(new InvokeModelWithResponseStreamCommand({ modelId: arn, body: JSON.stringify({ prompt: 'hi there' }) }), { abortSignal: ac.signal }); setTimeout(() => ac.abort(new Error('mine')), 400); for await (const ev of r6.body!) console.log('abort-ev', Date.now() - t0); } catch (e: any) { console.log('ERR', e.name, e.code, e.message, Date.now() - t0); }
client.destroy();
await fake.close();
