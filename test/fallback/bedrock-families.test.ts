/** Each model family through the real SDK against the loopback fake: bodies, results, streams, usage. */
import t from 'tap';
import type { FinishEvent } from '../../src/engine/types.js';
import { CONVERSE_MODEL, LLAMA_ARN, TEST_ACCESS_KEY_ID, TITAN_ARN, collect, request, startHarness, tokenTexts } from './harness.js';

const FULL_TEXT = 'Hello from the fake Bedrock.';
const TOKENS = ['Hello', ' from', ' the', ' fake', ' Bedrock.'];

t.test('llama: InvokeModel body, result and usage', async (t) => {
  const { fake, fallback } = await startHarness(t);
  const result = await fallback.generate(request({ adapter: 'sales', temperature: 1.7, topP: 0.8, maxTokens: 40 }));
  t.same(result, {
    text: FULL_TEXT,
    tokenIds: [],
    finishReason: 'stop',
    usage: { promptTokens: 5, completionTokens: 5 },
    adapter: 'sales',
  });
  const [sent] = fake.requests;
  t.equal(sent.operation, 'invoke');
  t.equal(sent.modelId, LLAMA_ARN, 'the ARN survives URL encoding');
  t.match(sent.path, /^\/model\/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aprovisioned-model%2Fllama-sales-pt\/invoke$/);
  t.same(sent.body, { prompt: 'Say hello to the team', temperature: 1, top_p: 0.8, max_gen_len: 40 }, 'temperature clamped to 1');
  t.equal(sent.headers['content-type'], 'application/json');
});

t.test('llama: length finish and the maxTokens cap', async (t) => {
  const { fake, fallback } = await startHarness(t, {
    extraTargets: { capped: { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', maxTokens: 3 } },
  });
  const result = await fallback.generate(request({ adapter: 'capped', maxTokens: 500 }));
  t.equal(fake.requests[0].body.max_gen_len, 3, 'lowered to the target cap');
  t.equal(result.text, 'Hello from the');
  t.equal(result.finishReason, 'length');
  t.same(result.usage, { promptTokens: 5, completionTokens: 3 });
});

t.test('llama: stream yields tokens then a finish event with usage', async (t) => {
  const { fake, fallback } = await startHarness(t);
  const { events, error } = await collect(fallback.stream(request({ adapter: 'sales' })));
  t.error(error);
  t.same(tokenTexts(events), TOKENS);
  t.ok(events.slice(0, -1).every((e) => e.type === 'token' && e.tokenId === -1));
  const finish = events.at(-1) as FinishEvent;
  t.equal(finish.type, 'finish');
  t.equal(finish.finishReason, 'stop');
  t.equal(finish.text, FULL_TEXT);
  t.same(finish.usage, { promptTokens: 5, completionTokens: 5 });
  t.same(finish.tokenIds, []);
  t.ok(finish.timings.totalMs >= finish.timings.prefillMs);
  t.equal(fake.requests[0].operation, 'invoke-with-response-stream');
  t.equal(fake.requests[0].headers['x-amzn-bedrock-accept'], 'application/json', 'the stream op sends accept as a Bedrock header');
});

t.test('llama: stop sequences are applied on our side (Llama takes none)', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.setDefault({ text: 'one two STOP three four' });
  const result = await fallback.generate(request({ stop: [' STOP'] }));
  t.equal(result.text, 'one two');
  t.equal(result.finishReason, 'stop');
  t.notOk('stop' in fake.requests[0].body);

  const { events, error } = await collect(fallback.stream(request({ stop: [' STOP'] })));
  t.error(error);
  t.same(tokenTexts(events), ['one', ' two']);
  const finish = events.at(-1) as FinishEvent;
  t.equal(finish.text, 'one two');
  t.equal(finish.finishReason, 'stop');
  t.equal(finish.usage.promptTokens, 5, 'counts from the chunks read so far');
});

t.test('llama: a stop sequence split across chunks is held back, not leaked', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.setDefault({ text: 'alpha be ta END gamma' });
  const { events } = await collect(fallback.stream(request({ stop: ['ta END'] })));
  t.same(tokenTexts(events), ['alpha', ' be', ' '], '"ta" waited for the next chunk');
  t.equal((events.at(-1) as FinishEvent).text, 'alpha be ');

  fake.setDefault({ text: 'a b E' });
  const partial = await collect(fallback.stream(request({ stop: ['EN'] })));
  t.same(tokenTexts(partial.events), ['a', ' b', ' ', 'E'], 'a held-back partial match is released at the end');
  t.equal((partial.events.at(-1) as FinishEvent).text, 'a b E');
});

t.test('titan: InvokeModel body, result and usage', async (t) => {
  const { fake, fallback } = await startHarness(t);
  const result = await fallback.generate(request({ adapter: 'support', stop: ['User:'], maxTokens: 100 }));
  t.same(result, {
    text: FULL_TEXT,
    tokenIds: [],
    finishReason: 'stop',
    usage: { promptTokens: 5, completionTokens: 5 },
    adapter: 'support',
  });
  t.equal(fake.requests[0].modelId, TITAN_ARN);
  t.same(fake.requests[0].body, {
    inputText: 'Say hello to the team',
    textGenerationConfig: { temperature: 0.5, topP: 0.9, maxTokenCount: 100, stopSequences: ['User:'] },
  });
});

t.test('titan: LENGTH and other completion reasons', async (t) => {
  const { fake, fallback } = await startHarness(t);
  const cut = await fallback.generate(request({ adapter: 'support', maxTokens: 2 }));
  t.equal(cut.finishReason, 'length');
  t.equal(cut.text, 'Hello from');
  fake.enqueue({ rawFinishReason: 'CONTENT_FILTERED' });
  t.equal((await fallback.generate(request({ adapter: 'support' }))).finishReason, 'stop');
  t.notOk('stopSequences' in fake.requests[1].body.textGenerationConfig, 'no empty stopSequences sent');
});

t.test('titan: stream', async (t) => {
  const { fallback } = await startHarness(t);
  const { events, error } = await collect(fallback.stream(request({ adapter: 'support', maxTokens: 4 })));
  t.error(error);
  t.same(tokenTexts(events), TOKENS.slice(0, 4));
  const finish = events.at(-1) as FinishEvent;
  t.equal(finish.finishReason, 'length');
  t.same(finish.usage, { promptTokens: 5, completionTokens: 4 });
});

t.test('converse: Converse input, output and usage', async (t) => {
  const { fake, fallback } = await startHarness(t);
  const result = await fallback.generate(request({ adapter: 'chat', stop: ['\n\n'], temperature: 0 }));
  t.same(result, {
    text: FULL_TEXT,
    tokenIds: [],
    finishReason: 'stop',
    usage: { promptTokens: 5, completionTokens: 5 },
    adapter: 'chat',
  });
  const [sent] = fake.requests;
  t.equal(sent.operation, 'converse');
  t.equal(sent.modelId, CONVERSE_MODEL);
  t.same(sent.body, {
    messages: [{ role: 'user', content: [{ text: 'Say hello to the team' }] }],
    inferenceConfig: { maxTokens: 64, temperature: 0, topP: 0.9, stopSequences: ['\n\n'] },
  });
  t.equal(sent.auth?.region, 'us-west-2', 'signed for the target region');

  const cut = await fallback.generate(request({ adapter: 'chat', maxTokens: 1 }));
  t.equal(cut.finishReason, 'length', 'max_tokens -> length');
});

t.test('converse: ConverseStream events become tokens and a finish with usage', async (t) => {
  const { fake, fallback } = await startHarness(t);
  const { events, error } = await collect(fallback.stream(request({ adapter: 'chat' })));
  t.error(error);
  t.same(tokenTexts(events), TOKENS);
  const finish = events.at(-1) as FinishEvent;
  t.equal(finish.finishReason, 'stop');
  t.same(finish.usage, { promptTokens: 5, completionTokens: 5 });
  t.equal(fake.requests[0].operation, 'converse-stream');
});

t.test('converse stream: our stop keeps reading silently until the usage metadata arrives', async (t) => {
  const { fake, fallback } = await startHarness(t);
  fake.setDefault({ text: 'one two three four' });
  const { events, error } = await collect(fallback.stream(request({ adapter: 'chat', stop: [' three'] })));
  t.error(error);
  t.same(tokenTexts(events), ['one', ' two']);
  t.same((events.at(-1) as FinishEvent).usage, { promptTokens: 5, completionTokens: 4 });
});

t.test('requests are SigV4-signed with default-chain credentials, one client per region', async (t) => {
  const { fake, fallback } = await startHarness(t);
  await fallback.generate(request({ adapter: 'sales' }));
  await fallback.generate(request({ adapter: 'chat' }));
  for (const sent of fake.requests) {
    t.equal(sent.auth?.accessKeyId, TEST_ACCESS_KEY_ID);
    t.equal(sent.auth?.service, 'bedrock');
    t.ok(sent.auth?.signedHeaders.includes('x-amz-date'));
    t.notOk(JSON.stringify(sent.headers).includes('loopback-test-secret'), 'the secret never travels');
  }
  t.same(
    fake.requests.map((r) => r.auth?.region),
    ['us-east-1', 'us-west-2'],
  );
});

t.test('a clientFactory builds the SDK clients (here with explicit test credentials)', async (t) => {
  const { BedrockRuntimeClient } = await import('@aws-sdk/client-bedrock-runtime');
  const built: string[] = [];
  const { fake, fallback } = await startHarness(t, {
    fallback: {
      clientFactory: (config) => {
        built.push(String(config.region));
        return new BedrockRuntimeClient({
          ...config,
          credentials: { accessKeyId: 'AKIDFROMFACTORY00001', secretAccessKey: 'factory-secret' },
        });
      },
    },
  });
  await fallback.generate(request({ adapter: 'sales' }));
  await fallback.generate(request({ adapter: 'support' }));
  t.same(built, ['us-east-1'], 'created lazily, once per region');
  t.equal(fake.requests[1].auth?.accessKeyId, 'AKIDFROMFACTORY00001');
});
