/**
 * Where every adapter is and who uses it. Three tiers, as in vLLM and S-LoRA:
 *   registry (disk)  -> host LRU (parsed, validated, scale-folded weights, bounded in bytes)
 *                    -> device slots (the stacks the model reads; least recently used among unused slots is replaced)
 * A slot used by a running sequence is never replaced (reference counts); a pinned adapter stays in its slot.
 */
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, relative, isAbsolute, resolve } from 'node:path';
import { LRUCache } from 'lru-cache';
import { EngineError } from '../errors.js';
import type { ModelSpec } from '../model/hf-config.js';
import type { Projection } from '../model/graph-builder.js';
import { loadPeftAdapterAsync, readAdapterConfig, type LoadedAdapter } from './peft-adapter.js';
import type { SlotStacks } from './slot-stacks.js';

export type AdapterStatus = 'available' | 'loading' | 'host' | 'device' | 'errored';

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
  refs: number;
  slot: number;
  loading: Promise<LoadedAdapter> | null;
  /** A loaded adapter waiting for a slot when the host tier could not keep it (larger than the whole tier). */
  staged: LoadedAdapter | null;
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
}

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
  /** slotOwner[slot] = adapter name; slot 0 is the base model and never owned. */
  private readonly slotOwner: (string | null)[];
  private readonly slotLastUsed: number[];
  private slotWaiters: Array<() => void> = [];
  readonly counters: AdapterCounters = { deviceHits: 0, deviceMisses: 0, hostHits: 0, hostMisses: 0, loads: 0, loadErrors: 0, loadMsTotal: 0, hostEvictions: 0, deviceEvictions: 0 };
  readonly root: string;

  constructor(private readonly spec: ModelSpec, private readonly stacks: SlotStacks, private readonly options: AdapterManagerOptions) {
    this.root = resolve(options.root);
    this.slotOwner = Array.from({ length: stacks.slotCount }, () => null);
    this.slotLastUsed = Array.from({ length: stacks.slotCount }, () => 0);
    this.host = new LRUCache<string, LoadedAdapter>({
      maxSize: Math.max(1, options.hostCacheBytes),
      sizeCalculation: (a) => Math.max(1, a.bytes),
      dispose: (_value, _key, reason) => {
        if (reason === 'evict') this.counters.hostEvictions++;
      },
    });
  }

  /** Registers every adapter directory under the root. Broken ones are kept, errored, with their reason. */
  scan(): void {
    if (!existsSync(this.root)) return;
    for (const entry of readdirSync(this.root, { withFileTypes: true })) {
      if (!entry.isDirectory() && !entry.isSymbolicLink()) continue;
      if (!ADAPTER_NAME.test(entry.name) || this.records.has(entry.name)) continue;
      this.addRecord(entry.name, join(this.root, entry.name));
    }
  }

  /** Registers an adapter at run time from a path under the adapters root. */
  register(name: string, path: string): AdapterInfo {
    checkAdapterName(name);
    if (this.records.has(name)) throw new EngineError('adapter_exists', `Adapter ${name} is already registered.`);
    const dir = this.confine(path);
    const record = this.addRecord(name, dir);
    return this.info(record);
  }

  /** Resolves a path against the root and refuses anything outside it, symbolic links included. */
  confine(path: string): string {
    const candidate = resolve(this.root, path);
    if (isOutside(this.root, candidate)) throw new EngineError('invalid_request', `Path ${JSON.stringify(path)} is outside the adapters root.`);
    if (!existsSync(candidate) || !statSync(candidate).isDirectory()) throw new EngineError('invalid_request', `Path ${JSON.stringify(path)} is not a directory under the adapters root.`);
    if (isOutside(realpathSync(this.root), realpathSync(candidate))) {
      throw new EngineError('invalid_request', `Path ${JSON.stringify(path)} leads outside the adapters root through a symbolic link.`);
    }
    return candidate;
  }

  private addRecord(name: string, dir: string): AdapterRecord {
    const record: AdapterRecord = { name, dir, error: null, rank: null, targets: [], bytes: null, hits: 0, lastUsed: null, pinned: false, refs: 0, slot: -1, loading: null, staged: null };
    try {
      if (isOutside(realpathSync(this.root), realpathSync(dir))) throw new Error(`${dir}: leads outside the adapters root through a symbolic link`);
      const config = readAdapterConfig(dir, this.options.maxRank);
      record.rank = Math.max(config.r, ...Object.values(config.rank_pattern ?? {}));
    } catch (e) {
      record.error = (e as Error).message;
    }
    this.records.set(name, record);
    return record;
  }

  /** Validates every registered adapter fully (weights included) so errors show at start-up. */
  async validateAll(): Promise<void> {
    for (const name of this.records.keys()) await this.validate(name);
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

  private info(r: AdapterRecord): AdapterInfo {
    const status: AdapterStatus = r.error ? 'errored' : r.slot > 0 ? 'device' : r.loading ? 'loading' : this.host.has(r.name) ? 'host' : 'available';
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
      inUse: r.refs,
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
    this.slotOwner[slot] = name;
    record.slot = slot;
    this.shrinkRankIfOversized();
    return this.take(record);
  }

  private take(record: AdapterRecord): number {
    record.refs++;
    record.hits++;
    record.lastUsed = Date.now();
    this.slotLastUsed[record.slot] = record.lastUsed;
    return record.slot;
  }

  release(slot: number): void {
    if (slot <= 0) return;
    const name = this.slotOwner[slot];
    const record = name ? this.records.get(name) : undefined;
    if (record && record.refs > 0) record.refs--;
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
    for (let slot = 1; slot < this.slotOwner.length; slot++) {
      const owner = this.slotOwner[slot];
      if (owner === null) return slot;
      const r = this.records.get(owner);
      if (r && (r.refs > 0 || r.pinned)) continue;
      if (best === null || this.slotLastUsed[slot] < this.slotLastUsed[best]) best = slot;
    }
    if (best !== null) this.evictSlot(best);
    return best;
  }

  private evictSlot(slot: number): void {
    const owner = this.slotOwner[slot];
    if (owner) {
      const r = this.records.get(owner);
      if (r) r.slot = -1;
      this.counters.deviceEvictions++;
    }
    this.slotOwner[slot] = null;
    this.stacks.clear(slot);
  }

  /**
   * The stacks' rank grows with the largest adapter written (SlotStacks.write) and shrinks only once every
   * resident adapter fits in half of it: an eviction followed by a write of another large adapter (the common
   * case) re-lays nothing out, and the per-step work still follows the resident adapters.
   */
  private shrinkRankIfOversized(): void {
    const residentRank = Math.max(1, ...this.slotOwner.map((o) => (o ? this.records.get(o)?.rank ?? 0 : 0)));
    if (residentRank * 2 <= this.stacks.rank) this.stacks.fitRank(residentRank);
  }

  private loadToHost(record: AdapterRecord): Promise<LoadedAdapter> {
    if (record.loading) return record.loading;
    const cached = this.host.get(record.name);
    if (cached) return Promise.resolve(cached);
    const started = performance.now();
    record.loading = loadPeftAdapterAsync(record.name, record.dir, this.spec, this.options.maxRank)
      .then((adapter) => {
        record.rank = adapter.rank;
        record.targets = adapter.targets;
        record.bytes = adapter.bytes;
        if (this.records.get(record.name) === record) {
          this.host.set(record.name, adapter);
          if (!this.host.has(record.name)) record.staged = adapter;
        }
        this.counters.loads++;
        this.counters.loadMsTotal += performance.now() - started;
        return adapter;
      })
      .catch((e: Error) => {
        record.error = e.message;
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

  /** Unregisters an adapter and frees its host and device memory. Refused while sequences use it. */
  remove(name: string): void {
    const record = this.record(name);
    if (record.refs > 0) throw new EngineError('adapter_in_use', `Adapter ${name} is used by ${record.refs} running request(s).`);
    if (record.slot > 0) {
      this.evictSlot(record.slot);
      this.counters.deviceEvictions--; // an explicit removal is not a cache eviction
      this.shrinkRankIfOversized();
    }
    this.host.delete(name);
    record.staged = null;
    this.records.delete(name);
  }

  get hostBytes(): number {
    return this.host.calculatedSize;
  }

  /** The rank dimension of the device slot stacks (follows the largest resident adapter). */
  get stackRank(): number {
    return this.stacks.rank;
  }

  get slotsInUse(): number {
    return this.slotOwner.filter((o) => o !== null).length;
  }
}
