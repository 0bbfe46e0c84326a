/**
 * A per-target circuit breaker. Closed: calls pass and consecutive failures are counted. Open (after
 * `failureThreshold` consecutive failures): calls are refused until `cooldownMs` has passed.
 * Half-open: one probe call passes; its success closes the circuit, its failure opens it again.
 */

export type CircuitState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  failureThreshold: number;
  cooldownMs: number;
  /** Milliseconds since the epoch; injectable so tests can move time. */
  now?: () => number;
}

export interface CircuitSnapshot {
  state: CircuitState;
  consecutiveFailures: number;
  /** Epoch ms when an open circuit lets a probe through. */
  openUntil?: number;
}

/** Handed out by tryAcquire; a probe is the single call let through a half-open circuit. */
export interface CallPermit {
  readonly probe: boolean;
}

export class CircuitBreaker {
  private readonly failureThreshold: number;
  private readonly cooldownMs: number;
  private readonly now: () => number;
  private consecutiveFailures = 0;
  private openUntil: number | null = null;
  private probeInFlight = false;

  constructor(options: CircuitBreakerOptions) {
    this.failureThreshold = options.failureThreshold;
    this.cooldownMs = options.cooldownMs;
    this.now = options.now ?? Date.now;
  }

  get state(): CircuitState {
    if (this.openUntil === null) return 'closed';
    return this.now() < this.openUntil ? 'open' : 'half-open';
  }

  /**
   * Asks to make one call; null means refused. Every permit must be handed back to exactly one of
   * recordSuccess, recordFailure or release, so a half-open probe slot is never leaked.
   */
  tryAcquire(): CallPermit | null {
    const state = this.state;
    if (state === 'closed') return { probe: false };
    if (state === 'open' || this.probeInFlight) return null;
    this.probeInFlight = true;
    return { probe: true };
  }

  recordSuccess(permit: CallPermit): void {
    if (permit.probe) this.probeInFlight = false;
    this.consecutiveFailures = 0;
    this.openUntil = null;
  }

  recordFailure(permit: CallPermit): void {
    if (permit.probe) this.probeInFlight = false;
    this.consecutiveFailures++;
    if (permit.probe || this.consecutiveFailures >= this.failureThreshold) {
      this.openUntil = this.now() + this.cooldownMs;
    }
  }

  /** Ends a call that says nothing about the target's health (a client error, an abort, throttling). */
  release(permit: CallPermit): void {
    if (permit.probe) this.probeInFlight = false;
  }

  /** Milliseconds until an open circuit lets a probe through; 0 when not open. */
  msUntilProbe(): number {
    return this.openUntil === null ? 0 : Math.max(0, this.openUntil - this.now());
  }

  snapshot(): CircuitSnapshot {
    const state = this.state;
    const snapshot: CircuitSnapshot = { state, consecutiveFailures: this.consecutiveFailures };
    if (state === 'open' && this.openUntil !== null) snapshot.openUntil = this.openUntil;
    return snapshot;
  }
}
