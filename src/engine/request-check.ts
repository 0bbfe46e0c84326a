/**
 * The checks a request passes before it is queued: run by the engine (authoritative) and by the HTTP
 * thread's EngineClient on its mirror, so that a bad request fails at once without a round trip.
 * No onnxruntime here: the HTTP thread imports this.
 */
import { EngineError } from './errors.js';
import type { GenerateRequest } from './types.js';

/** What the engine checks before queueing (also run by the HTTP thread's client, on its mirror, to fail fast). */
export interface RequestLimits {
  /** maxPositions: the model's own context (config.json's max_position_embeddings), to say which limit applies. */
  spec: { vocabSize: number; maxPositions?: number };
  maxSequenceLength: number;
  adapters: { check(name: string): void };
}

export function checkRequest(request: GenerateRequest, promptIds: number[], limits: RequestLimits): void {
  if (request.adapter !== null) limits.adapters.check(request.adapter);
  if (promptIds.length === 0) throw new EngineError('invalid_request', 'The prompt is empty.');
  const vocab = limits.spec.vocabSize;
  const bad = promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
  if (bad !== undefined) throw new EngineError('invalid_request', `prompt_token_ids holds ${bad}, outside this model's vocabulary of ${vocab}.`);
  if (promptIds.length + request.maxTokens > limits.maxSequenceLength) {
    const model = limits.spec.maxPositions;
    const which =
      model !== undefined && limits.maxSequenceLength < model
        ? `the context this server is configured for (--max-sequence-length / MAX_SEQUENCE_LENGTH; the model itself allows ${model})`
        : `the model's context (max_position_embeddings in its config.json${model !== undefined ? '' : ', or --max-sequence-length'})`;
    throw new EngineError(
      'context_length_exceeded',
      `The prompt has ${promptIds.length} tokens and max_tokens is ${request.maxTokens}; together they must not exceed ${limits.maxSequenceLength} tokens, ${which}.`,
    );
  }
}
