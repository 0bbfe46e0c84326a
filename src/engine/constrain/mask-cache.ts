/** Least-recently-used cache of token masks by automaton-state key, bounded by entries and stored ids. */
import type { TokenMask } from './token-mask.js';

export class MaskCache {
  private readonly entries = new Map<string, TokenMask>();
  private storedIds = 0;
  hits = 0;
  misses = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxStoredIds: number,
  ) {}

  get(key: string): TokenMask | undefined {
    const mask = this.entries.get(key);
    if (mask === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    // Re-insert to mark as most recently used.
    this.entries.delete(key);
    this.entries.set(key, mask);
    return mask;
  }

  set(key: string, mask: TokenMask): void {
    if (mask.ids.length > this.maxStoredIds) return;
    this.entries.set(key, mask);
    this.storedIds += mask.ids.length;
    while (this.entries.size > this.maxEntries || this.storedIds > this.maxStoredIds) {
      const [oldestKey, oldest] = this.entries.entries().next().value as [string, TokenMask];
      this.entries.delete(oldestKey);
      this.storedIds -= oldest.ids.length;
    }
  }

  get size(): number {
    return this.entries.size;
  }
}
