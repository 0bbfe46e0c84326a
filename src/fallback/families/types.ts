/** What every Bedrock model family maps to and from. */
import type { FinishReason, Usage } from '../../engine/types.js';

/** Our generate parameters, already lowered to the target's caps and checked to be Bedrock-compatible. */
export interface BedrockParams {
  prompt: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  stop: string[];
}

/** A whole (non-streamed) answer. */
export interface Completion {
  text: string;
  finishReason: FinishReason;
  usage: Usage;
}

/**
 * What one stream event tells us. Token counts are running totals where the family reports them
 * per chunk (Llama, Titan), final values where it reports them once (Converse metadata).
 */
export interface StreamUpdate {
  text?: string;
  /** Set by the event that says the model is done. */
  finishReason?: FinishReason;
  promptTokens?: number;
  completionTokens?: number;
  /** The family's last event was seen; nothing more of interest follows. */
  end?: boolean;
}

/** A family served through InvokeModel / InvokeModelWithResponseStream with its own JSON bodies. */
export interface InvokeFamily {
  readonly name: 'llama' | 'titan';
  requestBody(params: BedrockParams): Record<string, unknown>;
  parseResponse(body: unknown): Completion;
  /** Maps one decoded `chunk` payload. */
  parseChunk(chunk: unknown): StreamUpdate;
}

/** The answer body did not have the family's shape. */
export class MalformedResponseError extends Error {
  constructor(what: string) {
    super(`malformed Bedrock response: ${what}`);
    this.name = 'MalformedResponseError';
  }
}

export function asRecord(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new MalformedResponseError(`${what} is not an object`);
  }
  return value as Record<string, unknown>;
}

/** A non-negative count, or undefined when absent (null counts as absent: Llama sends null after chunk 1). */
export function optionalCount(value: unknown, what: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new MalformedResponseError(`${what} is not a token count`);
  }
  return value;
}

export function optionalText(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new MalformedResponseError(`${what} is not a string`);
  return value;
}

/** Bedrock model families take temperature and top_p in [0, 1]; ours allow temperature up to 2. */
export function clampUnit(value: number): number {
  return Math.min(1, Math.max(0, value));
}

/**
 * Bedrock appends `amazon-bedrock-invocationMetrics` to the last chunk of an InvokeModel stream;
 * its counts are the billed ones, so they win over the family's own running totals.
 */
export function applyInvocationMetrics(chunk: Record<string, unknown>, update: StreamUpdate): void {
  const metrics = chunk['amazon-bedrock-invocationMetrics'];
  if (metrics === undefined || metrics === null) return;
  const json = asRecord(metrics, 'amazon-bedrock-invocationMetrics');
  const promptTokens = optionalCount(json.inputTokenCount, 'inputTokenCount');
  if (promptTokens !== undefined) update.promptTokens = promptTokens;
  const completionTokens = optionalCount(json.outputTokenCount, 'outputTokenCount');
  if (completionTokens !== undefined) update.completionTokens = completionTokens;
}
