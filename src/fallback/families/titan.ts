/**
 * Amazon Titan Text on InvokeModel. Request: inputText + textGenerationConfig (temperature, topP,
 * maxTokenCount, stopSequences). Response: inputTextTokenCount, results[].outputText, tokenCount,
 * completionReason. Stream chunks: outputText, totalOutputTextTokenCount (running total),
 * inputTextTokenCount (first chunk), completionReason (last chunk).
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

/** FINISH(ED), STOP_CRITERIA_MET, CONTENT_FILTERED and RAG_QUERY_WHEN_RAG_DISABLED all end the text early or normally. */
function finishReason(completionReason: unknown): FinishReason | undefined {
  if (completionReason === undefined || completionReason === null) return undefined;
  return completionReason === 'LENGTH' ? 'length' : 'stop';
}

export const titan: InvokeFamily = {
  name: 'titan',

  requestBody(params: BedrockParams) {
    const textGenerationConfig: Record<string, unknown> = {
      temperature: clampUnit(params.temperature),
      topP: clampUnit(params.topP),
      maxTokenCount: params.maxTokens,
    };
    if (params.stop.length > 0) textGenerationConfig.stopSequences = params.stop;
    return { inputText: params.prompt, textGenerationConfig };
  },

  parseResponse(body: unknown): Completion {
    const json = asRecord(body, 'Titan response');
    if (!Array.isArray(json.results) || json.results.length === 0) {
      throw new MalformedResponseError('Titan response has no results');
    }
    const result = asRecord(json.results[0], 'Titan results[0]');
    const text = optionalText(result.outputText, 'results[0].outputText');
    if (text === undefined) throw new MalformedResponseError('Titan results[0] has no outputText');
    return {
      text,
      finishReason: finishReason(result.completionReason) ?? 'stop',
      usage: {
        promptTokens: optionalCount(json.inputTextTokenCount, 'inputTextTokenCount') ?? 0,
        completionTokens: optionalCount(result.tokenCount, 'results[0].tokenCount') ?? 0,
      },
    };
  },

  parseChunk(chunk: unknown): StreamUpdate {
    const json = asRecord(chunk, 'Titan stream chunk');
    const update: StreamUpdate = {};
    const text = optionalText(json.outputText, 'outputText');
    if (text) update.text = text;
    const promptTokens = optionalCount(json.inputTextTokenCount, 'inputTextTokenCount');
    if (promptTokens !== undefined) update.promptTokens = promptTokens;
    const completionTokens = optionalCount(json.totalOutputTextTokenCount, 'totalOutputTextTokenCount');
    if (completionTokens !== undefined) update.completionTokens = completionTokens;
    const finish = finishReason(json.completionReason);
    if (finish) {
      update.finishReason = finish;
      update.end = true;
    }
    applyInvocationMetrics(json, update);
    return update;
  },
};
