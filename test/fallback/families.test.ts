/** The family mappings on their own, for shapes the fake does not produce. */
import t from 'tap';
import { converseFinishReason, converseInput, parseConverseResponse, parseConverseStreamEvent } from '../../src/fallback/families/converse.js';
import { llama } from '../../src/fallback/families/llama.js';
import { titan } from '../../src/fallback/families/titan.js';
import { MalformedResponseError, type BedrockParams } from '../../src/fallback/families/types.js';
import { toBedrockParams } from '../../src/fallback/request-params.js';
import { request } from './harness.js';

const params: BedrockParams = { prompt: 'p', maxTokens: 10, temperature: -1, topP: 1.5, stop: [] };

t.test('parameters are clamped to Bedrock ranges', async (t) => {
  t.same(llama.requestBody(params), { prompt: 'p', temperature: 0, top_p: 1, max_gen_len: 10 });
  t.same(titan.requestBody(params), { inputText: 'p', textGenerationConfig: { temperature: 0, topP: 1, maxTokenCount: 10 } });
  t.same(converseInput('m', params).inferenceConfig, { maxTokens: 10, temperature: 0, topP: 1 });
});

t.test('toBedrockParams caps maxTokens and drops what Bedrock cannot take', async (t) => {
  const target = { modelId: 'm', family: 'llama' as const, region: 'us-east-1', timeoutMs: 1, maxRetries: 0, localAlso: false };
  t.same(toBedrockParams(request({ maxTokens: 50, topK: 40, seed: 7, ignoreEos: true }), { ...target, maxTokens: 20 }), {
    prompt: 'Say hello to the team',
    maxTokens: 20,
    temperature: 0.5,
    topP: 0.9,
    stop: [],
  });
  t.equal(toBedrockParams(request({ maxTokens: 5 }), { ...target, maxTokens: 20 }).maxTokens, 5);
  t.throws(() => toBedrockParams(request({ topLogprobs: 2 }), target), { code: 'invalid_request' });
  t.throws(() => toBedrockParams(request({ prompt: undefined }), target), { message: /text prompt is required/ });
});

t.test('llama parsing', async (t) => {
  t.same(llama.parseChunk({ generation: '', prompt_token_count: null, generation_token_count: 3, stop_reason: null }), {
    completionTokens: 3,
  });
  t.same(
    llama.parseChunk({
      generation: 'x',
      generation_token_count: 4,
      stop_reason: 'stop',
      'amazon-bedrock-invocationMetrics': { inputTokenCount: 9, outputTokenCount: 5 },
    }),
    { text: 'x', completionTokens: 5, promptTokens: 9, finishReason: 'stop', end: true },
    'invocation metrics win',
  );
  t.throws(() => llama.parseResponse({ outputs: [] }), MalformedResponseError);
  t.throws(() => llama.parseResponse({ generation: 'x', prompt_token_count: 'many' }), MalformedResponseError);
  t.throws(() => llama.parseChunk('text'), MalformedResponseError);
});

t.test('titan parsing', async (t) => {
  for (const [reason, finish] of [
    ['FINISH', 'stop'],
    ['FINISHED', 'stop'],
    ['STOP_CRITERIA_MET', 'stop'],
    ['CONTENT_FILTERED', 'stop'],
    ['LENGTH', 'length'],
  ]) {
    const parsed = titan.parseResponse({ inputTextTokenCount: 2, results: [{ outputText: 'a', tokenCount: 1, completionReason: reason }] });
    t.equal(parsed.finishReason, finish, `${reason} -> ${finish}`);
  }
  t.throws(() => titan.parseResponse({ results: [] }), MalformedResponseError);
  t.throws(() => titan.parseResponse({ results: [{ tokenCount: 1 }] }), MalformedResponseError);
});

t.test('converse parsing', async (t) => {
  for (const [reason, finish] of [
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['guardrail_intervened', 'stop'],
    ['content_filtered', 'stop'],
    ['max_tokens', 'length'],
    ['model_context_window_exceeded', 'length'],
  ]) {
    t.equal(converseFinishReason(reason), finish, `${reason} -> ${finish}`);
  }
  const output = {
    $metadata: {},
    output: { message: { role: 'assistant' as const, content: [{ text: 'a' }, { text: 'b' }] } },
    stopReason: 'end_turn' as const,
    usage: { inputTokens: 3, outputTokens: 2, totalTokens: 5 },
    metrics: { latencyMs: 1 },
  };
  t.same(parseConverseResponse(output), { text: 'ab', finishReason: 'stop', usage: { promptTokens: 3, completionTokens: 2 } });
  t.throws(() => parseConverseResponse({ ...output, output: undefined }), MalformedResponseError);
  t.same(parseConverseStreamEvent({ messageStart: { role: 'assistant' } }), {});
  t.same(parseConverseStreamEvent({ contentBlockDelta: { contentBlockIndex: 0, delta: { text: 'hi' } } }), { text: 'hi' });
  t.same(parseConverseStreamEvent({ messageStop: { stopReason: 'max_tokens' } }), { finishReason: 'length' });
  t.same(parseConverseStreamEvent({ metadata: { usage: { inputTokens: 1, outputTokens: 2, totalTokens: 3 }, metrics: { latencyMs: 1 } } }), {
    promptTokens: 1,
    completionTokens: 2,
    end: true,
  });
});
