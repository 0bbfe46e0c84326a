/**
 * The engine facade: loads the base model once (frozen), the tokenizer and the adapters, and turns
 * generate requests into streams of events through the scheduler. No HTTP here.
 */
import { basename, resolve } from 'node:path';
import { AppError } from '../errors.js';
import { readModelSpec, type ModelSpec } from './model/hf-config.js';
import { CheckpointWeights } from './model/weights.js';
import { startRunner } from './model/start-runner.js';
import type { BatchRunner, ModelDtype, StateResidency } from './model/batch-runner.js';
import { TextTokenizer } from './model/tokenizer.js';
import { SlotStacks } from './lora/slot-stacks.js';
import { AdapterManager } from './lora/adapter-manager.js';
import { Scheduler, type LogitsConstraint, type PromptScores } from './scheduler.js';
import type { GenerateRequest, GenerateResult, GenerationEvent, FinishEvent, TopLogprob } from './types.js';

export interface EngineOptions {
  modelDir: string;
  adaptersDir: string;
  cacheDir: string;
  executionProviders: string[];
  /** Where the KV cache, LoRA stacks and token selection live between steps; default auto. */
  stateResidency?: StateResidency;
  /** Element type of weights, activations and caches; default auto (float16 on the device path). */
  dtype?: ModelDtype;
  maxBatch: number;
  maxBatchTokens: number;
  maxQueue: number;
  /** Device slots for adapters (slot 0, the bare base, not counted). */
  adapterSlots: number;
  maxLoraRank: number;
  hostCacheBytes: number;
  maxSequenceLength: number;
  prefillChunk: number;
  requestTimeoutMs: number;
  intraOpThreads?: number;
}

export interface EngineLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface Generation {
  promptTokens: number;
  events: AsyncIterable<GenerationEvent>;
  scores(): PromptScores | undefined;
}

export class Engine {
  private constructor(
    readonly spec: ModelSpec,
    readonly modelName: string,
    readonly tokenizer: TextTokenizer,
    readonly adapters: AdapterManager,
    readonly runner: BatchRunner,
    readonly scheduler: Scheduler,
    readonly maxSequenceLength: number,
    readonly provider: string,
    /** Where the decoding state lives: host memory or the provider's device. */
    readonly residency: 'host' | 'device',
    readonly dtype: 'float32' | 'float16',
  ) {}

  static async load(options: EngineOptions, log?: EngineLog): Promise<Engine> {
    const modelDir = resolve(options.modelDir);
    const spec = readModelSpec(modelDir);
    const weights = new CheckpointWeights(modelDir);
    const maxSequenceLength = Math.min(options.maxSequenceLength, spec.maxPositions);
    const stacks = new SlotStacks(spec, options.adapterSlots + 1);
    const { runner, provider, residency, dtype } = await startRunner({
      modelDir,
      spec,
      weights,
      cacheDir: resolve(options.cacheDir),
      graph: { maxSequenceLength, lora: true },
      executionProviders: options.executionProviders,
      residency: options.stateResidency ?? 'auto',
      dtype: options.dtype ?? 'auto',
      maxBatch: options.maxBatch,
      intraOpThreads: options.intraOpThreads,
      stacks,
    }, log);
    const tokenizer = new TextTokenizer(modelDir);
    const adapters = new AdapterManager(spec, stacks, { root: options.adaptersDir, maxRank: options.maxLoraRank, hostCacheBytes: options.hostCacheBytes });
    adapters.scan();
    await adapters.validateAll();
    for (const a of adapters.list()) {
      if (a.status === 'errored') log?.warn({ adapter: a.name, reason: a.error }, 'adapter refused');
      else log?.info({ adapter: a.name, rank: a.rank, targets: a.targets }, 'adapter available');
    }
    const scheduler = new Scheduler(runner, adapters, tokenizer, {
      maxBatch: options.maxBatch,
      maxBatchTokens: options.maxBatchTokens,
      maxQueue: options.maxQueue,
      prefillChunk: options.prefillChunk,
      maxSequenceLength,
      requestTimeoutMs: options.requestTimeoutMs,
      eosTokenIds: spec.eosTokenIds,
    });
    return new Engine(spec, basename(modelDir), tokenizer, adapters, runner, scheduler, maxSequenceLength, provider, residency, dtype);
  }

  /** Validates and queues a request. Throws AppError (unknown adapter, context too long, queue full) before anything streams. */
  start(request: GenerateRequest, extras: { constraint?: LogitsConstraint; promptLogprobs?: boolean } = {}): Generation {
    if (request.adapter !== null) this.adapters.check(request.adapter);
    const promptIds = request.promptTokenIds ?? this.tokenizer.encode(request.prompt ?? '');
    if (promptIds.length === 0) throw new AppError('invalid_request', 'The prompt is empty.');
    const vocab = this.spec.vocabSize;
    const bad = promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
    if (bad !== undefined) throw new AppError('invalid_request', `prompt_token_ids holds ${bad}, outside this model's vocabulary of ${vocab}.`);
    if (promptIds.length + request.maxTokens > this.maxSequenceLength) {
      throw new AppError('context_length_exceeded', `The prompt has ${promptIds.length} tokens and max_tokens is ${request.maxTokens}; together they must not exceed this model's context of ${this.maxSequenceLength} tokens.`);
    }
    const stream = this.scheduler.submit({ request, promptIds, ...extras });
    return { promptTokens: promptIds.length, events: stream, scores: stream.scores };
  }

  /** Runs a request to the end and collects its result. */
  async generate(request: GenerateRequest, extras?: { constraint?: LogitsConstraint; promptLogprobs?: boolean }): Promise<GenerateResult & { scores?: PromptScores; timings: FinishEvent['timings'] }> {
    const generation = this.start(request, extras);
    const topLogprobs: TopLogprob[][] = [];
    for await (const event of generation.events) {
      if (event.type === 'token' && event.topLogprobs) topLogprobs.push(event.topLogprobs);
      if (event.type === 'finish') {
        return {
          text: event.text,
          tokenIds: event.tokenIds,
          logprobs: event.logprobs,
          ...(topLogprobs.length ? { topLogprobs } : {}),
          finishReason: event.finishReason,
          usage: event.usage,
          adapter: request.adapter,
          scores: generation.scores(),
          timings: event.timings,
        };
      }
    }
    throw new AppError('internal_error', 'The generation ended without a result.');
  }

  async close(): Promise<void> {
    await this.runner.release();
  }
}
