/**
 * What the scheduler needs from a model runner. Two implementations:
 * - ModelRunner (model-runner.ts): KV cache in host memory (host-kv-cache.ts), one packed forward run per step
 *   (packed-attention.ts); greedy rows get their token from the graph, the others logits that the host samples.
 *   Best on the CPU provider.
 * - DeviceRunner (device-runner.ts): KV cache, LoRA slot stacks and token selection stay with the execution
 *   provider (GPU memory) between steps; returns token ids and their log-probabilities, logits only on request.
 *
 * Rows: the scheduler keeps its decoding sequences in rows 0..d-1 and those in prefill in rows d..n-1, and tells
 * the runner when a sequence moves from one row to another (moveRow) after a row frees up.
 */
import type { ModelSpec } from './hf-config.js';

/** Where the decoding state lives between steps; `auto` = device on a GPU provider, host on the CPU. */
export type StateResidency = 'auto' | 'host' | 'device';

/** Element type of the weights, activations, KV cache and LoRA inputs; `auto` = float16 on the device path. */
export type ModelDtype = 'auto' | 'float32' | 'float16';

export interface DecodeRow {
  token: number;
  /** Tokens already in this row's cache. */
  pastLength: number;
  slot: number;
}

/** A row's selection parameters and its uniform draw in [0, 1), for runners that select in the graph. */
export interface RowSampling {
  temperature: number;
  topK: number;
  topP: number;
  uniform: number;
  /** The chosen token's log-probability is wanted (the host runner computes it only then). */
  logprob?: boolean;
}

/** What one call of the device runner's primitives returns (logits, or tokens chosen in the graph). */
export interface StepOutput {
  /** [positions or rows, vocab]; present when no sampling was passed. */
  logits?: Float32Array;
  /** Chosen token per row and its log-probability; present when sampling was passed. */
  tokens?: number[];
  logprobs?: number[];
}

/** One row's part of a step: its next token (decoding) or a chunk of its prompt (prefill). */
export interface StepRow {
  row: number;
  tokens: number[];
  /** Tokens already in this row's cache. */
  pastLength: number;
  slot: number;
  /** Positions of `tokens` whose logits are wanted (empty for a prompt chunk that is not the last). */
  logitPositions: number[];
  /** Only where the runner selects tokens: choose the token after the last position in the graph. */
  sampling?: RowSampling;
}

/**
 * One step: every decoding row (rows 0..d-1, one token each) and prompt chunks of rows in prefill (rows d and
 * after, ascending and consecutive).
 */
export interface StepPlan {
  decode: StepRow[];
  prefill: StepRow[];
}

/** A row's result: the logits of its logit positions [positions, vocab], or the token the graph chose. */
export interface RowOutput {
  logits?: Float32Array;
  token?: number;
  logprob?: number;
}

export interface BatchRunner {
  readonly spec: ModelSpec;
  /** The execution provider that serves. */
  readonly provider: string;
  /** True when the runner can choose tokens itself: pass `sampling` to get ids back instead of logits. */
  readonly selectsTokens: boolean;
  /** Bytes the KV cache holds now. */
  readonly kvCacheBytes: number;
  /** Bytes one cached token takes (all layers, keys and values): what admission by KV budget counts. */
  readonly kvBytesPerToken: number;
  /** Runs one step; results in the plan's order (decode rows, then prefill rows). */
  step(plan: StepPlan): Promise<RowOutput[]>;
  /** The sequence in row `from` is now in row `to` (whatever was in `to` is finished). */
  moveRow(from: number, to: number, length: number): void;
  /** Rows from `count` on hold nothing any more. */
  freeRowsFrom(count: number): void;
  release(): Promise<void>;
}
