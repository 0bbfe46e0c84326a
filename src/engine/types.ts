/** Shapes shared by the engine, the HTTP routes and the Bedrock fallback. No HTTP here. */

export type FinishReason = 'stop' | 'length';

/** What a caller asks the engine (or a fallback route) to generate. */
export interface GenerateRequest {
  /** Adapter name, or null for the bare base model. */
  adapter: string | null;
  /** Text prompt; ignored when promptTokenIds is given. */
  prompt?: string;
  promptTokenIds?: number[];
  maxTokens: number;
  /** 0 means greedy. */
  temperature: number;
  topP: number;
  /** 0 means no top-k cut. */
  topK: number;
  seed?: number;
  stop: string[];
  ignoreEos: boolean;
  logprobs: boolean;
  /** How many alternatives per position to return with logprobs (OpenAI's top_logprobs); 0 = none. */
  topLogprobs?: number;
  /** Aborts the generation (client went away, timeout). */
  signal?: AbortSignal;
}

export interface TopLogprob {
  tokenId: number;
  text: string;
  logprob: number;
}

/** One generated token, as streamed. `text` is the newly decodable text (may be empty mid-character). */
export interface TokenEvent {
  type: 'token';
  tokenId: number;
  text: string;
  logprob?: number;
  topLogprobs?: TopLogprob[];
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface FinishEvent {
  type: 'finish';
  finishReason: FinishReason;
  usage: Usage;
  /** The full generated text, stop sequence excluded. */
  text: string;
  tokenIds: number[];
  logprobs?: number[];
  timings: { queuedMs: number; prefillMs: number; decodeMs: number; totalMs: number };
}

export type GenerationEvent = TokenEvent | FinishEvent;

/** Collected result of a non-streaming generation. */
export interface GenerateResult {
  text: string;
  tokenIds: number[];
  logprobs?: number[];
  topLogprobs?: TopLogprob[][];
  finishReason: FinishReason;
  usage: Usage;
  adapter: string | null;
}
