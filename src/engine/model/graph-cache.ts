/**
 * The graph cache's size bound: each entry (one folder per checkpoint x build options, model-cache.ts) can be as
 * large as the weights in float32, so entries left by other checkpoints and settings are evicted least recently
 * used first until the cache fits its bound, never the entry being served. Use is recorded in a `last-used` file
 * in the entry (its modification time), touched every time a server starts from the entry. Leftover temporary
 * folders of interrupted builds (`<key>.tmp-<pid>-<time>`) go once they are an hour old.
 *
 * On Linux a removed entry that a running server has already loaded stays readable to that server (open and
 * mapped files outlive their names), so pruning never breaks a server that has started.
 */
import { existsSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const LAST_USED = 'last-used';
const MODEL_FILE = 'model.onnx';
const STALE_TMP_MS = 60 * 60 * 1000;

export interface CacheEntry {
  dir: string;
  bytes: number;
  lastUsedMs: number;
}

/** Marks an entry as used now. */
export function touchEntry(dir: string): void {
  const file = join(dir, LAST_USED);
  const now = new Date();
  if (existsSync(file)) utimesSync(file, now, now);
  else writeFileSync(file, '');
}

/** Bytes an entry holds of its own: hard links to checkpoint files (checkpoint-links.ts) cost no extra space. */
function folderBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const st = statSync(join(dir, name));
    if (st.isDirectory()) total += folderBytes(join(dir, name));
    else if (st.nlink === 1) total += st.size;
  }
  return total;
}

/** The complete entries of a cache folder, least recently used first. */
export function listEntries(cacheDir: string): CacheEntry[] {
  if (!existsSync(cacheDir)) return [];
  const entries: CacheEntry[] = [];
  for (const name of readdirSync(cacheDir)) {
    const dir = join(cacheDir, name);
    if (name.includes('.tmp-') || !statSync(dir).isDirectory() || !existsSync(join(dir, MODEL_FILE))) continue;
    const marker = join(dir, LAST_USED);
    entries.push({ dir, bytes: folderBytes(dir), lastUsedMs: (existsSync(marker) ? statSync(marker) : statSync(dir)).mtimeMs });
  }
  return entries.sort((a, b) => a.lastUsedMs - b.lastUsedMs);
}

export interface PruneResult {
  removed: CacheEntry[];
  /** Bytes of the entries that remain. */
  keptBytes: number;
}

/**
 * Removes least recently used entries until the rest fit in `maxBytes` (never those in `keep`), and temporary
 * folders of builds that stopped more than an hour ago. maxBytes 0 removes every entry not kept.
 */
export function pruneCache(cacheDir: string, maxBytes: number, keep: string[] = []): PruneResult {
  const kept = new Set(keep.map((d) => basename(d)));
  if (existsSync(cacheDir)) {
    for (const name of readdirSync(cacheDir)) {
      if (name.includes('.tmp-') && Date.now() - statSync(join(cacheDir, name)).mtimeMs > STALE_TMP_MS)
        rmSync(join(cacheDir, name), { recursive: true, force: true });
    }
  }
  const entries = listEntries(cacheDir);
  let total = entries.reduce((n, e) => n + e.bytes, 0);
  const removed: CacheEntry[] = [];
  for (const entry of entries) {
    if (total <= maxBytes) break;
    if (kept.has(basename(entry.dir))) continue;
    rmSync(entry.dir, { recursive: true, force: true });
    removed.push(entry);
    total -= entry.bytes;
  }
  return { removed, keptBytes: total };
}
