/**
 * The engine facade: loads the base model once (frozen), the tokenizer and the adapters, and turns
 * generate requests into streams of events through the scheduler. No HTTP here.
 */
import { basename, resolve } from 'node:path';
import { EngineError } from './errors.js';
import { checkRequest } from './request-check.js';
import { readModelSpec, type ModelSpec } from './model/hf-config.js';
import { NO_GENERATION_DEFAULTS, readGenerationConfig, type GenerationConfigMode, type GenerationDefaults } from './model/generation-config.js';
import { CheckpointWeights } from './model/weights.js';
import { startRunner } from './model/start-runner.js';
import type { BatchRunner, ModelDtype, StateResidency } from './model/batch-runner.js';
import { TextTokenizer } from './model/tokenizer.js';
import type { QuantizeMode } from './model/quantize.js';
import { SlotStacks } from './lora/slot-stacks.js';
import { AdapterManager } from './lora/adapter-manager.js';
import { parseS3Url, type RemoteAdapterStore } from './lora/adapter-store.js';
import { AdapterDiskCache } from './lora/adapter-disk-cache.js';
import { Scheduler, type LogitsConstraint, type PromptScores } from './scheduler.js';
import type { GenerateRequest, GenerateResult, GenerationEvent, FinishEvent, TopLogprob } from './types.js';
import {
  buildTokenVocabulary,
  compileJsonConstraint,
  UnsupportedSchemaError,
  type JsonConstraint,
  type JsonSchema,
  type TokenVocabulary,
} from './constrain/index.js';

/** What a request's response_format asks for, as plain data (it crosses the worker boundary): null schema = any JSON object. */
export interface ResponseFormatData {
  schema: JsonSchema | null;
  strict: boolean;
}

export interface StartExtras {
  /** A logits hook built by the caller (in-process callers only: objects with methods cannot cross the worker boundary). */
  constraint?: LogitsConstraint;
  /** JSON mode as data; the engine compiles (and caches) the constraint. */
  responseFormat?: ResponseFormatData;
  promptLogprobs?: boolean;
}

/** Start-up phases, in order; `ready` or `failed` last. */
export type StartPhase = 'starting' | 'reading_config' | 'building_graph' | 'creating_session' | 'loading_adapters' | 'ready' | 'failed';

export interface LoadHooks {
  onPhase?(phase: StartPhase, detail?: string): void;
}

/** Compiled JSON constraints kept per engine, by schema. */
const MAX_CACHED_CONSTRAINTS = 64;

export interface EngineOptions {
  modelDir: string;
  /** A directory of adapter directories, or `s3://BUCKET/PREFIX/` (adapters downloaded on first use). */
  adaptersDir: string;
  /** Where adapters from S3 are kept on local disk, bounded by adapterCacheBytes (LRU). */
  adapterCacheDir?: string;
  adapterCacheBytes?: number;
  /** Largest adapter_model.safetensors taken from S3. */
  adapterMaxBytes?: number;
  /** How often changed adapters are picked up (new ones registered, changed ones reloaded); 0 = never. */
  adapterCheckIntervalMs?: number;
  cacheDir: string;
  /** Bound of the graph cache in bytes, least recently used entries evicted (graph-cache.ts); undefined = unbounded. */
  graphCacheMaxBytes?: number;
  executionProviders: string[];
  /** Where the KV cache, LoRA stacks and token selection live between steps; default auto. */
  stateResidency?: StateResidency;
  /** Element type of weights, activations and caches; default auto (float16 on the device path). */
  dtype?: ModelDtype;
  /** generation_config.json as request defaults (`auto`, the default) or not (`none`); its stop tokens count either way. */
  generationConfig?: GenerationConfigMode;
  /** Weight-only quantization of the base (MatMulNBits, quantized-weights.ts); default none. */
  quantize?: QuantizeMode;
  /** Weights per quantization block instead of the mode's (quantize.ts MODE_FORMAT). */
  quantizeBlockSize?: number;
  maxBatch: number;
  maxBatchTokens: number;
  maxQueue: number;
  /** Device slots for adapters (slot 0, the bare base, not counted). */
  adapterSlots: number;
  maxLoraRank: number;
  hostCacheBytes: number;
  maxSequenceLength: number;
  prefillChunk: number;
  /** Bytes the KV cache may hold for the sequences in flight (admission waits beyond it); 0 = unbounded. */
  kvCacheBudgetBytes?: number;
  requestTimeoutMs: number;
  /** onnxruntime intra-op threads; 0 or unset: one per usable core (ort.ts intraOpThreadCount). */
  intraOpThreads?: number;
  /**
   * Niceness added to the engine's worker thread (and the onnxruntime threads it starts) on Linux, so the
   * HTTP thread wins the CPU when both want it; default 5, 0 = same priority. Used by engine-worker.ts.
   */
  workerNiceness?: number;
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

function withStopTokens(spec: ModelSpec, extra: number[]): ModelSpec {
  const eosTokenIds = [...new Set([...spec.eosTokenIds, ...extra])];
  return eosTokenIds.length === spec.eosTokenIds.length ? spec : { ...spec, eosTokenIds };
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
    /** The checkpoint's directory (absolute). */
    readonly modelDir: string,
    /** The base's weight format and its bytes in the graph (start-runner.ts). */
    readonly baseWeights: { format: string; bytes: number } = { format: dtype, bytes: 0 },
  ) {}

  private vocabulary: TokenVocabulary | null = null;
  /** Request defaults and stop tokens from generation_config.json (generation-config.ts). */
  generation: GenerationDefaults = NO_GENERATION_DEFAULTS;
  private readonly constraints = new Map<string, JsonConstraint>();

  static async load(options: EngineOptions, log?: EngineLog, hooks: LoadHooks = {}): Promise<Engine> {
    const phase = (p: StartPhase, detail?: string) => hooks.onPhase?.(p, detail);
    phase('reading_config');
    const modelDir = resolve(options.modelDir);
    const generation = readGenerationConfig(modelDir, options.generationConfig ?? 'auto');
    // generation_config.json's eos_token_id joins config.json's (as transformers' generate() stops on either).
    const spec = withStopTokens(readModelSpec(modelDir), generation.eosTokenIds);
    if (generation.ignored.length) log?.warn({ ignored: generation.ignored }, 'generation_config.json settings this server does not apply');
    const weights = new CheckpointWeights(modelDir);
    const maxSequenceLength = Math.min(options.maxSequenceLength, spec.maxPositions);
    const stacks = new SlotStacks(spec, options.adapterSlots + 1);
    phase('building_graph', 'building the ONNX graph, or reusing the cached one');
    const { runner, provider, residency, dtype, weightFormat, weightBytes } = await startRunner(
      {
        modelDir,
        spec,
        weights,
        cacheDir: resolve(options.cacheDir),
        cacheMaxBytes: options.graphCacheMaxBytes,
        graph: { maxSequenceLength, lora: true, quantize: options.quantize ?? 'none', quantizeBlockSize: options.quantizeBlockSize },
        executionProviders: options.executionProviders,
        residency: options.stateResidency ?? 'auto',
        dtype: options.dtype ?? 'auto',
        maxBatch: options.maxBatch,
        intraOpThreads: options.intraOpThreads,
        kvBudgetBytes: options.kvCacheBudgetBytes ?? 0,
        stacks,
        onGraphReady: (built) => phase('creating_session', built ? 'built ONNX graph' : 'reused cached ONNX graph'),
      },
      log,
    );
    const tokenizer = new TextTokenizer(modelDir);
    phase('loading_adapters');
    const s3 = parseS3Url(options.adaptersDir);
    let store: RemoteAdapterStore | undefined;
    if (s3) {
      // Loaded only when adapters come from S3: the SDK is not part of a local set-up's start.
      const { S3AdapterStore } = await import('./lora/s3-adapter-store.js');
      store = new S3AdapterStore(s3);
    }
    const adapters = new AdapterManager(spec, stacks, {
      root: options.adaptersDir,
      maxRank: options.maxLoraRank,
      hostCacheBytes: options.hostCacheBytes,
      ...(store
        ? {
            store,
            cache: new AdapterDiskCache(resolve(options.adapterCacheDir ?? '.cache/adapters'), options.adapterCacheBytes ?? 4 << 30),
            maxAdapterBytes: options.adapterMaxBytes ?? 2 << 30,
          }
        : {}),
    });
    adapters.scan();
    if (store) {
      // An unreachable store at start is not fatal: adapters are looked up again when requested.
      await adapters.refreshRemote().catch((e: Error) => log?.warn({ store: store.url, err: e.message }, 'the adapter store could not be listed'));
    }
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
      kvBudgetBytes: options.kvCacheBudgetBytes ?? 0,
      maxSequenceLength,
      requestTimeoutMs: options.requestTimeoutMs,
      eosTokenIds: spec.eosTokenIds,
    });
    const engine = new Engine(spec, basename(modelDir), tokenizer, adapters, runner, scheduler, maxSequenceLength, provider, residency, dtype, modelDir, {
      format: weightFormat,
      bytes: weightBytes,
    });
    engine.generation = generation;
    engine.kvBudgetBytes = options.kvCacheBudgetBytes ?? 0;
    engine.kvCapacityTokens = engine.kvBudgetBytes > 0 ? Math.floor(engine.kvBudgetBytes / runner.kvBytesPerToken) : maxSequenceLength * options.maxBatch;
    if (options.adapterCheckIntervalMs) engine.checkAdaptersEvery(options.adapterCheckIntervalMs, log);
    return engine;
  }

  /** The KV-cache budget admission keeps to (--kv-cache-mb); 0 = unbounded. */
  kvBudgetBytes = 0;
  /** Token positions the budget holds (max batch x max sequence length without one). */
  kvCapacityTokens = 0;
  private checkTimer: NodeJS.Timeout | null = null;
  private closed: Promise<void> | null = null;

  /** Picks up changed adapters every `ms` (AdapterManager.checkForUpdates), one check at a time. */
  checkAdaptersEvery(ms: number, log?: EngineLog): void {
    let running = false;
    this.checkTimer = setInterval(() => {
      if (running) return;
      running = true;
      this.adapters
        .checkForUpdates()
        .then(({ reloaded, failed }) => {
          for (const adapter of reloaded) log?.info({ adapter, version: this.adapters.get(adapter).version }, 'adapter reloaded (changed)');
          for (const f of failed) log?.warn(f, 'changed adapter not reloaded');
        })
        .catch((e: Error) => log?.warn({ err: e.message }, 'adapter check failed'))
        .finally(() => (running = false));
    }, ms);
    this.checkTimer.unref();
  }

  /** Validates and queues a request. Throws EngineError (unknown adapter, context too long, queue full, bad response format) before anything streams. */
  start(request: GenerateRequest, extras: StartExtras = {}): Generation {
    const promptIds = request.promptTokenIds ?? this.tokenizer.encode(request.prompt ?? '');
    checkRequest(request, promptIds, this);
    const constraint = extras.constraint ?? (extras.responseFormat ? this.jsonConstraint(extras.responseFormat).start() : undefined);
    const stream = this.scheduler.submit({
      request,
      promptIds,
      ...(constraint ? { constraint } : {}),
      ...(extras.promptLogprobs ? { promptLogprobs: true } : {}),
    });
    return { promptTokens: promptIds.length, events: stream, scores: stream.scores };
  }

  /** This model's tokens as bytes, padded to the model's vocabulary (ids past the tokenizer's have no bytes). Built once. */
  jsonVocabulary(): TokenVocabulary {
    if (!this.vocabulary) {
      const bytes = this.tokenizer.tokenBytes().slice(0, this.spec.vocabSize);
      while (bytes.length < this.spec.vocabSize) bytes.push(new Uint8Array(0));
      this.vocabulary = buildTokenVocabulary(bytes, this.spec.eosTokenIds);
    }
    return this.vocabulary;
  }

  /** The compiled JSON constraint of a response format (cached by schema); EngineError invalid_request naming the parameter when it cannot be served. */
  jsonConstraint(format: ResponseFormatData): JsonConstraint {
    const key = JSON.stringify([format.strict, format.schema]);
    const cached = this.constraints.get(key);
    if (cached) {
      this.constraints.delete(key);
      this.constraints.set(key, cached);
      return cached;
    }
    let constraint: JsonConstraint;
    try {
      constraint = compileJsonConstraint(format.schema, this.jsonVocabulary(), { strict: format.strict });
    } catch (e) {
      if (e instanceof UnsupportedSchemaError)
        throw new EngineError('invalid_request', `This JSON schema is not supported: ${e.message}.`, { param: 'response_format.json_schema.schema' });
      // The vocabulary lacks what JSON needs (see assertVocabularyCanFinishJson); anything else is a bug.
      if (e instanceof Error && e.message.startsWith('JSON mode needs'))
        throw new EngineError('invalid_request', `JSON mode is not available for this model: ${e.message}.`, { param: 'response_format' });
      throw e;
    }
    this.constraints.set(key, constraint);
    if (this.constraints.size > MAX_CACHED_CONSTRAINTS) this.constraints.delete(this.constraints.keys().next().value!);
    return constraint;
  }

  /** Runs a request to the end and collects its result. */
  async generate(request: GenerateRequest, extras?: StartExtras): Promise<GenerateResult & { scores?: PromptScores; timings: FinishEvent['timings'] }> {
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
    throw new EngineError('internal', 'The generation ended without a result.');
  }

  /** Releases the model (once: later calls wait for the same release). */
  close(): Promise<void> {
    if (this.checkTimer) clearInterval(this.checkTimer);
    return (this.closed ??= this.runner.release());
  }
}
