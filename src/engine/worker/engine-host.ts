/**
 * The worker side of the protocol (protocol.ts): serves one loaded Engine over a port. Runs in the engine's
 * worker thread (engine-worker.ts); tests may also run it in-process over a MessageChannel (in-process.ts),
 * which exercises the same messages and structured clones without a second thread.
 *
 * Outgoing stream items and metrics observations are buffered and posted together once per event-loop turn
 * (setImmediate): one decode step's tokens for every sequence go out in one postMessage. A batch in which a
 * request got its first token or ended also carries a snapshot (adapter states and counters changed), so the
 * client's mirror is current when its caller sees the event; otherwise snapshots go out on a 250 ms timer
 * when anything changed.
 */
import type { Engine, EngineLog } from '../engine.js';
import { toEngineErrorData, EngineError } from '../errors.js';
import { CAPACITY_QUANTUM } from '../model/host-kv-cache.js';
import type { CallMessage, EngineInfo, FromWorker, Observation, Port, Snapshot, StreamItem, SubmitMessage, ToWorker } from './protocol.js';

const SNAPSHOT_INTERVAL_MS = 250;

/** What the client learns about a loaded engine with the `ready` phase. */
export function engineInfo(engine: Engine): EngineInfo {
  return {
    modelName: engine.modelName,
    modelDir: engine.modelDir,
    adaptersRoot: engine.adapters.root,
    provider: engine.provider,
    residency: engine.residency,
    dtype: engine.dtype,
    weightFormat: engine.baseWeights.format,
    baseWeightBytes: engine.baseWeights.bytes,
    maxSequenceLength: engine.maxSequenceLength,
    vocabSize: engine.spec.vocabSize,
    maxPositions: engine.spec.maxPositions,
    eosTokenIds: engine.spec.eosTokenIds,
    generation: engine.generation,
    maxLoras: engine.adapters.maxLoras,
    adapterStore: engine.adapters.isRemote ? engine.adapters.root : null,
    // The KV cache is sized in multiples of CAPACITY_QUANTUM positions: the budget counted in such blocks.
    kvBlockTokens: CAPACITY_QUANTUM,
    kvBlocks: Math.floor(engine.kvCapacityTokens / CAPACITY_QUANTUM),
  };
}

export class EngineHost {
  private readonly live = new Map<number, AbortController>();
  private items: StreamItem[] = [];
  private observed: Observation[] = [];
  private flushing = false;
  /** A request was admitted or ended: adapter states and counters changed, send a snapshot with the next batch. */
  private snapshotDue = false;
  private lastSnapshot = '';
  private readonly timer: NodeJS.Timeout;
  private closing = false;
  private stopping: Promise<void> | null = null;
  private idleWaiters: Array<() => void> = [];

  constructor(
    readonly engine: Engine,
    private readonly port: Port,
    private readonly log?: EngineLog,
  ) {
    engine.scheduler.observer = {
      firstToken: (adapter, ms) => this.observe({ kind: 'first', adapter, value: ms }),
      nextToken: (adapter, ms) => this.observe({ kind: 'next', adapter, value: ms }),
      finished: (adapter, tokens) => this.observe({ kind: 'finished', adapter, value: tokens }),
      step: (ms, shape) => this.observe({ kind: 'step', value: ms, ...shape }),
    };
    engine.adapters.onLoad = (e) => this.observe({ kind: 'adapter_load', adapter: e.adapter, value: e.seconds, source: e.source });
    port.on('message', (m: ToWorker) => this.onMessage(m));
    this.timer = setInterval(() => this.pushSnapshotIfChanged(), SNAPSHOT_INTERVAL_MS);
    this.timer.unref();
  }

  private post(message: FromWorker): void {
    this.port.postMessage(message);
  }

  private onMessage(m: ToWorker): void {
    switch (m.type) {
      case 'submit':
        return this.submit(m);
      case 'cancel':
        this.live.get(m.id)?.abort();
        return;
      case 'call':
        return void this.call(m);
      case 'shutdown':
        return void this.shutdown(m.now);
    }
  }

  private submit(m: SubmitMessage): void {
    const abort = new AbortController();
    try {
      if (this.closing) throw new EngineError('shutting_down', 'The engine is shutting down.', { retryAfterSeconds: 1 });
      const generation = this.engine.start(
        { ...m.request, promptTokenIds: m.promptIds, signal: abort.signal },
        { responseFormat: m.responseFormat, promptLogprobs: m.promptLogprobs },
      );
      this.live.set(m.id, abort);
      void this.pump(m.id, abort, generation.events, generation.scores);
    } catch (e) {
      this.push({ id: m.id, kind: 'error', error: this.errorData(e, abort) });
    }
  }

  private async pump(
    id: number,
    abort: AbortController,
    events: AsyncIterable<import('../types.js').GenerationEvent>,
    scores: () => { promptLogprobs: number[]; lastLogprobs: Float32Array } | undefined,
  ): Promise<void> {
    try {
      for await (const event of events) {
        const s = event.type === 'finish' ? scores() : undefined;
        this.push({ id, kind: 'event', event, ...(s ? { scores: s } : {}) });
      }
    } catch (e) {
      this.push({ id, kind: 'error', error: this.errorData(e, abort) });
    } finally {
      this.live.delete(id);
      if (this.live.size === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private errorData(e: unknown, abort: AbortController) {
    const data = toEngineErrorData(e, abort.signal.aborted);
    if (data.code === 'internal')
      this.log?.warn(
        { err: e instanceof Error ? { message: e.message, stack: e.stack, cause: String((e as { cause?: unknown }).cause ?? '') } : String(e) },
        'generation failed',
      );
    return data;
  }

  private observe(o: Observation): void {
    if (o.kind === 'first') this.snapshotDue = true;
    this.observed.push(o);
    this.scheduleFlush();
  }

  private push(item: StreamItem): void {
    if (item.kind === 'error' || item.event.type === 'finish') this.snapshotDue = true;
    this.items.push(item);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushing = false;
    if (!this.items.length && !this.observed.length) return;
    const items = this.items;
    const observed = this.observed;
    this.items = [];
    this.observed = [];
    let snapshot: Snapshot | undefined;
    if (this.snapshotDue) {
      this.snapshotDue = false;
      snapshot = this.snapshot();
      this.lastSnapshot = JSON.stringify(snapshot);
    }
    this.post({
      type: 'batch',
      items,
      observed,
      load: { queueDepth: this.engine.scheduler.queueDepth, batchSize: this.engine.scheduler.batchSize },
      ...(snapshot ? { snapshot } : {}),
    });
  }

  snapshot(): Snapshot {
    const { engine } = this;
    const load = engine.scheduler.load;
    const running = engine.adapters.residentNames();
    return {
      queueDepth: engine.scheduler.queueDepth,
      batchSize: engine.scheduler.batchSize,
      adapters: engine.adapters.list(),
      counters: { ...engine.adapters.counters },
      stats: { ...engine.scheduler.stats },
      inFlight: this.live.size,
      lora: { running, waiting: load.waitingAdapters.filter((a) => !running.includes(a)).sort() },
      kvUsage: load.kvUsage,
      tiers: engine.adapters.tiers(),
    };
  }

  /** Pushes a snapshot when anything in it changed since the last one (so every 250 ms while busy). */
  private pushSnapshotIfChanged(): void {
    const snapshot = this.snapshot();
    const key = JSON.stringify(snapshot);
    if (key === this.lastSnapshot) return;
    this.lastSnapshot = key;
    this.post({ type: 'snapshot', snapshot });
  }

  private async call(m: CallMessage): Promise<void> {
    const adapters = this.engine.adapters;
    try {
      let result = null;
      switch (m.method) {
        case 'register':
          result = adapters.register(m.name, m.path);
          break;
        case 'validate':
          await adapters.validate(m.name);
          result = adapters.get(m.name);
          break;
        case 'remove':
          adapters.remove(m.name);
          break;
        case 'pin':
        case 'unpin':
          result = adapters.pin(m.name, m.method === 'pin');
          break;
        case 'prepare':
          result = await adapters.prepare(m.name);
          break;
        case 'reload':
          result = await adapters.reload(m.name);
          break;
      }
      this.post({ type: 'reply', callId: m.callId, ok: true, result, snapshot: this.snapshot() });
    } catch (e) {
      this.post({ type: 'reply', callId: m.callId, ok: false, error: toEngineErrorData(e), snapshot: this.snapshot() });
    }
  }

  /**
   * Refuses new work, waits for every generation to end (`now`: cancels them; the scheduler drops them before
   * its next step), releases the model, then says `closed`.
   */
  shutdown(now = false): Promise<void> {
    this.closing = true;
    if (now) for (const generation of this.live.values()) generation.abort();
    // A second request (a kill arriving while a drain waits) only adds `now`: the model is released once and
    // `closed` said once, after which the client may terminate this thread (never while a native call runs).
    return (this.stopping ??= this.stop());
  }

  private async stop(): Promise<void> {
    if (this.live.size) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.flush();
    clearInterval(this.timer);
    await this.engine.close();
    this.post({ type: 'closed' });
  }

  /** Stops the snapshot timer without releasing the engine (in-process use; the caller owns the engine). */
  detach(): void {
    clearInterval(this.timer);
    this.closing = true;
  }
}
