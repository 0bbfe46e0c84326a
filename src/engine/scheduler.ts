/**
 * Continuous batching with one forward run per step. Requests wait in a bounded queue; at each step boundary
 * the scheduler admits waiting sequences whose adapter is resident (others wait while their adapter loads)
 * within the batch bounds and the KV-cache memory budget, then runs one step that packs every decoding
 * sequence's next token together with chunks of prompts in prefill, up to `prefillChunk` prompt tokens per
 * step (the idea of vLLM's max_num_batched_tokens), so several prompts prefill together and admission goes on
 * while they do. Finished or cancelled sequences leave at once.
 *
 * KV rows: decoding sequences occupy rows 0..d-1, those in prefill the rows after in admission order. Prompt
 * tokens go to the rows in prefill in that order, so the rows that finish their prompt in a step are always the
 * first ones in prefill: they become decoders without moving. Rows are freed only after a step's results are
 * all handled, which keeps that order intact.
 */
import { EngineError } from './errors.js';
import type { AdapterManager } from './lora/adapter-manager.js';
import type { BatchRunner, RowOutput, RowSampling, StepRow } from './model/batch-runner.js';
import { EventQueue } from './event-queue.js';
import { CAPACITY_QUANTUM } from './model/host-kv-cache.js';
import { seededRandom } from './sampling.js';
import { TextStream, type Detokenizer } from './text-stream.js';
import type { GenerationEvent, TopLogprob } from './types.js';
import { chooseToken, finishEvent, scorePrompt, wantsLogprobs, type PromptScores, type Sequence, type SequenceInput } from './sequence.js';

export type { LogitsConstraint, PromptScores, SequenceInput } from './sequence.js';

export interface SchedulerOptions {
  maxBatch: number;
  /** Bound on the sum of (prompt + max_tokens) over running sequences: the KV positions they may claim. */
  maxBatchTokens: number;
  maxQueue: number;
  /** Prompt tokens run per step, over all prompts in prefill (decoding rows add one token each). */
  prefillChunk: number;
  /** Bytes the KV cache may take for the sequences in flight; 0 = unbounded. */
  kvBudgetBytes: number;
  maxSequenceLength: number;
  requestTimeoutMs: number;
  eosTokenIds: number[];
}

/** Timing hooks for metrics; the engine stays free of any metrics library. */
export interface GenerationObserver {
  firstToken(adapter: string | null, msSinceSubmit: number): void;
  nextToken(adapter: string | null, msSincePrevious: number): void;
  finished(adapter: string | null, completionTokens: number): void;
  /** One forward run: its wall time and what it held (decoding rows' tokens, prompt tokens). */
  step?(ms: number, shape: StepShape): void;
}

export interface StepShape {
  decodeRows: number;
  promptTokens: number;
}

export interface SchedulerStats {
  steps: number;
  decodeSteps: number;
  decodeRowsTotal: number;
  prefillTokens: number;
  /** Steps that prefilled several prompts together. */
  prefillGroups: number;
  /** Steps that ran decoding rows and prompt chunks in the same forward run. */
  mixedSteps: number;
  decodeTokens: number;
  completed: number;
  cancelled: number;
  failed: number;
}

export class Scheduler {
  observer: GenerationObserver | null = null;
  private waiting: Sequence[] = [];
  private rows: Sequence[] = [];
  private nextId = 1;
  private looping = false;
  /** Sequences finished while a step's results are handled; their rows are freed after. */
  private finishedInStep: Sequence[] | null = null;
  private wake: (() => void) | null = null;
  readonly stats: SchedulerStats = {
    steps: 0,
    decodeSteps: 0,
    decodeRowsTotal: 0,
    prefillTokens: 0,
    prefillGroups: 0,
    mixedSteps: 0,
    decodeTokens: 0,
    completed: 0,
    cancelled: 0,
    failed: 0,
  };

  constructor(
    private readonly runner: BatchRunner,
    private readonly adapters: AdapterManager,
    private readonly tokenizer: Detokenizer & { idToToken(id: number): string | undefined },
    private readonly options: SchedulerOptions,
  ) {}

  get queueDepth(): number {
    return this.waiting.length;
  }

  get batchSize(): number {
    return this.rows.length;
  }

  /**
   * Load as the model server protocol reports it (/metrics): the adapters that queued sequences name, and the
   * share of the KV budget that admission has handed to the running sequences (rows over max batch without one).
   */
  get load(): { waitingAdapters: string[]; kvUsage: number } {
    const waitingAdapters = [...new Set(this.waiting.flatMap((s) => (s.request.adapter === null ? [] : [s.request.adapter])))];
    const longest = this.rows.reduce((n, s) => Math.max(n, s.promptIds.length + s.request.maxTokens), 0);
    const budget = this.options.kvBudgetBytes;
    const kvUsage = budget > 0 ? Math.min(1, this.kvBytes(this.rows.length, longest) / budget) : this.rows.length / this.options.maxBatch;
    return { waitingAdapters, kvUsage };
  }

  /** Queues a sequence; throws queue_full when the queue is at its bound. */
  submit(input: SequenceInput): AsyncIterable<GenerationEvent> & { scores: () => PromptScores | undefined } {
    if (this.waiting.length >= this.options.maxQueue) {
      throw new EngineError('queue_full', `The queue holds ${this.waiting.length} requests, its limit.`, { retryAfterSeconds: 1 });
    }
    const length = input.promptIds.length + input.request.maxTokens;
    if (this.kvBytes(1, length) > this.options.kvBudgetBytes && this.options.kvBudgetBytes > 0) {
      throw new EngineError(
        'kv_budget_exceeded',
        `${input.promptIds.length} prompt tokens + max_tokens ${input.request.maxTokens} need ${Math.ceil(this.kvBytes(1, length) / 2 ** 20)} MiB of KV cache, more than the server's KV-cache budget of ${Math.floor(this.options.kvBudgetBytes / 2 ** 20)} MiB (--kv-cache-mb).`,
      );
    }
    const now = performance.now();
    const seq: Sequence = {
      ...input,
      id: this.nextId++,
      events: new EventQueue(),
      slot: -1,
      row: -1,
      prefilled: 0,
      cached: 0,
      nextToken: null,
      prefillDone: false,
      generated: [],
      logprobs: [],
      text: new TextStream(this.tokenizer, input.request.stop),
      random: seededRandom(input.request.seed ?? Math.floor(Math.random() * 2 ** 32)),
      submittedAt: now,
      admittedAt: 0,
      firstTokenAt: 0,
      lastTokenAt: 0,
      deadline: now + this.options.requestTimeoutMs,
      done: false,
    };
    this.waiting.push(seq);
    input.request.signal?.addEventListener('abort', () => this.poke(), { once: true });
    this.poke();
    const events = seq.events;
    return { [Symbol.asyncIterator]: () => events[Symbol.asyncIterator](), scores: () => seq.scores };
  }

  private poke(): void {
    if (this.wake) {
      const w = this.wake;
      this.wake = null;
      w();
    }
    if (!this.looping) {
      this.looping = true;
      void this.loop().finally(() => (this.looping = false));
    }
  }

  private async loop(): Promise<void> {
    while (this.waiting.length || this.rows.length) {
      this.dropCancelled();
      this.admit();
      if (this.rows.length) {
        await this.step();
        this.stats.steps++;
      } else if (this.waiting.length) await this.idle();
    }
  }

  /** KV bytes `rows` rows of up to `length` positions take (the host cache's capacities are rounded up). */
  private kvBytes(rows: number, length: number): number {
    return rows * Math.ceil(length / CAPACITY_QUANTUM) * CAPACITY_QUANTUM * this.runner.kvBytesPerToken;
  }

  /** Waits for an adapter load or slot release, or a new request, with a timeout to re-check deadlines. */
  private idle(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 50);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
      void this.adapters.onChange().then(() => this.wake?.());
    });
  }

  private dropCancelled(): void {
    const now = performance.now();
    for (const s of [...this.waiting, ...this.rows]) {
      if (s.request.signal?.aborted) {
        this.stats.cancelled++;
        this.finish(s, new EngineError('cancelled', 'The request was cancelled.'));
      } else if (now > s.deadline) {
        this.stats.cancelled++;
        this.finish(s, new EngineError('timeout', `The request ran longer than ${this.options.requestTimeoutMs} ms.`));
      }
    }
  }

  /**
   * Admits waiting sequences, in order, while the batch has room: rows, KV positions claimed (prompt +
   * max_tokens), the KV-cache budget and a device slot for the adapter. One that does not fit now waits; later
   * ones whose adapter is resident may go ahead of it.
   */
  private admit(): void {
    let claimed = this.rows.reduce((n, s) => n + s.promptIds.length + s.request.maxTokens, 0);
    let longest = this.rows.reduce((n, s) => Math.max(n, s.promptIds.length + s.request.maxTokens), 0);
    for (const seq of [...this.waiting]) {
      if (this.rows.length >= this.options.maxBatch) return;
      const claim = seq.promptIds.length + seq.request.maxTokens;
      if (this.rows.length > 0 && claimed + claim > this.options.maxBatchTokens) continue;
      const kvAfter = this.kvBytes(this.rows.length + 1, Math.max(longest, claim));
      if (this.rows.length > 0 && this.options.kvBudgetBytes > 0 && kvAfter > this.options.kvBudgetBytes) continue;
      let slot: number | null;
      try {
        slot = this.adapters.tryAcquire(seq.request.adapter);
      } catch (e) {
        this.finish(seq, e);
        continue;
      }
      if (slot === null) continue;
      this.waiting = this.waiting.filter((s) => s !== seq);
      seq.slot = slot;
      seq.row = this.rows.length;
      seq.admittedAt = performance.now();
      this.rows.push(seq);
      claimed += claim;
      longest = Math.max(longest, claim);
    }
  }

  /** One forward run: every decoding row's next token, then prompt chunks up to the step's prompt budget. */
  private async step(): Promise<void> {
    const decoders = this.rows.filter((s) => s.prefillDone);
    const prefills: Array<{ seq: Sequence; start: number; chunk: number[] }> = [];
    let budget = this.options.prefillChunk;
    for (const seq of this.rows.slice(decoders.length)) {
      if (budget <= 0) break;
      const chunk = seq.promptIds.slice(seq.prefilled, seq.prefilled + budget);
      prefills.push({ seq, start: seq.prefilled, chunk });
      budget -= chunk.length;
    }
    const plan = {
      decode: decoders.map((s): StepRow => ({
        row: s.row,
        tokens: [s.nextToken!],
        pastLength: s.cached,
        slot: s.slot,
        logitPositions: [0],
        sampling: this.selection(s),
      })),
      prefill: prefills.map(({ seq, start, chunk }): StepRow => {
        const last = start + chunk.length === seq.promptIds.length;
        const logitPositions = seq.promptLogprobs ? chunk.map((_, i) => i) : last ? [chunk.length - 1] : [];
        const sampling = last && !seq.promptLogprobs && seq.request.maxTokens > 0 ? this.selection(seq) : undefined;
        return { row: seq.row, tokens: chunk, pastLength: seq.cached, slot: seq.slot, logitPositions, sampling };
      }),
    };
    const all = [...decoders, ...prefills.map((p) => p.seq)];
    let outputs: RowOutput[];
    const startedAt = performance.now();
    try {
      outputs = await this.runner.step(plan);
    } catch (e) {
      // An engine failure fails the sequences of that step, never the process or other steps.
      for (const s of all) {
        if (s.done) continue;
        this.stats.failed++;
        this.finish(s, new EngineError('internal', 'The model failed while running this request.', { cause: e }));
      }
      return;
    }
    this.countStep(decoders.length, prefills);
    this.observer?.step?.(performance.now() - startedAt, { decodeRows: decoders.length, promptTokens: prefills.reduce((n, p) => n + p.chunk.length, 0) });
    // Count the new positions first, then handle results; rows are freed after, so no row moves meanwhile.
    for (const s of decoders) s.cached++;
    for (const p of prefills) {
      p.seq.prefilled += p.chunk.length;
      p.seq.cached += p.chunk.length;
      if (p.seq.prefilled === p.seq.promptIds.length) p.seq.prefillDone = true;
    }
    this.finishedInStep = [];
    try {
      decoders.forEach((s, i) => {
        if (!s.done) this.isolated(s, () => this.onOutput(s, outputs[i], plan.decode[i].sampling));
      });
      prefills.forEach(({ seq, start }, i) => {
        if (!seq.done) this.isolated(seq, () => this.onPrefilled(seq, start, outputs[decoders.length + i], plan.prefill[i].sampling));
      });
    } finally {
      const finished = this.finishedInStep;
      this.finishedInStep = null;
      for (const s of finished) this.freeRow(s);
    }
  }

  private countStep(decoders: number, prefills: Array<{ chunk: number[] }>): void {
    if (decoders) {
      this.stats.decodeSteps++;
      this.stats.decodeRowsTotal += decoders;
      this.stats.decodeTokens += decoders;
    }
    if (prefills.length > 1) this.stats.prefillGroups++;
    if (decoders && prefills.length) this.stats.mixedSteps++;
    for (const p of prefills) this.stats.prefillTokens += p.chunk.length;
  }

  /** A prompt chunk's results: prompt log-probabilities, and after the last chunk the first token. */
  private onPrefilled(seq: Sequence, start: number, out: RowOutput, drawn?: RowSampling): void {
    if (seq.promptLogprobs) scorePrompt(seq, start, out.logits!, this.runner.spec.vocabSize);
    if (!seq.prefillDone) return;
    if (seq.request.maxTokens === 0) {
      this.finish(seq);
      return;
    }
    if (out.token !== undefined) this.onToken(seq, out.token, out.logprob);
    else {
      const V = this.runner.spec.vocabSize;
      const n = out.logits!.length / V;
      this.onLogits(seq, out.logits!.subarray((n - 1) * V, n * V), drawn);
    }
  }

  private onOutput(seq: Sequence, out: RowOutput, drawn?: RowSampling): void {
    if (out.token !== undefined) this.onToken(seq, out.token, out.logprob);
    else this.onLogits(seq, out.logits!, drawn);
  }

  /**
   * The row's selection for a runner that chooses tokens in the graph (taking its draw), or undefined where
   * the runner cannot or the sequence needs the logits on the host (constraint, top log-probabilities).
   */
  private selection(seq: Sequence): RowSampling | undefined {
    if (!this.runner.selectsTokens || seq.constraint || (seq.request.topLogprobs ?? 0) > 0) return undefined;
    const { temperature, topK, topP } = seq.request;
    return { temperature, topK, topP, uniform: temperature > 0 ? seq.random() : 0 };
  }

  /** A failure in one sequence's own work (its logits hook, sampling, detokenizing) fails that sequence only. */
  private isolated(seq: Sequence, work: () => void): void {
    try {
      work();
    } catch (e) {
      this.stats.failed++;
      this.finish(seq, new EngineError('internal', 'The request failed while choosing its next token.', { cause: e }));
    }
  }

  /** `drawn`: the selection passed to the runner, whose draw is used when the runner returned logits instead. */
  private onLogits(seq: Sequence, logits: Float32Array, drawn?: RowSampling): void {
    const { token, logprob, top } = chooseToken(seq, logits, this.tokenizer, drawn);
    this.onToken(seq, token, logprob, top);
  }

  /** `logprob` is the chosen token's log-probability under the model (before any constraint or sampling cut). */
  private onToken(seq: Sequence, token: number, logprob?: number, top?: TopLogprob[]): void {
    const { request } = seq;
    const now = performance.now();
    if (seq.firstTokenAt === 0) {
      seq.firstTokenAt = now;
      this.observer?.firstToken(request.adapter, now - seq.submittedAt);
    } else this.observer?.nextToken(request.adapter, now - seq.lastTokenAt);
    seq.lastTokenAt = now;
    const isEos = this.options.eosTokenIds.includes(token) && !request.ignoreEos;
    if (isEos) {
      this.finish(seq, undefined, 'stop');
      return;
    }
    seq.generated.push(token);
    if (!wantsLogprobs(request)) logprob = undefined;
    if (logprob !== undefined) seq.logprobs.push(logprob);
    const text = seq.text.push(token);
    seq.events.push({ type: 'token', tokenId: token, text, ...(logprob !== undefined ? { logprob } : {}), ...(top ? { topLogprobs: top } : {}) });
    if (seq.text.stopped) this.finish(seq, undefined, 'stop');
    else if (seq.constraint?.isComplete()) this.finish(seq, undefined, 'stop');
    else if (seq.generated.length >= request.maxTokens || seq.cached + 1 >= this.options.maxSequenceLength) this.finish(seq, undefined, 'length');
    else seq.nextToken = token;
  }

  private finish(seq: Sequence, error?: unknown, reason: 'stop' | 'length' = 'length'): void {
    if (seq.done) return;
    seq.done = true;
    this.waiting = this.waiting.filter((s) => s !== seq);
    if (seq.row >= 0) {
      if (this.finishedInStep) this.finishedInStep.push(seq);
      else this.freeRow(seq);
    }
    if (seq.slot >= 0) this.adapters.release(seq.slot);
    if (error) {
      seq.events.fail(error);
      return;
    }
    this.stats.completed++;
    this.observer?.finished(seq.request.adapter, seq.generated.length);
    const tail = seq.text.flush();
    if (tail) seq.events.push({ type: 'token', tokenId: -1, text: tail });
    seq.events.push(finishEvent(seq, reason, performance.now()));
    seq.events.close();
  }

  /** Removes a sequence's KV row and keeps rows contiguous: decoders first, then those in prefill. */
  private freeRow(seq: Sequence): void {
    const r = seq.row;
    seq.row = -1;
    const last = this.rows.length - 1;
    if (seq.prefillDone) {
      const lastDecoder = this.rows.filter((s) => s.prefillDone).length - 1;
      if (r !== lastDecoder) this.moveTo(this.rows[lastDecoder], r);
      if (lastDecoder !== last) this.moveTo(this.rows[last], lastDecoder);
    } else if (r !== last) this.moveTo(this.rows[last], r);
    this.rows.length = last;
  }

  private moveTo(seq: Sequence, row: number): void {
    this.runner.moveRow(seq.row, row, seq.cached);
    this.rows[row] = seq;
    seq.row = row;
  }
}
