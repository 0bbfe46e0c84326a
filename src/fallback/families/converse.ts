/**
 * Models served through the Converse API (Converse / ConverseStream): the prompt becomes one user
 * message; parameters go in inferenceConfig. The answer is output.message.content[].text with
 * stopReason and usage; the stream is messageStart, contentBlockDelta*, contentBlockStop,
 * messageStop (stopReason), metadata (usage).
 */
import type { ConverseCommandInput, ConverseCommandOutput, ConverseStreamOutput, StopReason } from '@aws-sdk/client-bedrock-runtime';
import type { FinishReason } from '../../engine/types.js';
import { clampUnit, MalformedResponseError, type BedrockParams, type Completion, type StreamUpdate } from './types.js';

/** max_tokens and a full context window cut the text; everything else (end_turn, stop_sequence, filters) ends it. */
export function converseFinishReason(stopReason: StopReason | string | undefined): FinishReason {
  return stopReason === 'max_tokens' || stopReason === 'model_context_window_exceeded' ? 'length' : 'stop';
}

/** Input for both ConverseCommand and ConverseStreamCommand (they share the shape). */
export function converseInput(modelId: string, params: BedrockParams): ConverseCommandInput {
  return {
    modelId,
    messages: [{ role: 'user', content: [{ text: params.prompt }] }],
    inferenceConfig: {
      maxTokens: params.maxTokens,
      temperature: clampUnit(params.temperature),
      topP: clampUnit(params.topP),
      ...(params.stop.length > 0 ? { stopSequences: params.stop } : {}),
    },
  };
}

export function parseConverseResponse(output: ConverseCommandOutput): Completion {
  const content = output.output?.message?.content;
  if (!Array.isArray(content)) throw new MalformedResponseError('Converse output has no message content');
  const text = content.map((block) => block.text ?? '').join('');
  return {
    text,
    finishReason: converseFinishReason(output.stopReason),
    usage: {
      promptTokens: output.usage?.inputTokens ?? 0,
      completionTokens: output.usage?.outputTokens ?? 0,
    },
  };
}

export function parseConverseStreamEvent(event: ConverseStreamOutput): StreamUpdate {
  if (event.contentBlockDelta) {
    const text = event.contentBlockDelta.delta?.text;
    return text ? { text } : {};
  }
  if (event.messageStop) {
    return { finishReason: converseFinishReason(event.messageStop.stopReason) };
  }
  if (event.metadata) {
    return {
      promptTokens: event.metadata.usage?.inputTokens,
      completionTokens: event.metadata.usage?.outputTokens,
      end: true,
    };
  }
  return {};
}
