/**
 * What one forward run holds: every decoding row's next token, then chunks of the prompts in prefill, in row
 * order, until the step's prompt-token budget (`prefillChunk`) is spent. A prompt longer than what is left of the
 * budget gets a chunk now and the rest in later steps, so running decodes keep going while it prefills.
 */
import type { RowSampling, StepPlan, StepRow } from './model/batch-runner.js';

/** What planning reads of a sequence. */
export interface PlannableSequence {
  row: number;
  slot: number;
  promptIds: readonly number[];
  /** Prompt tokens already run. */
  prefilled: number;
  /** Tokens in the sequence's KV row. */
  cached: number;
  /** A decoder's next input token. */
  nextToken: number | null;
  /** Every prompt position's logits are wanted (prompt log-probabilities). */
  promptLogprobs?: boolean;
  request: { maxTokens: number };
}

export interface PlannedPrefill<S> {
  seq: S;
  /** The chunk's first prompt position. */
  start: number;
  chunk: number[];
}

export interface PlannedStep<S> {
  plan: StepPlan;
  decoders: S[];
  /** The rows in prefill that get a chunk this step, in row order (`plan.prefill` in the same order). */
  prefills: Array<PlannedPrefill<S>>;
}

/**
 * `selection` gives a row's in-graph token selection (or undefined for logits back on the host); it is asked
 * for each decoder and for each prompt whose last chunk runs now, never for others.
 */
export function planStep<S extends PlannableSequence>(
  decoders: S[],
  inPrefill: readonly S[],
  prefillChunk: number,
  selection: (seq: S) => RowSampling | undefined,
): PlannedStep<S> {
  const prefills: Array<PlannedPrefill<S>> = [];
  let budget = prefillChunk;
  for (const seq of inPrefill) {
    if (budget <= 0) break;
    const chunk = seq.promptIds.slice(seq.prefilled, seq.prefilled + budget);
    prefills.push({ seq, start: seq.prefilled, chunk });
    budget -= chunk.length;
  }
  const plan: StepPlan = {
    decode: decoders.map((s): StepRow => ({
      row: s.row,
      tokens: [s.nextToken!],
      pastLength: s.cached,
      slot: s.slot,
      logitPositions: [0],
      sampling: selection(s),
    })),
    prefill: prefills.map(({ seq, start, chunk }): StepRow => {
      const last = start + chunk.length === seq.promptIds.length;
      const logitPositions = seq.promptLogprobs ? chunk.map((_, i) => i) : last ? [chunk.length - 1] : [];
      const sampling = last && !seq.promptLogprobs && seq.request.maxTokens > 0 ? selection(seq) : undefined;
      return { row: seq.row, tokens: chunk, pastLength: seq.cached, slot: seq.slot, logitPositions, sampling };
    }),
  };
  return { plan, decoders, prefills };
}
