/**
 * Load shedding: every `intervalMs` the shedder samples the event-loop delay, the V8 heap in use (as a
 * percentage of the heap limit) and the resident set size. While any is above its threshold, new requests
 * are answered 503 `overloaded` with Retry-After before they reach the engine; health, readiness and metrics
 * stay answered. A threshold of 0 turns that signal off. The probe is injectable so tests can drive it.
 *
 * What the delay measures: the p99 of perf_hooks.monitorEventLoopDelay over the last interval (or, if
 * larger, how late the sampling tick itself ran), of the thread the shedder runs in: the HTTP thread
 * (fastify, routing, JSON, SSE writes). Smoothed with an exponential moving average so that one isolated
 * stall does not shed on its own. With the engine in its worker thread (src/engine/worker) that delay is the
 * HTTP thread's own: the model build, the step loop, sampling and detokenization do not show in it (in tests
 * whose engine runs in-process, they do). Heap and RSS are the process's (every thread's).
 *
 * Rules for the delay signal, so that a stall nobody waited on never sheds:
 *   - samples taken while not active (before the engine is attached: a model build stalls the loop) are
 *     discarded, and so is the first one after becoming active (it covers time from before); on becoming
 *     active the histogram and the smoothing start from zero;
 *   - an interval without traffic (no request other than the open routes arrived and none was in flight,
 *     see requestStarted) contributes no delay: the average decays, and the delay alone never sheds then.
 *     An idle server answers its next request; the samples taken while requests arrive decide after that.
 * Heap and RSS are states, not interval measures: above their thresholds they shed, traffic or not.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

export interface LoadSample {
  /** p99 event-loop delay over the interval since the previous sample, ms. */
  eventLoopDelayMs: number;
  heapUsedBytes: number;
  heapLimitBytes: number;
  rssBytes: number;
}

export interface ShedThresholds {
  /** Smoothed p99 event-loop delay above which requests are shed, ms; 0 = off. */
  eventLoopDelayMs: number;
  /** V8 heap in use as a percentage of its limit; 0 = off. */
  heapUsedPercent: number;
  /** Resident set size in MiB; 0 = off. */
  rssMb: number;
}

/** Weight of the newest interval in the smoothed event-loop delay. */
const SMOOTHING = 0.5;

export class LoadShedder {
  /** Replaceable (tests): returns the current sample. */
  probe: () => LoadSample;
  /** Why requests are being shed now, or null. */
  reason: string | null = null;
  smoothedDelayMs = 0;
  last: LoadSample | null = null;
  private histogram: IntervalHistogram | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Whether the previous sample was taken while active. */
  private wasActive = false;
  private inFlight = 0;
  /** Requests that arrived since the previous sample. */
  private arrivals = 0;
  /** How late the sampling timer's current tick ran, ms. */
  private tickLatenessMs = 0;

  constructor(
    readonly thresholds: ShedThresholds,
    /** Samples only count while this is true (the engine is attached): a model load may stall the loop. */
    private readonly isActive: () => boolean = () => true,
  ) {
    this.probe = () => this.defaultProbe();
  }

  get enabled(): boolean {
    const t = this.thresholds;
    return t.eventLoopDelayMs > 0 || t.heapUsedPercent > 0 || t.rssMb > 0;
  }

  start(intervalMs = 500): void {
    if (!this.enabled || this.timer) return;
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
    let due = performance.now() + intervalMs;
    this.timer = setInterval(() => {
      const now = performance.now();
      this.tickLatenessMs = Math.max(0, now - due);
      due = now + intervalMs;
      this.update();
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.histogram?.disable();
    this.histogram = null;
  }

  /** Requests in flight (those counted by requestStarted and not yet done). */
  get requestsInFlight(): number {
    return this.inFlight;
  }

  /**
   * A request (not a health, readiness or metrics probe) arrived: it is traffic for the delay signal until
   * the returned function is called (any number of times) when it is done.
   */
  requestStarted(): () => void {
    this.inFlight++;
    this.arrivals++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight--;
    };
  }

  /** Takes a sample and decides whether to shed; called by the timer, and by tests directly. */
  update(): string | null {
    const sample = this.probe();
    this.last = sample;
    const traffic = this.arrivals > 0 || this.inFlight > 0;
    this.arrivals = 0;
    const active = this.isActive();
    const firstActive = active && !this.wasActive;
    this.wasActive = active;
    if (!active || firstActive) {
      // Before the engine is attached, or the first sample since: it holds time from before (a model build).
      this.smoothedDelayMs = 0;
      this.histogram?.reset();
      this.reason = null;
      return null;
    }
    this.smoothedDelayMs = this.smoothedDelayMs * (1 - SMOOTHING) + (traffic ? sample.eventLoopDelayMs : 0) * SMOOTHING;
    const t = this.thresholds;
    const heapPercent = sample.heapLimitBytes > 0 ? (100 * sample.heapUsedBytes) / sample.heapLimitBytes : 0;
    const rssMb = sample.rssBytes / (1024 * 1024);
    if (t.eventLoopDelayMs > 0 && traffic && this.smoothedDelayMs > t.eventLoopDelayMs) {
      this.reason = `event-loop delay ${Math.round(this.smoothedDelayMs)} ms is above ${t.eventLoopDelayMs} ms`;
    } else if (t.heapUsedPercent > 0 && heapPercent > t.heapUsedPercent) {
      this.reason = `heap use ${heapPercent.toFixed(0)}% is above ${t.heapUsedPercent}%`;
    } else if (t.rssMb > 0 && rssMb > t.rssMb) {
      this.reason = `resident memory ${Math.round(rssMb)} MiB is above ${t.rssMb} MiB`;
    } else {
      this.reason = null;
    }
    return this.reason;
  }

  private defaultProbe(): LoadSample {
    // The sampling timer's own lateness too: when this tick runs before the monitor's timer has recorded a
    // stall, reset() (which also forgets the monitor's previous timestamp) would make the stall vanish.
    let eventLoopDelayMs = this.tickLatenessMs;
    this.tickLatenessMs = 0;
    if (this.histogram) {
      if (this.histogram.count > 0) eventLoopDelayMs = Math.max(eventLoopDelayMs, this.histogram.percentile(99) / 1e6);
      this.histogram.reset();
    }
    const m = process.memoryUsage();
    return { eventLoopDelayMs, heapUsedBytes: m.heapUsed, heapLimitBytes: getHeapStatistics().heap_size_limit, rssBytes: m.rss };
  }
}
