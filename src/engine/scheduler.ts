/**
 * Continuous batching with one forward run per step. Requests wait in a bounded queue; at each step boundary
 * the scheduler admits waiting sequences whose adapter is resident (others wait while their adapter loads)
 * within the batch bounds and the KV-cache memory budget, then runs one step that packs every decoding
 * sequence's next token together with chunks of prompts in prefill, up to `prefillChunk` prompt tokens per
 * step (the idea of vLLM's max_num_batched_tokens), so several prompts prefill together and admission goes on
 * while they do. Finished or cancelled sequences leave at once.
 *
 * The scheduler runs the loop and each sequence's lifecycle (submit, admit, step, token, finish); who is admitted
 * is the admission policy's (admission-policy.ts), what a step holds the step planner's (step-planner.ts), which
 * KV row each sequence holds the row allocator's (kv-row-allocator.ts), a sequence's own token work sequence.ts's.
 */
import { EngineError } from './errors.js';
import type { AdapterManager } from './lora/adapter-manager.js';
import type { BatchRunner, RowOutput, RowSampling } from './model/batch-runner.js';
import { AdmissionPolicy } from './admission-policy.js';
import { EventQueue } from './event-queue.js';
import { KvRowAllocator } from './kv-row-allocator.js';
import { planStep } from './step-planner.js';
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
  private readonly rows: KvRowAllocator<Sequence>;
  private readonly admission: AdmissionPolicy;
  private nextId = 1;
  private looping = false;
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
  ) {
    this.rows = new KvRowAllocator((from, to, length) => runner.moveRow(from, to, length));
    this.admission = new AdmissionPolicy(options, runner.kvBytesPerToken);
  }

  get queueDepth(): number {
    return this.waiting.length;
  }

  get batchSize(): number {
    return this.rows.count;
  }

  /**
   * Load as the model server protocol reports it (/metrics): the adapters that queued sequences name, and the
   * share of the KV budget that admission has handed to the running sequences (rows over max batch without one).
   */
  get load(): { waitingAdapters: string[]; kvUsage: number } {
    const waitingAdapters = [...new Set(this.waiting.flatMap((s) => (s.request.adapter === null ? [] : [s.request.adapter])))];
    return { waitingAdapters, kvUsage: this.admission.kvUsage(this.rows.sequences) };
  }

  /** Queues a sequence; throws queue_full when the queue is at its bound. */
  submit(input: SequenceInput): AsyncIterable<GenerationEvent> & { scores: () => PromptScores | undefined } {
    if (this.waiting.length >= this.options.maxQueue) {
      throw new EngineError('queue_full', `The queue holds ${this.waiting.length} requests, its limit.`, { retryAfterSeconds: 1 });
    }
    this.admission.refuseIfNeverFits(input);
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
    while (this.waiting.length || this.rows.count) {
      this.dropCancelled();
      this.admit();
      if (this.rows.count) {
        await this.step();
        this.stats.steps++;
      } else if (this.waiting.length) await this.idle();
    }
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
    for (const s of [...this.waiting, ...this.rows.sequences]) {
      if (s.request.signal?.aborted) {
        this.stats.cancelled++;
        this.finish(s, new EngineError('cancelled', 'The request was cancelled.'));
      } else if (now > s.deadline) {
        this.stats.cancelled++;
        this.finish(s, new EngineError('timeout', `The request ran longer than ${this.options.requestTimeoutMs} ms.`));
      }
    }
  }

  /** Moves the waiting sequences the admission policy lets in to rows of the batch, in order. */
  private admit(): void {
    const { admitted, failed } = this.admission.admit(this.waiting, this.rows.sequences, (seq) => this.adapters.tryAcquire(seq.request.adapter));
    for (const { seq, error } of failed) this.finish(seq, error);
    if (!admitted.length) return;
    const now = performance.now();
    const joining = new Set(admitted.map((a) => a.seq));
    this.waiting = this.waiting.filter((s) => !joining.has(s));
    for (const { seq, slot } of admitted) {
      seq.slot = slot;
      seq.admittedAt = now;
      this.rows.assign(seq);
    }
  }

  /** One forward run: every decoding row's next token, then prompt chunks up to the step's prompt budget. */
  private async step(): Promise<void> {
    const { plan, decoders, prefills } = planStep(this.rows.decoders(), this.rows.inPrefill(), this.options.prefillChunk, (s) => this.selection(s));
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
    this.rows.holdFrees();
    try {
      decoders.forEach((s, i) => {
        if (!s.done) this.isolated(s, () => this.onOutput(s, outputs[i], plan.decode[i].sampling));
      });
      prefills.forEach(({ seq, start }, i) => {
        if (!seq.done) this.isolated(seq, () => this.onPrefilled(seq, start, outputs[decoders.length + i], plan.prefill[i].sampling));
      });
    } finally {
      this.rows.releaseHeldFrees();
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
    return { temperature, topK, topP, uniform: temperature > 0 ? seq.random() : 0, logprob: wantsLogprobs(seq.request) };
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
    this.rows.free(seq);
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
}
