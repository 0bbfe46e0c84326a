/**
 * One sequence's own token work, apart from scheduling: what a sequence holds, the token chosen from its logits
 * (constraint, sampling, log-probabilities), its prompt scores and its finish event. The scheduler decides when
 * each runs; nothing here touches rows, slots or the batch.
 */
import type { RowSampling } from './model/batch-runner.js';
import type { EventQueue } from './event-queue.js';
import { logSumExp, sampleToken, topIndices } from './sampling.js';
import type { Detokenizer, TextStream } from './text-stream.js';
import type { GenerateRequest, GenerationEvent, TopLogprob } from './types.js';

/** Per-token logits hook, e.g. JSON-mode constraints: mask before sampling, advance after. */
export interface LogitsConstraint {
  maskLogits(logits: Float32Array): void;
  accept(tokenId: number): void;
  isComplete(): boolean;
}

export interface SequenceInput {
  request: GenerateRequest;
  promptIds: number[];
  constraint?: LogitsConstraint;
  /** Also return the log-probability of every prompt token and the full distribution after the prompt. */
  promptLogprobs?: boolean;
}

export interface PromptScores {
  promptLogprobs: number[];
  lastLogprobs: Float32Array;
}

/** A request as the scheduler tracks it, from submission to its finish event. */
export interface Sequence extends SequenceInput {
  id: number;
  events: EventQueue<GenerationEvent>;
  slot: number;
  row: number;
  /** Prompt tokens already run through the model. */
  prefilled: number;
  /** Tokens held in this sequence's KV row. */
  cached: number;
  nextToken: number | null;
  /**
   * The whole prompt has run: the sequence's row belongs to the decoding rows from then on, even when it finishes
   * at its first token (rows are freed after the step, and a row that finished its prompt sits before every
   * row still in prefill).
   */
  prefillDone: boolean;
  generated: number[];
  logprobs: number[];
  text: TextStream;
  random: () => number;
  submittedAt: number;
  admittedAt: number;
  firstTokenAt: number;
  lastTokenAt: number;
  deadline: number;
  done: boolean;
  scores?: PromptScores;
}

/** Whether a request's tokens carry their log-probabilities (asked for, or implied by top_logprobs). */
export function wantsLogprobs(request: GenerateRequest): boolean {
  return request.logprobs || (request.topLogprobs ?? 0) > 0;
}

/** Prompt logprobs from a prompt chunk's logits (`start`: the chunk's first position in the prompt). */
export function scorePrompt(seq: Sequence, start: number, logits: Float32Array, V: number): void {
  seq.scores ??= { promptLogprobs: [], lastLogprobs: new Float32Array(V) };
  const n = logits.length / V;
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * V, (i + 1) * V);
    const lse = logSumExp(row);
    const next = seq.promptIds[start + i + 1];
    if (next !== undefined) seq.scores.promptLogprobs.push(row[next] - lse);
    else for (let v = 0; v < V; v++) seq.scores.lastLogprobs[v] = row[v] - lse;
  }
}

/**
 * The next token from a row's logits: the constraint masks them, the request's sampling picks (with the draw of
 * `drawn`, the selection the runner was given, when there is one), and the model's own log-probabilities (before
 * any mask or cut) come along where the request wants them.
 */
export function chooseToken(
  seq: Sequence,
  logits: Float32Array,
  tokenizer: Detokenizer,
  drawn?: RowSampling,
): { token: number; logprob?: number; top?: TopLogprob[] } {
  const { request } = seq;
  const wantLogprobs = wantsLogprobs(request);
  const lse = wantLogprobs ? logSumExp(logits) : 0;
  let top: TopLogprob[] | undefined;
  if ((request.topLogprobs ?? 0) > 0) {
    top = topIndices(logits, request.topLogprobs!).map((id) => ({ tokenId: id, text: tokenizer.decode([id], false), logprob: logits[id] - lse }));
  }
  const modelLogprobs = wantLogprobs ? logits.slice() : null;
  if (seq.constraint) seq.constraint.maskLogits(logits);
  const token = sampleToken(logits, request, drawn ? () => drawn.uniform : seq.random);
  seq.constraint?.accept(token);
  return { token, logprob: modelLogprobs ? modelLogprobs[token] - lse : undefined, top };
}

/** The finish event of a sequence that ended without error. */
export function finishEvent(seq: Sequence, reason: 'stop' | 'length', now: number): GenerationEvent {
  return {
    type: 'finish',
    finishReason: reason,
    usage: { promptTokens: seq.promptIds.length, completionTokens: seq.generated.length },
    text: seq.text.fullText,
    tokenIds: seq.generated,
    ...(seq.request.logprobs ? { logprobs: seq.logprobs } : {}),
    timings: {
      queuedMs: seq.admittedAt - seq.submittedAt,
      prefillMs: (seq.firstTokenAt || now) - seq.admittedAt,
      decodeMs: seq.firstTokenAt ? now - seq.firstTokenAt : 0,
      totalMs: now - seq.submittedAt,
    },
  };
}
