/**
 * Meta Llama on InvokeModel. Request: prompt, temperature, top_p, max_gen_len. Response:
 * generation, prompt_token_count, generation_token_count, stop_reason ('stop' | 'length').
 * Stream chunks have the same fields: prompt_token_count on the first chunk only,
 * generation_token_count as a running total, stop_reason on the last chunk.
 * Llama on Bedrock takes no stop sequences and no top_k; stop sequences are applied by the caller.
 */
import type { FinishReason } from '../../engine/types.js';
import {
  applyInvocationMetrics,
  asRecord,
  clampUnit,
  MalformedResponseError,
  optionalCount,
  optionalText,
  type BedrockParams,
  type Completion,
  type InvokeFamily,
  type StreamUpdate,
} from './types.js';

function finishReason(stopReason: unknown): FinishReason | undefined {
  if (stopReason === undefined || stopReason === null) return undefined;
  return stopReason === 'length' ? 'length' : 'stop';
}

export const llama: InvokeFamily = {
  name: 'llama',

  requestBody(params: BedrockParams) {
    return {
      prompt: params.prompt,
      temperature: clampUnit(params.temperature),
      top_p: clampUnit(params.topP),
      max_gen_len: params.maxTokens,
    };
  },

  parseResponse(body: unknown): Completion {
    const json = asRecord(body, 'Llama response');
    const text = optionalText(json.generation, 'generation');
    if (text === undefined) throw new MalformedResponseError('Llama response has no generation');
    return {
      text,
      finishReason: finishReason(json.stop_reason) ?? 'stop',
      usage: {
        promptTokens: optionalCount(json.prompt_token_count, 'prompt_token_count') ?? 0,
        completionTokens: optionalCount(json.generation_token_count, 'generation_token_count') ?? 0,
      },
    };
  },

  parseChunk(chunk: unknown): StreamUpdate {
    const json = asRecord(chunk, 'Llama stream chunk');
    const update: StreamUpdate = {};
    const text = optionalText(json.generation, 'generation');
    if (text) update.text = text;
    const promptTokens = optionalCount(json.prompt_token_count, 'prompt_token_count');
    if (promptTokens !== undefined) update.promptTokens = promptTokens;
    const completionTokens = optionalCount(json.generation_token_count, 'generation_token_count');
    if (completionTokens !== undefined) update.completionTokens = completionTokens;
    const finish = finishReason(json.stop_reason);
    if (finish) {
      update.finishReason = finish;
      update.end = true;
    }
    applyInvocationMetrics(json, update);
    return update;
  },
};
