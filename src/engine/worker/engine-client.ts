/**
 * The HTTP thread's side of the engine: what the routes use instead of Engine. The engine itself runs in a
 * worker thread (engine-worker.ts); this client
 *   - mirrors what routes read synchronously (adapter list/has/get/check, queue depth, batch size, counters,
 *     scheduler stats) from the snapshots the worker pushes;
 *   - tokenizes prompts here (cheap; its own TextTokenizer, also used for chat templates and token strings);
 *   - submits generations and turns the worker's batched token/finish/error items back into per-request
 *     event streams; an AbortSignal on the request becomes a cancel message;
 *   - makes adapter admin calls as RPCs (request id -> reply) and rethrows worker errors as EngineError;
 *   - forwards the scheduler's metrics hooks (first token, next token, finished) to `observer`.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { EngineError } from '../errors.js';
import { EventQueue } from '../event-queue.js';
import { checkRequest } from '../request-check.js';
import { TextTokenizer } from '../model/tokenizer.js';
import {
  adapterCannotServe,
  adapterNotFound,
  checkAdapterName,
  EMPTY_ADAPTER_COUNTERS,
  type AdapterCounters,
  type AdapterInfo,
  type AdapterTiers,
  type ReloadResult,
} from '../lora/adapter-manager.js';
import type { EngineLog, EngineOptions, Generation, ResponseFormatData, StartPhase } from '../engine.js';
import { NO_GENERATION_DEFAULTS, type GenerationDefaults } from '../model/generation-config.js';
import type { GenerationObserver, PromptScores, SchedulerStats } from '../scheduler.js';
import type { GenerateRequest, GenerationEvent } from '../types.js';
import type { AdminCall, EngineInfo, FromWorker, Port, Snapshot, StreamItem, ToWorker, WireRequest } from './protocol.js';

export interface ClientLog extends EngineLog {
  error(obj: object, msg?: string): void;
}

export interface EngineClientHooks {
  log?: ClientLog;
  onPhase?(phase: StartPhase, detail?: string): void;
  /**
   * The model's tokenizer, loaded by the caller beforehand. Constructing one blocks the thread for a while
   * (about 0.3 s for a 32k-token vocabulary on a loaded 2-core machine), so the server loads it before it
   * listens rather than when the engine becomes ready, while /healthz must answer. Loaded at ready otherwise.
   */
  tokenizer?: TextTokenizer;
}

interface ClientStream {
  queue: EventQueue<GenerationEvent>;
  scores?: PromptScores;
  done: boolean;
}

/** Until the first snapshot (the worker's scheduler defines the fields). */
const EMPTY_STATS = { steps: 0, completed: 0, cancelled: 0, failed: 0 } as SchedulerStats;
const SHUTDOWN_GRACE_MS = 10_000;

/** Metrics hooks on the HTTP thread: the scheduler's, and adapter loads (the load-time histogram). */
export type ClientObserver = GenerationObserver & { adapterLoaded?(adapter: string, seconds: number, source: 'disk' | 's3'): void };

/** The adapters as last reported by the worker; reads are synchronous, changes are RPCs. */
export class AdapterMirror {
  private byName = new Map<string, AdapterInfo>();
  counters: AdapterCounters = { ...EMPTY_ADAPTER_COUNTERS };
  root = '';
  /** The remote store's URL when adapters come from one (names not listed yet are looked up there). */
  store: string | null = null;
  maxLoras = 0;
  /** The model server protocol's lists (/metrics): in device slots, and queued for but not in one. */
  lora: { running: string[]; waiting: string[] } = { running: [], waiting: [] };
  tiers: AdapterTiers = { device: 0, host: 0, disk: 0, remote: 0, hostBytes: 0, diskCacheBytes: 0 };

  constructor(private readonly client: EngineClient) {}

  update(adapters: AdapterInfo[], counters: AdapterCounters): void {
    this.byName = new Map(adapters.map((a) => [a.name, a]));
    this.counters = counters;
  }

  list(): AdapterInfo[] {
    return [...this.byName.values()];
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  get(name: string): AdapterInfo {
    checkAdapterName(name);
    const info = this.byName.get(name);
    if (!info) throw adapterNotFound(name);
    return info;
  }

  /** Throws the error for an adapter that cannot serve (unknown or errored), as the engine would. */
  check(name: string): void {
    const info = this.get(name);
    if (info.status === 'errored') throw adapterCannotServe(name, info.error ?? 'unknown reason');
  }

  register(name: string, path: string): Promise<AdapterInfo> {
    return this.client.call({ method: 'register', name, path }) as Promise<AdapterInfo>;
  }

  /** Parses the adapter's weights (status errored with its reason when they are not valid). */
  validate(name: string): Promise<AdapterInfo> {
    return this.client.call({ method: 'validate', name }) as Promise<AdapterInfo>;
  }

  async remove(name: string): Promise<void> {
    await this.client.call({ method: 'remove', name });
  }

  pin(name: string, pinned: boolean): Promise<AdapterInfo> {
    return this.client.call({ method: pinned ? 'pin' : 'unpin', name }) as Promise<AdapterInfo>;
  }

  /**
   * Just in time, with a remote store: a name not known yet is looked up there, and an adapter only in the store
   * is downloaded to local disk, before the request is checked (one download however many ask). Nothing to do
   * otherwise. Afterwards the mirror knows the adapter (or still does not: the usual 404 follows).
   */
  async prepare(name: string): Promise<void> {
    if (!this.store) return;
    checkAdapterName(name);
    const known = this.byName.get(name);
    if (known && known.status !== 'remote') return;
    await this.client.call({ method: 'prepare', name });
  }

  /** Re-reads an adapter's files and swaps the new weights in (requests in flight finish on the old ones). */
  reload(name: string): Promise<ReloadResult> {
    return this.client.call({ method: 'reload', name }) as Promise<ReloadResult>;
  }
}

/** Why the engine did not start; `transient` when another try may succeed (see engine-worker.ts). */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}

/**
 * The refusal while there is no model to serve: `not_ready` while it starts (naming the phase), `unavailable`
 * once it has failed to start or its worker has stopped (with the reason). Never both at once.
 */
export function notReadyError(phase: StartPhase | undefined, failure: string | null): EngineError {
  if (failure) return new EngineError('unavailable', `The model is not available: ${failure}.`);
  return new EngineError('not_ready', `The model is starting${phase && phase !== 'starting' ? ` (${phase.replace(/_/g, ' ')})` : ''}.`, {
    retryAfterSeconds: 5,
  });
}

export class EngineClient {
  phase: StartPhase = 'starting';
  phaseDetail: string | undefined;
  /** Why the engine failed to start (phase `failed`), or why the worker died. */
  failure: string | null = null;
  info: EngineInfo | null = null;
  private loadedTokenizer: TextTokenizer | null = null;
  private packedTokenBytes: { bytes: Uint8Array; offsets: Uint32Array } | null = null;
  private tokenBytesTable: Uint8Array[] | null = null;
  /** Receives the scheduler's metrics hooks and adapter loads (set to app.metrics). */
  observer: ClientObserver | null = null;
  readonly adapters = new AdapterMirror(this);
  queueDepth = 0;
  batchSize = 0;
  stats: SchedulerStats = { ...EMPTY_STATS };
  /** Share of the KV-cache budget in use by running requests (0..1), as of the last snapshot. */
  kvUsage = 0;
  /** Generations the worker held at the last snapshot. */
  workerInFlight = 0;
  /** Resolves when the engine is ready; rejects with the reason when it failed to start. */
  readonly ready: Promise<void>;

  private readonly streams = new Map<number, ClientStream>();
  private readonly calls = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();
  private nextId = 1;
  private closing = false;
  private closed: Promise<void> | null = null;
  /** Settles when the worker says `closed` after a shutdown request, or once it is gone. */
  private readonly closedAck: Promise<void>;
  private ackClosed!: () => void;
  private settleReady!: { resolve(): void; reject(e: Error): void };

  constructor(
    private readonly port: Port,
    private readonly hooks: EngineClientHooks = {},
    private readonly options: {
      /** A tokenizer to use instead of loading the model's own (in-process clients share the engine's). */
      tokenizer?: TextTokenizer;
      /** Ends the other side for good (terminates the worker). */
      terminate?: () => Promise<unknown>;
      /** Keeps the process alive while work is outstanding, and lets it exit when idle (MessagePort ref/unref). */
      ref?: (on: boolean) => void;
    } = {},
  ) {
    this.ready = new Promise<void>((resolve, reject) => (this.settleReady = { resolve, reject }));
    this.ready.catch(() => undefined);
    this.closedAck = new Promise<void>((resolve) => (this.ackClosed = resolve));
    port.on('message', (m: FromWorker) => this.receive(m));
  }

  /** Starts the engine in a worker thread. The returned client answers at once; `ready` settles when it has loaded. */
  static spawn(options: EngineOptions, hooks: EngineClientHooks = {}): EngineClient {
    const entry = new URL(import.meta.url.endsWith('.ts') ? './engine-worker.ts' : './engine-worker.js', import.meta.url).href;
    const worker = new Worker(fileURLToPath(new URL('./bootstrap.mjs', import.meta.url)), { workerData: { entry, options } });
    const client = new EngineClient(worker, hooks, { terminate: () => worker.terminate(), ...(hooks.tokenizer ? { tokenizer: hooks.tokenizer } : {}) });
    worker.on('error', (e) => client.workerDied(`the engine worker failed: ${e.message}`, e));
    worker.on('exit', (code) => client.workerDied(`the engine worker exited with code ${code}`));
    return client;
  }

  get isReady(): boolean {
    return this.phase === 'ready' && !this.closing;
  }

  get modelName(): string {
    return this.requireInfo().modelName;
  }

  get provider(): string {
    return this.requireInfo().provider;
  }

  get residency(): 'host' | 'device' {
    return this.requireInfo().residency;
  }

  get dtype(): 'float32' | 'float16' {
    return this.requireInfo().dtype;
  }

  /** The base's weight format and its bytes in the graph, as the engine reported them when ready. */
  get baseWeights(): { format: string; bytes: number } {
    const info = this.requireInfo();
    return { format: info.weightFormat, bytes: info.baseWeightBytes };
  }

  /** Request defaults from generation_config.json (none until ready). */
  get generation(): GenerationDefaults {
    return this.info?.generation ?? NO_GENERATION_DEFAULTS;
  }

  get maxSequenceLength(): number {
    return this.requireInfo().maxSequenceLength;
  }

  get spec(): { vocabSize: number; eosTokenIds: number[]; maxPositions: number } {
    const info = this.requireInfo();
    return { vocabSize: info.vocabSize, eosTokenIds: info.eosTokenIds, maxPositions: info.maxPositions };
  }

  private requireInfo(): EngineInfo {
    if (!this.info) throw notReadyError(this.phase, this.failure);
    return this.info;
  }

  /** The tokenizer of the served model (prompts and chat templates are tokenized on this thread). */
  get tokenizer(): TextTokenizer {
    this.requireInfo();
    return this.loadedTokenizer!;
  }

  /**
   * The raw bytes of every token (TextTokenizer.tokenBytes), for log-probability token strings: the table the
   * worker built and sent after ready, or, until it has arrived (or in-process), built here.
   */
  tokenBytes(): Uint8Array[] {
    if (this.tokenBytesTable) return this.tokenBytesTable;
    const packed = this.packedTokenBytes;
    if (!packed) return this.tokenizer.tokenBytes();
    const table: Uint8Array[] = new Array(packed.offsets.length - 1);
    for (let i = 0; i < table.length; i++) table[i] = packed.bytes.subarray(packed.offsets[i], packed.offsets[i + 1]);
    this.tokenBytesTable = table;
    return table;
  }

  private setPhase(phase: StartPhase, detail?: string): void {
    this.phase = phase;
    this.phaseDetail = detail;
    this.hooks.onPhase?.(phase, detail);
  }

  /** Handles one message from the worker (called for each message on the port). */
  receive(m: FromWorker): void {
    switch (m.type) {
      case 'batch':
        if (m.snapshot) this.applySnapshot(m.snapshot);
        for (const item of m.items) this.onItem(item);
        for (const o of m.observed) {
          if (o.kind === 'first') this.observer?.firstToken(o.adapter, o.value);
          else if (o.kind === 'next') this.observer?.nextToken(o.adapter, o.value);
          else if (o.kind === 'adapter_load') this.observer?.adapterLoaded?.(o.adapter, o.value, o.source);
          else if (o.kind === 'step') this.observer?.step?.(o.value, { decodeRows: o.decodeRows, promptTokens: o.promptTokens });
          else this.observer?.finished(o.adapter, o.value);
        }
        this.queueDepth = m.load.queueDepth;
        this.batchSize = m.load.batchSize;
        return;
      case 'snapshot':
        return this.applySnapshot(m.snapshot);
      case 'reply': {
        this.applySnapshot(m.snapshot);
        const call = this.calls.get(m.callId);
        if (!call) return;
        this.calls.delete(m.callId);
        this.updateRef();
        if (m.ok) call.resolve(m.result);
        else call.reject(EngineError.fromData(m.error));
        return;
      }
      case 'phase':
        if (m.phase === 'ready') {
          this.info = m.info!;
          this.adapters.root = m.info!.adaptersRoot;
          this.adapters.store = m.info!.adapterStore ?? null;
          this.adapters.maxLoras = m.info!.maxLoras ?? 0;
          if (m.snapshot) this.applySnapshot(m.snapshot);
          try {
            this.loadedTokenizer = this.options.tokenizer ?? new TextTokenizer(m.info!.modelDir);
          } catch (e) {
            this.failure = `the tokenizer failed to load: ${(e as Error).message}`;
            this.info = null;
            this.setPhase('failed', this.failure);
            this.settleReady.reject(new Error(this.failure));
            return;
          }
          this.setPhase('ready');
          this.settleReady.resolve();
        } else if (m.phase === 'failed') {
          this.failure = m.error ?? 'unknown error';
          this.setPhase('failed', this.failure);
          this.settleReady.reject(new StartupError(this.failure, m.transient === true));
        } else this.setPhase(m.phase, m.detail);
        return;
      case 'log': {
        const log = this.hooks.log;
        if (!log) return;
        if (m.level === 'error') log.error(m.obj, m.msg);
        else if (m.level === 'warn') log.warn(m.obj, m.msg);
        else log.info(m.obj, m.msg);
        return;
      }
      case 'closed':
        this.ackClosed();
        return;
      case 'token_bytes':
        this.packedTokenBytes = { bytes: m.bytes, offsets: m.offsets };
        return;
    }
  }

  private applySnapshot(s: Snapshot): void {
    this.adapters.update(s.adapters, s.counters);
    if (s.lora) this.adapters.lora = s.lora;
    if (s.tiers) this.adapters.tiers = s.tiers;
    this.kvUsage = s.kvUsage ?? 0;
    this.queueDepth = s.queueDepth;
    this.batchSize = s.batchSize;
    this.stats = s.stats;
    this.workerInFlight = s.inFlight;
  }

  private onItem(item: StreamItem): void {
    const stream = this.streams.get(item.id);
    if (!stream) return;
    if (item.kind === 'error') {
      this.endStream(item.id, stream);
      stream.queue.fail(EngineError.fromData(item.error));
      return;
    }
    stream.queue.push(item.event);
    if (item.event.type === 'finish') {
      if (item.scores) stream.scores = item.scores;
      this.endStream(item.id, stream);
      stream.queue.close();
    }
  }

  private endStream(id: number, stream: ClientStream): void {
    stream.done = true;
    this.streams.delete(id);
    this.updateRef();
  }

  private updateRef(): void {
    this.options.ref?.(this.streams.size + this.calls.size > 0);
  }

  private send(message: ToWorker): void {
    this.port.postMessage(message);
  }

  /**
   * Validates a request on this thread (adapter, prompt, context, on the mirror), tokenizes a text prompt,
   * and submits it to the worker. Throws EngineError before anything is sent; errors found by the worker
   * (queue full, an adapter that fails to load, a response format it cannot serve, timeouts) arrive through
   * the events. Breaking off the iteration or aborting request.signal cancels the generation in the worker.
   */
  start(request: GenerateRequest, extras: { responseFormat?: ResponseFormatData; promptLogprobs?: boolean } = {}): Generation {
    if (this.closing) throw new EngineError('shutting_down', 'The engine is shutting down.', { retryAfterSeconds: 1 });
    if (this.phase !== 'ready') this.requireInfo();
    const info = this.requireInfo();
    const promptIds = request.promptTokenIds ?? this.tokenizer.encode(request.prompt ?? '');
    checkRequest(request, promptIds, { spec: { vocabSize: info.vocabSize }, maxSequenceLength: info.maxSequenceLength, adapters: this.adapters });
    const id = this.nextId++;
    const stream: ClientStream = { queue: new EventQueue<GenerationEvent>(), done: false };
    this.streams.set(id, stream);
    this.updateRef();
    const { signal, prompt: _prompt, promptTokenIds: _ids, ...rest } = request;
    const wire: WireRequest = rest;
    this.send({
      type: 'submit',
      id,
      request: wire,
      promptIds,
      ...(extras.responseFormat ? { responseFormat: extras.responseFormat } : {}),
      ...(extras.promptLogprobs ? { promptLogprobs: true } : {}),
    });
    const cancel = () => {
      if (!stream.done) this.send({ type: 'cancel', id });
    };
    if (signal) {
      if (signal.aborted) cancel();
      else signal.addEventListener('abort', cancel, { once: true });
    }
    const queue = stream.queue;
    const events: AsyncIterable<GenerationEvent> = {
      [Symbol.asyncIterator]: () => {
        const it = queue[Symbol.asyncIterator]();
        return {
          next: () => it.next(),
          return: (value?: unknown) => {
            cancel();
            return it.return ? it.return(value) : Promise.resolve({ done: true as const, value: undefined });
          },
        };
      },
    };
    return { promptTokens: promptIds.length, events, scores: () => stream.scores };
  }

  /** One adapter admin RPC; resolves with its result once the mirror holds the state after it. */
  call(call: AdminCall): Promise<AdapterInfo | ReloadResult | null> {
    if (this.closing) return Promise.reject(new EngineError('shutting_down', 'The engine is shutting down.', { retryAfterSeconds: 1 }));
    if (this.phase !== 'ready') {
      try {
        this.requireInfo();
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const callId = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(callId, { resolve: resolve as (v: unknown) => void, reject });
      this.updateRef();
      this.send({ type: 'call', callId, ...call });
    });
  }

  /** The worker died (crash or exit): every open request and call fails as `internal`. */
  workerDied(reason: string, cause?: unknown): void {
    // A close() or kill() waiting for `closed` will not get it now (nor will a later one): let it go on.
    this.ackClosed();
    if (this.closing && !cause) return;
    if (this.phase !== 'ready' && this.phase !== 'failed') {
      this.failure = reason;
      this.setPhase('failed', reason);
      this.settleReady.reject(new Error(reason));
    } else if (this.phase === 'ready') {
      this.failure = reason;
      this.info = null;
      this.setPhase('failed', reason);
    }
    this.hooks.log?.error({ err: cause instanceof Error ? { message: cause.message, stack: cause.stack } : undefined, reason }, 'the engine worker stopped');
    for (const [id, stream] of [...this.streams]) {
      this.endStream(id, stream);
      stream.queue.fail(new EngineError('internal', 'The engine stopped while running this request.'));
    }
    for (const [callId, call] of [...this.calls]) {
      this.calls.delete(callId);
      call.reject(new EngineError('internal', 'The engine stopped before answering.'));
    }
    this.updateRef();
  }

  /**
   * Asks the worker to stop (`now`: cancelling its generations) and settles when it says `closed`. Both close()
   * and kill() share the one acknowledgement; a kill during a drain only upgrades it to `now`.
   */
  private requestShutdown(now: boolean): Promise<void> {
    this.send({ type: 'shutdown', now });
    return this.closedAck;
  }

  /**
   * Stops the worker now (past the drain deadline): its generations are cancelled and the model released between
   * two steps, and only once it says so is the thread terminated. There is deliberately no grace timer here:
   * terminating a thread inside an onnxruntime call aborts the whole process (the binding throws a C++ exception
   * it cannot hand to a terminating JavaScript), so the wait is one step at most and the caller's own backstop
   * (server.ts, close-with-grace) bounds a worker that never answers. A worker still loading is terminated at once.
   */
  async kill(): Promise<void> {
    this.closing = true;
    if (this.phase === 'ready') await this.requestShutdown(true);
    await this.options.terminate?.();
    this.options.ref?.(false);
  }

  /**
   * Drains and stops the engine: new requests are refused, the worker finishes what it runs, releases the
   * model and says `closed`; then it is terminated (also after a grace period, or at once if it never loaded).
   */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    this.closing = true;
    this.closed = (async () => {
      if (this.phase === 'ready') {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([this.requestShutdown(false), new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)))]);
        clearTimeout(timer);
      }
      await this.options.terminate?.();
      this.options.ref?.(false);
    })();
    return this.closed;
  }
}
