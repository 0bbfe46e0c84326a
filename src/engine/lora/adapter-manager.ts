/**
 * Where every adapter is and who uses it. Tiers, as in vLLM and S-LoRA (plus LoRAX's remote source):
 *   remote store (S3, optional) -> disk (the adapters directory, or the bounded download cache)
 *     -> host LRU (parsed, validated, scale-folded weights, bounded in bytes)
 *     -> device slots (the stacks the model reads; least recently used among unused slots is replaced)
 * A slot used by a running sequence is never replaced (reference counts per slot); a pinned adapter stays in its
 * slot. A reload swaps an adapter's weights atomically: its old slot is retired (requests running on it finish on
 * the old weights, then it is cleared), new requests load the new weights into another slot.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, relative, isAbsolute, resolve } from 'node:path';
import { LRUCache } from 'lru-cache';
import { EngineError } from '../errors.js';
import type { ModelSpec } from '../model/hf-config.js';
import type { Projection } from '../model/graph-builder.js';
import { loadPeftAdapterAsync, readAdapterConfig, type LoadedAdapter } from './peft-adapter.js';
import type { SlotStacks } from './slot-stacks.js';
import { IntegrityError, SMALL_FILE_LIMIT_BYTES, type RemoteAdapterStore, type RemoteVersion } from './adapter-store.js';
import type { AdapterDiskCache } from './adapter-disk-cache.js';

/** `remote`: known in the store, not on local disk yet; `available`: on local disk, not parsed. */
export type AdapterStatus = 'remote' | 'available' | 'loading' | 'host' | 'device' | 'errored';
export type AdapterOrigin = 'local' | 'remote';

export interface AdapterInfo {
  name: string;
  /** The directory its files are read from (under the adapters root, whatever name it is registered under). */
  dir: string;
  status: AdapterStatus;
  rank: number | null;
  targets: Projection[];
  bytes: number | null;
  hits: number;
  lastUsed: string | null;
  pinned: boolean;
  inUse: number;
  origin: AdapterOrigin;
  /** The version that serves (local: a hash of the files' sizes and times; remote: of the objects' ETags); null before the first load. */
  version: string | null;
  error?: string;
}

interface AdapterRecord {
  name: string;
  dir: string;
  error: string | null;
  rank: number | null;
  targets: Projection[];
  bytes: number | null;
  hits: number;
  lastUsed: number | null;
  pinned: boolean;
  slot: number;
  loading: Promise<LoadedAdapter> | null;
  /** A loaded adapter waiting for a slot when the host tier could not keep it (larger than the whole tier). */
  staged: LoadedAdapter | null;
  origin: AdapterOrigin;
  /** Remote: the adapter's path under the store's prefix (its name unless registered under another). */
  remotePath: string;
  /** Remote: the newest version the store showed. */
  remote: RemoteVersion | null;
  /** The version loaded (host tier, slots). */
  version: string | null;
  /** The version whose content failed validation (a new version clears the error). */
  errorVersion: string | null;
  /** A store failure (unreachable, denied): requests fail with it until `until`, then loading is tried again. */
  failure: { error: EngineError; until: number } | null;
  reloading: Promise<ReloadResult> | null;
  /** A download of this version not yet counted in a load event: its tag and how long it took. */
  download: { tag: string; ms: number } | null;
}

interface SlotState {
  owner: string | null;
  refs: number;
  lastUsed: number;
  /** Holds an adapter's previous weights after a reload until its running requests finish. */
  retired: boolean;
}

export interface ReloadResult {
  info: AdapterInfo;
  previousVersion: string | null;
}

export interface AdapterLoadEvent {
  adapter: string;
  seconds: number;
  /** Where the files came from: the local disk (adapters directory or download cache) or the store. */
  source: 'disk' | 's3';
}

/** Adapters held per tier (an adapter can be in several) and the bytes of the host tier and the download cache. */
export interface AdapterTiers {
  device: number;
  host: number;
  disk: number;
  remote: number;
  hostBytes: number;
  diskCacheBytes: number;
}

export interface AdapterCounters {
  deviceHits: number;
  deviceMisses: number;
  hostHits: number;
  hostMisses: number;
  loads: number;
  loadErrors: number;
  loadMsTotal: number;
  hostEvictions: number;
  deviceEvictions: number;
  /** Versions downloaded from the remote store. */
  downloads: number;
  reloads: number;
}

export const EMPTY_ADAPTER_COUNTERS: AdapterCounters = {
  deviceHits: 0,
  deviceMisses: 0,
  hostHits: 0,
  hostMisses: 0,
  loads: 0,
  loadErrors: 0,
  loadMsTotal: 0,
  hostEvictions: 0,
  deviceEvictions: 0,
  downloads: 0,
  reloads: 0,
};

/** How long a store failure fails the requests for that adapter before loading is tried again. */
const STORE_RETRY_MS = 5_000;
/** How long a name the store does not hold is answered 404 without asking the store again. */
const NOT_FOUND_TTL_MS = 5_000;
const MAX_NOT_FOUND_NAMES = 1024;

export const ADAPTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkAdapterName(name: string): void {
  if (!ADAPTER_NAME.test(name) || name.includes('..')) {
    throw new EngineError('invalid_adapter_name', `Adapter name ${JSON.stringify(name.slice(0, 80))} is not allowed.`);
  }
}

function isOutside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || rel.startsWith('..') || isAbsolute(rel);
}

export interface AdapterManagerOptions {
  root: string;
  maxRank: number;
  hostCacheBytes: number;
  /** Adapters from a remote store (S3) instead of `root`, downloaded into `cache`. */
  store?: RemoteAdapterStore;
  cache?: AdapterDiskCache;
  /** Largest adapter_model.safetensors taken from the store. */
  maxAdapterBytes?: number;
}

/** A version tag of a local adapter: its files' sizes and modification times. */
export function localVersion(dir: string): string {
  const parts = ['adapter_config.json', 'adapter_model.safetensors'].map((f) => {
    try {
      const s = statSync(join(dir, f));
      return `${f}:${s.size}:${s.mtimeMs}`;
    } catch {
      return `${f}:missing`;
    }
  });
  return createHash('sha256').update(parts.join('\n')).digest('hex').slice(0, 16);
}

/** The errors for an adapter that cannot serve, shared with the HTTP thread's mirror (worker/engine-client.ts). */
export function adapterNotFound(name: string): EngineError {
  return new EngineError('adapter_not_found', `Adapter ${name} is not registered.`);
}

export function adapterCannotServe(name: string, reason: string): EngineError {
  return new EngineError('adapter_errored', `Adapter ${name} cannot be served: ${reason}.`);
}

export class AdapterManager {
  private readonly records = new Map<string, AdapterRecord>();
  private readonly host: LRUCache<string, LoadedAdapter>;
  /** slots[slot]: its adapter, references and last use; slot 0 is the base model and never owned. */
  private readonly slots: SlotState[];
  private slotWaiters: Array<() => void> = [];
  private readonly store: RemoteAdapterStore | null;
  private readonly cache: AdapterDiskCache | null;
  /** Single flight of store look-ups for names not registered yet. */
  private readonly resolving = new Map<string, Promise<AdapterRecord | null>>();
  private readonly notFound = new Map<string, number>();
  readonly counters: AdapterCounters = { ...EMPTY_ADAPTER_COUNTERS };
  /** Where adapters come from: the adapters directory, or the store's URL. */
  readonly root: string;
  /** Called after each load into the host tier (the /metrics load-time histogram). */
  onLoad: ((event: AdapterLoadEvent) => void) | null = null;

  constructor(
    private readonly spec: ModelSpec,
    private readonly stacks: SlotStacks,
    private readonly options: AdapterManagerOptions,
  ) {
    this.store = options.store ?? null;
    this.cache = options.cache ?? null;
    if (this.store && !this.cache) throw new Error('a remote adapter store needs a download cache');
    this.root = this.store ? this.store.url : resolve(options.root);
    this.slots = Array.from({ length: stacks.slotCount }, () => ({ owner: null, refs: 0, lastUsed: 0, retired: false }));
    this.host = new LRUCache<string, LoadedAdapter>({
      maxSize: Math.max(1, options.hostCacheBytes),
      sizeCalculation: (a) => Math.max(1, a.bytes),
      dispose: (_value, _key, reason) => {
        if (reason === 'evict') this.counters.hostEvictions++;
      },
    });
  }

  /** The number of device slots for adapters (slot 0, the bare base, not counted): the protocol's max_lora. */
  get maxLoras(): number {
    return this.slots.length - 1;
  }

  /** Whether adapters come from a remote store (looked up just in time by name). */
  get isRemote(): boolean {
    return this.store !== null;
  }

  /** Registers every adapter directory under the root. Broken ones are kept, errored, with their reason. */
  scan(): void {
    if (this.store || !existsSync(this.root)) return;
    for (const entry of readdirSync(this.root, { withFileTypes: true })) {
      if (!entry.isDirectory() && !entry.isSymbolicLink()) continue;
      if (!ADAPTER_NAME.test(entry.name) || this.records.has(entry.name)) continue;
      this.addRecord(entry.name, join(this.root, entry.name));
    }
  }

  /**
   * Lists the store and registers every adapter not registered yet; the newest version of each is noted (what a
   * load takes). Returns the adapters whose loaded version is no longer the newest (for checkForUpdates).
   */
  async refreshRemote(): Promise<string[]> {
    if (!this.store) return [];
    const listed = await this.store.list();
    const stale: string[] = [];
    for (const [path, version] of listed) {
      if (!ADAPTER_NAME.test(path)) continue;
      const record = this.records.get(path) ?? this.addRemoteRecord(path, path, version);
      if (record.origin !== 'remote' || record.remotePath !== path) continue;
      record.remote = version;
      if (record.error && record.errorVersion !== null && record.errorVersion !== version.tag) {
        record.error = null; // a new upload of a broken adapter is tried again
        record.errorVersion = null;
      }
      if (record.version !== null && record.version !== version.tag) stale.push(record.name);
    }
    return stale;
  }

  /** Registers an adapter at run time from a path under the adapters root (or under the store's prefix). */
  register(name: string, path: string): AdapterInfo {
    checkAdapterName(name);
    if (this.records.has(name)) throw new EngineError('adapter_exists', `Adapter ${name} is already registered.`);
    if (this.store) {
      const clean = path.replace(/^\/+|\/+$/g, '');
      if (!clean || clean.split('/').some((part) => !part || part === '.' || part === '..'))
        throw new EngineError('invalid_request', `Path ${JSON.stringify(path)} is not a path under ${this.store.url}.`);
      return this.info(this.addRemoteRecord(name, clean, null));
    }
    const dir = this.confine(path);
    const record = this.addRecord(name, dir);
    return this.info(record);
  }

  private newRecord(name: string, dir: string, origin: AdapterOrigin): AdapterRecord {
    return {
      name,
      dir,
      error: null,
      rank: null,
      targets: [],
      bytes: null,
      hits: 0,
      lastUsed: null,
      pinned: false,
      slot: -1,
      loading: null,
      staged: null,
      origin,
      remotePath: name,
      remote: null,
      version: null,
      errorVersion: null,
      failure: null,
      reloading: null,
      download: null,
    };
  }

  private addRemoteRecord(name: string, remotePath: string, version: RemoteVersion | null): AdapterRecord {
    // Until downloaded, `dir` names a directory that does not exist (no chat template is read from it).
    const record = { ...this.newRecord(name, join(this.cache!.root, `${name}@pending`), 'remote'), remotePath, remote: version };
    this.records.set(name, record);
    this.notFound.delete(name);
    return record;
  }

  /** Resolves a path against the root and refuses anything outside it, symbolic links included. */
  confine(path: string): string {
    const candidate = resolve(this.root, path);
    if (isOutside(this.root, candidate)) throw new EngineError('invalid_request', `Path ${JSON.stringify(path)} is outside the adapters root.`);
    if (!existsSync(candidate) || !statSync(candidate).isDirectory())
      throw new EngineError('invalid_request', `Path ${JSON.stringify(path)} is not a directory under the adapters root.`);
    if (isOutside(realpathSync(this.root), realpathSync(candidate))) {
      throw new EngineError('invalid_request', `Path ${JSON.stringify(path)} leads outside the adapters root through a symbolic link.`);
    }
    return candidate;
  }

  private addRecord(name: string, dir: string): AdapterRecord {
    const record = this.newRecord(name, dir, 'local');
    try {
      if (isOutside(realpathSync(this.root), realpathSync(dir))) throw new Error(`${dir}: leads outside the adapters root through a symbolic link`);
      const config = readAdapterConfig(dir, this.options.maxRank);
      record.rank = Math.max(config.r, ...Object.values(config.rank_pattern ?? {}));
    } catch (e) {
      record.error = (e as Error).message;
      record.errorVersion = localVersion(dir);
    }
    this.records.set(name, record);
    return record;
  }

  /** Validates every local adapter fully (weights included) so errors show at start-up; remote ones load on first use. */
  async validateAll(): Promise<void> {
    for (const [name, record] of this.records) if (record.origin === 'local') await this.validate(name);
  }

  /**
   * Makes a name servable from local disk: an adapter not registered yet is looked up in the store (one look-up
   * for concurrent callers; a name the store lacks is remembered for a few seconds) and a remote adapter is
   * downloaded into the cache (one download for concurrent callers), checked on the way. Returns null for a name
   * nobody holds; an adapter whose content fails its checks comes back errored with the reason; a store failure
   * throws (adapter_store_unavailable, adapter_store_denied).
   */
  async prepare(name: string): Promise<AdapterInfo | null> {
    checkAdapterName(name);
    let record = this.records.get(name) ?? null;
    if (!record) {
      if (!this.store) return null;
      record = await this.resolveRemote(name);
      if (!record) return null;
    }
    const resident = record.slot > 0 || record.staged !== null || this.host.has(name);
    if (record.origin === 'remote' && !record.error && !resident) {
      this.throwIfFailing(record);
      try {
        await this.ensureLocal(record);
      } catch (e) {
        this.noteFailure(record, e);
        if (!(e instanceof IntegrityError)) throw e;
      }
    }
    return this.info(record);
  }

  private resolveRemote(name: string): Promise<AdapterRecord | null> {
    const until = this.notFound.get(name);
    if (until !== undefined && until > Date.now()) return Promise.resolve(null);
    const pending = this.resolving.get(name);
    if (pending) return pending;
    const lookup = (async () => {
      const version = await this.store!.describe(name);
      const existing = this.records.get(name);
      if (existing) return existing;
      if (!version) {
        this.notFound.set(name, Date.now() + NOT_FOUND_TTL_MS);
        if (this.notFound.size > MAX_NOT_FOUND_NAMES) this.notFound.delete(this.notFound.keys().next().value!);
        return null;
      }
      return this.addRemoteRecord(name, name, version);
    })().finally(() => this.resolving.delete(name));
    this.resolving.set(name, lookup);
    return lookup;
  }

  /** A remote adapter's newest version on local disk: from the cache, or downloaded (and checked) into it. */
  private async ensureLocal(record: AdapterRecord): Promise<{ dir: string; tag: string; downloaded: boolean }> {
    const store = this.store!;
    if (!record.remote) {
      record.remote = await store.describe(record.remotePath);
      if (!record.remote) throw new IntegrityError(`${store.url}${record.remotePath}/`, 'holds no adapter_config.json and adapter_model.safetensors');
    }
    const version = record.remote;
    let downloaded = false;
    const dir = await this.cache!.fill(record.name, version.tag, async (tmp) => {
      downloaded = true;
      const started = performance.now();
      for (const file of version.files) {
        const limit = file.name === 'adapter_model.safetensors' ? (this.options.maxAdapterBytes ?? Infinity) : SMALL_FILE_LIMIT_BYTES;
        await store.download(file, join(tmp, file.name), limit);
      }
      this.counters.downloads++;
      record.download = { tag: version.tag, ms: performance.now() - started };
    });
    if (this.records.get(record.name) === record && (record.version === null || record.version === version.tag)) record.dir = dir;
    return { dir, tag: version.tag, downloaded };
  }

  /** Content problems mark the adapter errored (until a new version); store failures fail requests for a while. */
  private noteFailure(record: AdapterRecord, e: unknown): void {
    if (e instanceof EngineError) {
      record.failure = { error: e, until: Date.now() + STORE_RETRY_MS };
      return;
    }
    record.error = (e as Error).message;
    record.errorVersion = record.origin === 'remote' ? (record.remote?.tag ?? null) : localVersion(record.dir);
  }

  private throwIfFailing(record: AdapterRecord): void {
    if (!record.failure) return;
    if (Date.now() < record.failure.until) throw record.failure.error;
    record.failure = null;
  }

  /** Parses an adapter into the host tier; a failure is recorded on the adapter (status errored), not thrown. */
  async validate(name: string): Promise<void> {
    const record = this.record(name);
    if (record.error) return;
    await this.loadToHost(record).catch(() => undefined);
  }

  has(name: string): boolean {
    return this.records.has(name);
  }

  names(): string[] {
    return [...this.records.keys()];
  }

  list(): AdapterInfo[] {
    return [...this.records.values()].map((r) => this.info(r));
  }

  get(name: string): AdapterInfo {
    return this.info(this.record(name));
  }

  private record(name: string): AdapterRecord {
    checkAdapterName(name);
    const record = this.records.get(name);
    if (!record) throw adapterNotFound(name);
    return record;
  }

  private onDisk(r: AdapterRecord): boolean {
    return r.origin === 'local' || (r.remote !== null && this.cache!.has(r.name, r.remote.tag));
  }

  private inUse(name: string): number {
    return this.slots.reduce((n, s) => n + (s.owner === name ? s.refs : 0), 0);
  }

  private info(r: AdapterRecord): AdapterInfo {
    const status: AdapterStatus = r.error
      ? 'errored'
      : r.slot > 0
        ? 'device'
        : r.loading
          ? 'loading'
          : this.host.has(r.name) || r.staged
            ? 'host'
            : this.onDisk(r)
              ? 'available'
              : 'remote';
    return {
      name: r.name,
      dir: r.dir,
      status,
      rank: r.rank,
      targets: r.targets,
      bytes: r.bytes,
      hits: r.hits,
      lastUsed: r.lastUsed ? new Date(r.lastUsed).toISOString() : null,
      pinned: r.pinned,
      inUse: this.inUse(r.name),
      origin: r.origin,
      version: r.version,
      ...(r.error ? { error: r.error } : {}),
    };
  }

  /** Throws the client-facing error for an adapter that cannot serve (unknown or errored). */
  check(name: string): void {
    const record = this.record(name);
    if (record.error) throw adapterCannotServe(name, record.error);
  }

  /**
   * Makes an adapter resident in a device slot and takes a reference. Returns the slot, or null if every
   * slot is held by running sequences (the caller retries after a release). Loading from disk happens
   * asynchronously: while it runs this returns null and the caller keeps the request queued.
   */
  tryAcquire(name: string | null): number | null {
    if (name === null) return 0;
    const record = this.record(name);
    if (record.error) throw adapterCannotServe(name, record.error);
    this.throwIfFailing(record);
    if (record.slot > 0) {
      this.counters.deviceHits++;
      return this.take(record);
    }
    const loaded = this.host.get(name) ?? record.staged;
    if (!loaded) {
      if (!record.loading) {
        this.counters.hostMisses++;
        this.loadToHost(record).catch(() => undefined);
      }
      return null;
    }
    const slot = this.freeSlot();
    if (slot === null) return null;
    this.counters.deviceMisses++;
    this.counters.hostHits++;
    this.stacks.write(slot, loaded);
    record.staged = null;
    this.slots[slot].owner = name;
    record.slot = slot;
    this.shrinkRankIfOversized();
    return this.take(record);
  }

  private take(record: AdapterRecord): number {
    const slot = this.slots[record.slot];
    slot.refs++;
    record.hits++;
    record.lastUsed = Date.now();
    slot.lastUsed = record.lastUsed;
    return record.slot;
  }

  release(slot: number): void {
    if (slot <= 0) return;
    const state = this.slots[slot];
    if (state.refs > 0) state.refs--;
    // The last request on an adapter's previous weights is done: free them.
    if (state.retired && state.refs === 0) this.clearSlot(slot);
    this.notify();
  }

  private notify(): void {
    const waiters = this.slotWaiters;
    this.slotWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when a slot reference was released or an adapter finished loading. */
  onChange(): Promise<void> {
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  private freeSlot(): number | null {
    let best: number | null = null;
    for (let slot = 1; slot < this.slots.length; slot++) {
      const state = this.slots[slot];
      if (state.owner === null && !state.retired) return slot;
      if (state.refs > 0 || state.retired) continue;
      if (state.owner && this.records.get(state.owner)?.pinned) continue;
      if (best === null || state.lastUsed < this.slots[best].lastUsed) best = slot;
    }
    if (best !== null) this.evictSlot(best);
    return best;
  }

  private evictSlot(slot: number): void {
    const owner = this.slots[slot].owner;
    if (owner) {
      const r = this.records.get(owner);
      if (r && r.slot === slot) r.slot = -1;
      this.counters.deviceEvictions++;
    }
    this.clearSlot(slot);
  }

  private clearSlot(slot: number): void {
    Object.assign(this.slots[slot], { owner: null, refs: 0, retired: false });
    this.stacks.clear(slot);
  }

  /** An adapter's slot after a reload: cleared now if nothing runs on it, otherwise when its last request ends. */
  private retireSlot(slot: number): void {
    if (this.slots[slot].refs === 0) this.clearSlot(slot);
    else this.slots[slot].retired = true;
    this.shrinkRankIfOversized();
  }

  /**
   * The stacks' rank grows with the largest adapter written (SlotStacks.write) and shrinks only once every
   * resident adapter fits in half of it: an eviction followed by a write of another large adapter (the common
   * case) re-lays nothing out, and the per-step work still follows the resident adapters.
   */
  private shrinkRankIfOversized(): void {
    // A retired slot's adapter may have had a larger rank than its new version: count the running weights.
    const residentRank = Math.max(1, ...this.slots.map((s) => (s.owner ? (s.retired ? this.stacks.rank : (this.records.get(s.owner)?.rank ?? 0)) : 0)));
    if (residentRank * 2 <= this.stacks.rank) this.stacks.fitRank(residentRank);
  }

  /** Reads an adapter's current version from disk (downloading it first when remote) and validates it. */
  private async readVersion(record: AdapterRecord): Promise<{ adapter: LoadedAdapter; dir: string; tag: string; source: 'disk' | 's3'; downloadMs: number }> {
    if (record.origin === 'local') {
      const tag = localVersion(record.dir);
      return {
        adapter: await loadPeftAdapterAsync(record.name, record.dir, this.spec, this.options.maxRank),
        dir: record.dir,
        tag,
        source: 'disk',
        downloadMs: 0,
      };
    }
    const local = await this.ensureLocal(record);
    const unpin = this.cache!.pin(record.name, local.tag);
    try {
      const adapter = await loadPeftAdapterAsync(record.name, local.dir, this.spec, this.options.maxRank);
      // The download may have happened just before (prepare): its time counts in this load.
      const download = record.download?.tag === local.tag ? record.download : null;
      record.download = null;
      return { adapter, dir: local.dir, tag: local.tag, source: download ? 's3' : 'disk', downloadMs: download?.ms ?? 0 };
    } finally {
      unpin();
    }
  }

  private loadToHost(record: AdapterRecord): Promise<LoadedAdapter> {
    if (record.loading) return record.loading;
    const cached = this.host.get(record.name);
    if (cached) return Promise.resolve(cached);
    const started = performance.now();
    record.loading = this.readVersion(record)
      .then(({ adapter, dir, tag, source, downloadMs }) => {
        record.rank = adapter.rank;
        record.targets = adapter.targets;
        record.bytes = adapter.bytes;
        record.dir = dir;
        record.version = tag;
        if (this.records.get(record.name) === record) {
          this.host.set(record.name, adapter);
          if (!this.host.has(record.name)) record.staged = adapter;
        }
        const ms = performance.now() - started + downloadMs;
        this.counters.loads++;
        this.counters.loadMsTotal += ms;
        this.onLoad?.({ adapter: record.name, seconds: ms / 1000, source });
        return adapter;
      })
      .catch((e: Error) => {
        this.noteFailure(record, e);
        this.counters.loadErrors++;
        throw e;
      })
      .finally(() => {
        record.loading = null;
        this.notify();
      });
    return record.loading;
  }

  pin(name: string, pinned: boolean): AdapterInfo {
    const record = this.record(name);
    if (record.error) throw new EngineError('adapter_errored', `Adapter ${name} cannot be pinned: ${record.error}.`);
    record.pinned = pinned;
    return this.info(record);
  }

  /**
   * Reads an adapter's files again (its newest version in the store, or its local directory) and swaps the new
   * weights in at once: requests running on the old weights finish on them (their slot is retired and cleared
   * when the last one ends), requests admitted from now on get the new ones, and the old host copy and cached
   * files are dropped. A version that fails validation is refused with its reason and the old one keeps serving.
   */
  reload(name: string): Promise<ReloadResult> {
    const record = this.record(name);
    if (record.reloading) return record.reloading;
    record.reloading = (async () => {
      if (record.loading) await record.loading.catch(() => undefined);
      const previousVersion = record.version;
      if (record.origin === 'remote') {
        const latest = await this.store!.describe(record.remotePath);
        if (!latest) throw new EngineError('adapter_not_found', `Adapter ${name} is no longer in ${this.store!.url}; DELETE it to unregister it.`);
        record.remote = latest;
      }
      const started = performance.now();
      let next: Awaited<ReturnType<AdapterManager['readVersion']>>;
      try {
        next = await this.readVersion(record);
      } catch (e) {
        if (e instanceof EngineError) throw e;
        const still = record.version !== null && !record.error ? ' The previous version keeps serving.' : '';
        throw new EngineError('adapter_errored', `Adapter ${name} was not reloaded: ${(e as Error).message}.${still}`);
      }
      if (this.records.get(name) !== record) throw adapterNotFound(name);
      Object.assign(record, {
        error: null,
        errorVersion: null,
        failure: null,
        dir: next.dir,
        version: next.tag,
        rank: next.adapter.rank,
        targets: next.adapter.targets,
        bytes: next.adapter.bytes,
        staged: null,
      });
      this.host.set(name, next.adapter); // replaces (and frees) the previous host copy
      if (!this.host.has(name)) record.staged = next.adapter;
      if (record.slot > 0) {
        const old = record.slot;
        record.slot = -1;
        this.retireSlot(old);
      }
      if (record.origin === 'remote') this.cache!.dropOthers(name, next.tag);
      this.counters.reloads++;
      this.onLoad?.({ adapter: name, seconds: (performance.now() - started + next.downloadMs) / 1000, source: next.source });
      this.notify();
      return { info: this.info(record), previousVersion };
    })().finally(() => (record.reloading = null));
    return record.reloading;
  }

  /**
   * Picks up changed adapters (the check interval): new adapters in the store or the adapters directory are
   * registered; an adapter whose files changed since it was loaded is reloaded, and an errored one whose files
   * changed is validated again. Returns what was reloaded and what failed.
   */
  async checkForUpdates(): Promise<{ reloaded: string[]; failed: Array<{ adapter: string; error: string }> }> {
    const due: string[] = [];
    if (this.store) due.push(...(await this.refreshRemote()));
    else {
      this.scan();
      for (const r of this.records.values()) {
        if (r.origin !== 'local' || r.loading || r.reloading) continue;
        const now = localVersion(r.dir);
        if (r.error && r.errorVersion !== null && r.errorVersion !== now) {
          r.error = null;
          r.errorVersion = null;
          due.push(r.name);
        } else if (!r.error && r.version !== null && r.version !== now) due.push(r.name);
      }
    }
    const result = { reloaded: [] as string[], failed: [] as Array<{ adapter: string; error: string }> };
    for (const name of due) {
      try {
        await this.reload(name);
        result.reloaded.push(name);
      } catch (e) {
        result.failed.push({ adapter: name, error: (e as Error).message });
      }
    }
    return result;
  }

  /** Unregisters an adapter and frees its host and device memory. Refused while sequences use it. */
  remove(name: string): void {
    const record = this.record(name);
    const inUse = this.inUse(name);
    if (inUse > 0) throw new EngineError('adapter_in_use', `Adapter ${name} is used by ${inUse} running request(s).`);
    if (record.slot > 0) {
      this.evictSlot(record.slot);
      this.counters.deviceEvictions--; // an explicit removal is not a cache eviction
      this.shrinkRankIfOversized();
    }
    this.host.delete(name);
    record.staged = null;
    this.records.delete(name);
    if (record.origin === 'remote') this.cache!.dropOthers(name, null);
  }

  /** Adapters in device slots, idle or not, sorted (running_lora_adapters); a retired slot's adapter included. */
  residentNames(): string[] {
    return [...new Set(this.slots.flatMap((s) => (s.owner ? [s.owner] : [])))].sort();
  }

  tiers(): AdapterTiers {
    let device = 0;
    let disk = 0;
    let remote = 0;
    let host = 0;
    for (const r of this.records.values()) {
      if (r.error) continue;
      if (r.slot > 0) device++;
      if (this.host.has(r.name) || r.staged) host++;
      if (this.onDisk(r)) disk++;
      else remote++;
    }
    return { device, host, disk, remote, hostBytes: this.host.calculatedSize, diskCacheBytes: this.cache?.bytes ?? 0 };
  }

  get hostBytes(): number {
    return this.host.calculatedSize;
  }

  /** The rank dimension of the device slot stacks (follows the largest resident adapter). */
  get stackRank(): number {
    return this.stacks.rank;
  }

  /** Device slots holding some version of an adapter: 2 while a reloaded adapter's old slot still runs requests. */
  slotsHolding(name: string): number {
    return this.slots.filter((s) => s.owner === name).length;
  }

  get slotsInUse(): number {
    return this.slots.filter((s) => s.owner !== null).length;
  }
}
