/**
 * Continuous batching. Requests wait in a bounded queue; at each step boundary the scheduler admits
 * waiting sequences whose adapter is resident (others wait in the queue while their adapter loads), runs
 * at most one prefill chunk (so a long prompt never starves running decodes; where the runner can, several
 * short whole prompts together), then one decode step for every running sequence, whatever adapter each uses.
 * Finished or cancelled sequences leave at once.
 *
 * KV rows: running sequences occupy rows 0..d-1, those in prefill the rows after, so a decode step reads a
 * contiguous prefix of the cache.
 */
import { AppError } from '../errors.js';
import type { AdapterManager } from './lora/adapter-manager.js';
import type { BatchRunner, RowSampling } from './model/batch-runner.js';
import { EventQueue } from './event-queue.js';
import { logSumExp, sampleToken, seededRandom, topIndices } from './sampling.js';
import { TextStream, type Detokenizer } from './text-stream.js';
import type { GenerateRequest, GenerationEvent, TopLogprob } from './types.js';

export interface SchedulerOptions {
  maxBatch: number;
  /** Bound on the sum of (prompt + max_tokens) over running sequences: the KV positions they may claim. */
  maxBatchTokens: number;
  maxQueue: number;
  prefillChunk: number;
  maxSequenceLength: number;
  requestTimeoutMs: number;
  eosTokenIds: number[];
}

/** Per-token logits hook, e.g. JSON-mode constraints: mask before sampling, advance after. */
export interface LogitsConstraint {
  maskLogits(logits: Float32Array): void;
  accept(tokenId: number): void;
  isComplete(): boolean;
}

/** Timing hooks for metrics; the engine stays free of any metrics library. */
export interface GenerationObserver {
  firstToken(adapter: string | null, msSinceSubmit: number): void;
  nextToken(adapter: string | null, msSincePrevious: number): void;
  finished(adapter: string | null, completionTokens: number): void;
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

interface Sequence extends SequenceInput {
  id: number;
  events: EventQueue<GenerationEvent>;
  slot: number;
  row: number;
  /** Prompt tokens already run through the model. */
  prefilled: number;
  /** Tokens held in this sequence's KV row. */
  cached: number;
  nextToken: number | null;
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
function wantsLogprobs(request: GenerateRequest): boolean {
  return request.logprobs || (request.topLogprobs ?? 0) > 0;
}

export interface SchedulerStats {
  steps: number;
  decodeSteps: number;
  decodeRowsTotal: number;
  prefillTokens: number;
  /** Steps that prefilled several prompts together. */
  prefillGroups: number;
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
  private wake: (() => void) | null = null;
  readonly stats: SchedulerStats = { steps: 0, decodeSteps: 0, decodeRowsTotal: 0, prefillTokens: 0, prefillGroups: 0, decodeTokens: 0, completed: 0, cancelled: 0, failed: 0 };

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

  /** Queues a sequence; throws queue_full when the queue is at its bound. */
  submit(input: SequenceInput): AsyncIterable<GenerationEvent> & { scores: () => PromptScores | undefined } {
    if (this.waiting.length >= this.options.maxQueue) {
      throw new AppError('queue_full', `The queue holds ${this.waiting.length} requests, its limit.`, { retryAfter: 1 });
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
      let worked = false;
      const prefilling = this.rows.filter((s) => s.nextToken === null);
      if (prefilling.length > 1) {
        await this.guard(prefilling, () => this.prefillTogether(prefilling));
        worked = true;
      } else if (prefilling.length === 1) {
        await this.guard(prefilling, () => this.prefillChunk(prefilling[0]));
        worked = true;
      }
      const decoders = this.rows.filter((s) => s.nextToken !== null);
      if (decoders.length) {
        await this.guard(decoders, () => this.decodeStep(decoders));
        worked = true;
      }
      if (worked) this.stats.steps++;
      else if (this.waiting.length) await this.idle();
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

  /** An engine failure fails the sequences of that step, never the process or other steps. */
  private async guard(seqs: Sequence[], work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (e) {
      for (const s of seqs) {
        if (s.done) continue;
        this.stats.failed++;
        this.finish(s, new AppError('internal_error', 'The model failed while running this request.', { cause: e }));
      }
    }
  }

  private dropCancelled(): void {
    const now = performance.now();
    for (const s of [...this.waiting, ...this.rows]) {
      if (s.request.signal?.aborted) {
        this.stats.cancelled++;
        this.finish(s, new AppError('request_timeout', 'The request was cancelled.'));
      } else if (now > s.deadline) {
        this.stats.cancelled++;
        this.finish(s, new AppError('request_timeout', `The request ran longer than ${this.options.requestTimeoutMs} ms.`));
      }
    }
  }

  /**
   * Admits one waiting sequence, or, where the runner prefills prompts together, as many whole prompts as fit
   * one prefill chunk (a long prompt, or one whose prompt log-probabilities are wanted, goes alone, chunked).
   */
  private admit(): void {
    if (this.rows.some((s) => s.nextToken === null)) return;
    let claimed = this.rows.reduce((n, s) => n + s.promptIds.length + s.request.maxTokens, 0);
    let budget = this.options.prefillChunk;
    let grouped = 0;
    for (const seq of this.waiting) {
      if (this.rows.length >= this.options.maxBatch) return;
      const claim = seq.promptIds.length + seq.request.maxTokens;
      if (this.rows.length > 0 && claimed + claim > this.options.maxBatchTokens) continue;
      const together = this.runner.prefillsTogether && !seq.promptLogprobs && seq.promptIds.length <= budget;
      if (grouped > 0 && !together) continue;
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
      if (!together) return;
      budget -= seq.promptIds.length;
      grouped++;
    }
  }

  /** Several whole prompts in one step; each sequence then has its first token. */
  private async prefillTogether(seqs: Sequence[]): Promise<void> {
    const sampling = this.runnerSelects(seqs) ? seqs.map((s) => this.draw(s)) : undefined;
    const out = await this.runner.prefillTogether!(seqs.map((s) => ({ row: s.row, tokens: s.promptIds, slot: s.slot })), sampling);
    this.stats.prefillGroups++;
    const V = this.runner.spec.vocabSize;
    for (const seq of seqs) {
      this.stats.prefillTokens += seq.promptIds.length;
      seq.prefilled = seq.cached = seq.promptIds.length;
    }
    seqs.forEach((seq, i) => {
      if (seq.done) return;
      if (seq.request.maxTokens === 0) this.finish(seq);
      else this.isolated(seq, () => (out.tokens ? this.onToken(seq, out.tokens[i], out.logprobs![i]) : this.onLogits(seq, out.logits!.subarray(i * V, (i + 1) * V))));
    });
  }

  private async prefillChunk(seq: Sequence): Promise<void> {
    const start = seq.prefilled;
    const chunk = seq.promptIds.slice(start, start + this.options.prefillChunk);
    const last = start + chunk.length === seq.promptIds.length;
    const positions = seq.promptLogprobs ? chunk.map((_, i) => i) : last ? [chunk.length - 1] : [];
    const sampling = last && !seq.promptLogprobs && seq.request.maxTokens > 0 && this.runnerSelects([seq]) ? this.draw(seq) : undefined;
    const out = await this.runner.prefill(seq.row, chunk, seq.cached, seq.slot, positions.length ? positions : [chunk.length - 1], sampling);
    this.stats.prefillTokens += chunk.length;
    seq.prefilled += chunk.length;
    seq.cached += chunk.length;
    const V = this.runner.spec.vocabSize;
    if (seq.promptLogprobs) this.scorePrompt(seq, start, out.logits!, V);
    if (!last || seq.done) return;
    if (seq.request.maxTokens === 0) {
      this.finish(seq);
      return;
    }
    if (out.tokens) this.onToken(seq, out.tokens[0], out.logprobs![0]);
    else this.onLogits(seq, out.logits!.subarray((positions.length - 1) * V, positions.length * V));
  }

  /** The runner chooses tokens in the graph unless a sequence needs the logits on the host. */
  private runnerSelects(seqs: Sequence[]): boolean {
    return this.runner.selectsTokens && seqs.every((s) => !s.constraint && !((s.request.topLogprobs ?? 0) > 0));
  }

  /** The sequence's selection parameters and its next draw (taken only when sampling, as sampleToken does). */
  private draw(seq: Sequence): RowSampling {
    const { temperature, topK, topP } = seq.request;
    return { temperature, topK, topP, uniform: temperature > 0 ? seq.random() : 0 };
  }

  private scorePrompt(seq: Sequence, start: number, logits: Float32Array, V: number): void {
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

  private async decodeStep(decoders: Sequence[]): Promise<void> {
    const sampling = this.runnerSelects(decoders) ? decoders.map((s) => this.draw(s)) : undefined;
    const out = await this.runner.decode(decoders.map((s) => ({ token: s.nextToken!, pastLength: s.cached, slot: s.slot })), sampling);
    this.stats.decodeSteps++;
    this.stats.decodeRowsTotal += decoders.length;
    this.stats.decodeTokens += decoders.length;
    const V = this.runner.spec.vocabSize;
    // Count the new positions first: finishing one sequence may move another's KV row.
    for (const s of decoders) s.cached++;
    decoders.forEach((s, i) => {
      if (s.done) return;
      this.isolated(s, () => (out.tokens ? this.onToken(s, out.tokens[i], out.logprobs![i]) : this.onLogits(s, out.logits!.subarray(i * V, (i + 1) * V))));
    });
  }

  /** A failure in one sequence's own work (its logits hook, sampling, detokenizing) fails that sequence only. */
  private isolated(seq: Sequence, work: () => void): void {
    try {
      work();
    } catch (e) {
      this.stats.failed++;
      this.finish(seq, new AppError('internal_error', 'The request failed while choosing its next token.', { cause: e }));
    }
  }

  private onLogits(seq: Sequence, logits: Float32Array): void {
    const { request } = seq;
    const wantLogprobs = wantsLogprobs(request);
    const lse = wantLogprobs ? logSumExp(logits) : 0;
    let top: TopLogprob[] | undefined;
    if ((request.topLogprobs ?? 0) > 0) {
      top = topIndices(logits, request.topLogprobs!).map((id) => ({ tokenId: id, text: this.tokenizer.decode([id], false), logprob: logits[id] - lse }));
    }
    const modelLogprobs = wantLogprobs ? logits.slice() : null;
    if (seq.constraint) seq.constraint.maskLogits(logits);
    const token = sampleToken(logits, request, seq.random);
    seq.constraint?.accept(token);
    this.onToken(seq, token, modelLogprobs ? modelLogprobs[token] - lse : undefined, top);
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
    if (seq.row >= 0) this.freeRow(seq);
    if (seq.slot >= 0) this.adapters.release(seq.slot);
    if (error) {
      seq.events.fail(error);
      return;
    }
    this.stats.completed++;
    this.observer?.finished(seq.request.adapter, seq.generated.length);
    const tail = seq.text.flush();
    if (tail) seq.events.push({ type: 'token', tokenId: -1, text: tail });
    const now = performance.now();
    seq.events.push({
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
    });
    seq.events.close();
  }

  /** Removes a sequence's KV row and keeps rows contiguous: decoders first, then those in prefill. */
  private freeRow(seq: Sequence): void {
    const r = seq.row;
    seq.row = -1;
    const last = this.rows.length - 1;
    if (seq.nextToken !== null) {
      const lastDecoder = this.rows.filter((s) => s.nextToken !== null).length - 1;
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
