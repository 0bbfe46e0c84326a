/**
 * Which of our generate parameters Bedrock can honour, and how they are lowered to a target's caps.
 * Bedrock takes text, not our tokenizer's ids, and returns no logprobs. top_k, seed and ignore_eos
 * have no portable Bedrock equivalent and are not sent.
 */
import { AppError } from '../errors.js';
import type { GenerateRequest } from '../engine/types.js';
import type { BedrockTarget } from './bedrock-config.js';
import type { BedrockParams } from './families/types.js';

/** Why this request cannot be served by Bedrock, or null when it can. */
export function bedrockIncompatibility(req: GenerateRequest): string | null {
  if (req.promptTokenIds !== undefined) return 'prompts given as token ids cannot be sent to Bedrock';
  if (typeof req.prompt !== 'string') return 'a text prompt is required';
  if (req.logprobs || (req.topLogprobs ?? 0) > 0) return 'Bedrock targets do not return logprobs';
  return null;
}

export function toBedrockParams(req: GenerateRequest, target: BedrockTarget): BedrockParams {
  const reason = bedrockIncompatibility(req);
  if (reason !== null) throw new AppError('invalid_request', `This request cannot use the Bedrock route: ${reason}.`);
  return {
    prompt: req.prompt as string,
    maxTokens: target.maxTokens === undefined ? req.maxTokens : Math.min(req.maxTokens, target.maxTokens),
    temperature: req.temperature,
    topP: req.topP,
    stop: req.stop,
  };
}
