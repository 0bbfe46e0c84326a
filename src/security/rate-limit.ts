/**
 * Per-key limits: a token bucket per key name (rateLimitPerMinute requests, refilled continuously, a
 * full minute's worth of burst) and a count of requests in flight (maxConcurrent). State is held per
 * configured key only, so it is bounded by the number of keys, never by client input.
 */

export interface Clock {
  now(): number;
}

const systemClock: Clock = { now: () => performance.now() };

interface Bucket {
  tokens: number;
  updatedAt: number;
}

export class KeyLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly clock: Clock = systemClock) {}

  /**
   * Takes one request from the key's bucket. Returns 0 when allowed, else the seconds until one
   * request's worth has refilled (for Retry-After).
   */
  take(key: string, perMinute: number): number {
    const now = this.clock.now();
    const ratePerMs = perMinute / 60_000;
    const bucket = this.buckets.get(key) ?? { tokens: perMinute, updatedAt: now };
    bucket.tokens = Math.min(perMinute, bucket.tokens + (now - bucket.updatedAt) * ratePerMs);
    bucket.updatedAt = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / ratePerMs / 1000));
  }

  /** Counts a request in flight for the key; false (and nothing counted) when it is at its limit. */
  enter(key: string, max: number): boolean {
    const n = this.inFlight.get(key) ?? 0;
    if (n >= max) return false;
    this.inFlight.set(key, n + 1);
    return true;
  }

  leave(key: string): void {
    const n = (this.inFlight.get(key) ?? 0) - 1;
    if (n <= 0) this.inFlight.delete(key);
    else this.inFlight.set(key, n);
  }

  active(key: string): number {
    return this.inFlight.get(key) ?? 0;
  }
}
