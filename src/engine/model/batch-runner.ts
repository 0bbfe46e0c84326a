/**
 * What the scheduler needs from a model runner. Two implementations:
 * - ModelRunner (model-runner.ts): KV cache in host memory, updated in place; returns logits, the host samples.
 *   Best on the CPU provider, where host memory is the device's.
 * - DeviceRunner (device-runner.ts): KV cache, LoRA slot stacks and token selection stay with the execution
 *   provider (GPU memory) between steps; returns token ids and their log-probabilities, logits only on request.
 *
 * Rows: the scheduler keeps its running sequences in rows 0..n-1 and tells the runner when a sequence moves
 * from one row to another (moveRow) after a row frees up.
 */
import type { ModelSpec } from './hf-config.js';

/** Where the decoding state lives between steps; `auto` = device on a GPU provider, host on the CPU. */
export type StateResidency = 'auto' | 'host' | 'device';
export const STATE_RESIDENCIES: readonly StateResidency[] = ['auto', 'host', 'device'];

/** Element type of the weights, activations, KV cache and LoRA inputs; `auto` = float16 on the device path. */
export type ModelDtype = 'auto' | 'float32' | 'float16';
export const MODEL_DTYPES: readonly ModelDtype[] = ['auto', 'float32', 'float16'];

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
}

export interface StepOutput {
  /** [positions or rows, vocab]; present when no sampling was passed. */
  logits?: Float32Array;
  /** Chosen token per row and its log-probability; present when sampling was passed. */
  tokens?: number[];
  logprobs?: number[];
}

export interface BatchRunner {
  readonly spec: ModelSpec;
  /** The execution provider that serves. */
  readonly provider: string;
  /** True when the runner can choose tokens itself: pass `sampling` to get ids back instead of logits. */
  readonly selectsTokens: boolean;
  readonly kvCacheBytes: number;
  /**
   * Runs `tokens` of one row (a prompt or a chunk of it) after `pastLength` cached tokens. Returns the logits of
   * `logitPositions` (relative to the chunk), or, with `sampling`, the token chosen after the single position.
   */
  prefill(row: number, tokens: number[], pastLength: number, slot: number, logitPositions: number[], sampling?: RowSampling): Promise<StepOutput>;
  /**
   * Whole prompts of several new sequences in one step (rows consecutive, after every running row). Returns
   * the logits of each one's last position [rows, vocab], or with `sampling` the token chosen for each.
   * Only where `prefillsTogether`.
   */
  prefillTogether?(rows: Array<{ row: number; tokens: number[]; slot: number }>, sampling?: RowSampling[]): Promise<StepOutput>;
  /** True when prefillTogether can be used. */
  readonly prefillsTogether: boolean;
  /** One token for each of rows 0..rows.length-1: logits [rows, vocab], or chosen tokens with `sampling`. */
  decode(rows: DecodeRow[], sampling?: RowSampling[]): Promise<StepOutput>;
  /** The sequence in row `from` is now in row `to` (whatever was in `to` is finished). */
  moveRow(from: number, to: number, length: number): void;
  release(): Promise<void>;
}
