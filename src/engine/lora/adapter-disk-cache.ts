/**
 * Downloaded adapter versions on local disk (`--adapter-cache-dir`), bounded in bytes, least recently used
 * evicted first. One directory per version, `NAME@TAG/`, written under a temporary name and renamed when
 * complete (a crash never leaves a half-written version that looks complete); a restart reuses what is there.
 * One download per version however many callers ask at once (single flight). Entries being parsed are pinned
 * and never evicted under the reader. Hand-written rather than lru-cache: eviction must skip pinned entries.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Entry {
  dir: string;
  bytes: number;
  pins: number;
}

export class AdapterDiskCache {
  /** Insertion order = recency (a hit moves the entry to the end). */
  private readonly entries = new Map<string, Entry>();
  private readonly filling = new Map<string, Promise<string>>();
  private total = 0;
  evictions = 0;

  constructor(
    readonly root: string,
    private readonly maxBytes: number,
  ) {
    mkdirSync(root, { recursive: true });
    const found: Array<{ key: string; dir: string; bytes: number; mtime: number }> = [];
    for (const name of readdirSync(root)) {
      const dir = join(root, name);
      if (name.startsWith('.tmp-')) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      if (!name.includes('@') || !existsSync(join(dir, '.complete'))) continue;
      const bytes = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
      found.push({ key: name, dir, bytes, mtime: statSync(join(dir, '.complete')).mtimeMs });
    }
    for (const f of found.sort((a, b) => a.mtime - b.mtime)) this.add(f.key, f.dir, f.bytes);
    this.evict();
  }

  static key(name: string, tag: string): string {
    return `${name}@${tag}`;
  }

  get bytes(): number {
    return this.total;
  }

  has(name: string, tag: string): boolean {
    return this.entries.has(AdapterDiskCache.key(name, tag));
  }

  /** The directory of a cached version (and marks it recently used), or null. */
  get(name: string, tag: string): string | null {
    const key = AdapterDiskCache.key(name, tag);
    const entry = this.entries.get(key);
    if (!entry) return null;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.dir;
  }

  /**
   * The directory of a version, written by `write(tmpDir)` when it is not cached; concurrent calls for the same
   * version share one write. A failed write leaves nothing behind.
   */
  fill(name: string, tag: string, write: (dir: string) => Promise<void>): Promise<string> {
    const cached = this.get(name, tag);
    if (cached) return Promise.resolve(cached);
    const key = AdapterDiskCache.key(name, tag);
    const pending = this.filling.get(key);
    if (pending) return pending;
    const tmp = join(this.root, `.tmp-${key}-${process.pid}-${Date.now()}`);
    const promise = (async () => {
      mkdirSync(tmp, { recursive: true });
      try {
        await write(tmp);
        writeFileSync(join(tmp, '.complete'), '');
        const dir = join(this.root, key);
        rmSync(dir, { recursive: true, force: true });
        renameSync(tmp, dir);
        const bytes = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
        this.add(key, dir, bytes);
        // The new entry is pinned while eviction runs, so that a version larger than the bound is still handed out.
        const entry = this.entries.get(key)!;
        entry.pins++;
        this.evict();
        entry.pins--;
        return dir;
      } catch (e) {
        rmSync(tmp, { recursive: true, force: true });
        throw e;
      } finally {
        this.filling.delete(key);
      }
    })();
    this.filling.set(key, promise);
    return promise;
  }

  /** Keeps a version from eviction until the returned function is called (while it is parsed). */
  pin(name: string, tag: string): () => void {
    const entry = this.entries.get(AdapterDiskCache.key(name, tag));
    if (!entry) return () => undefined;
    entry.pins++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      entry.pins--;
      this.evict();
    };
  }

  /** Drops every cached version of `name` but `keepTag` (a reloaded adapter's old files). */
  dropOthers(name: string, keepTag: string | null): void {
    for (const [key, entry] of this.entries) {
      if (key.startsWith(`${name}@`) && key !== AdapterDiskCache.key(name, keepTag ?? '') && entry.pins === 0) this.remove(key, entry);
    }
  }

  private add(key: string, dir: string, bytes: number): void {
    const old = this.entries.get(key);
    if (old) this.total -= old.bytes;
    this.entries.delete(key);
    this.entries.set(key, { dir, bytes, pins: old?.pins ?? 0 });
    this.total += bytes;
  }

  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.total <= this.maxBytes) return;
      if (entry.pins > 0) continue;
      this.remove(key, entry);
      this.evictions++;
    }
  }

  private remove(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.total -= entry.bytes;
    rmSync(entry.dir, { recursive: true, force: true });
  }
}
