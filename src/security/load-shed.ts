/**
 * Load shedding: every `intervalMs` the shedder samples the event-loop delay (p99 of
 * perf_hooks.monitorEventLoopDelay over the last interval, smoothed with an exponential moving average
 * so that one isolated stall does not shed on its own), the V8 heap in use (as a percentage of the heap
 * limit) and the resident set size. While any is above its threshold, new requests are answered
 * 503 `overloaded` with Retry-After before they reach the engine; health, readiness and metrics stay
 * answered. A threshold of 0 turns that signal off. The probe is injectable so tests can drive it.
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
    this.timer = setInterval(() => this.update(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.histogram?.disable();
    this.histogram = null;
  }

  /** Takes a sample and decides whether to shed; called by the timer, and by tests directly. */
  update(): string | null {
    const sample = this.probe();
    this.last = sample;
    if (!this.isActive()) {
      this.smoothedDelayMs = 0;
      this.reason = null;
      return null;
    }
    this.smoothedDelayMs = this.smoothedDelayMs * (1 - SMOOTHING) + sample.eventLoopDelayMs * SMOOTHING;
    const t = this.thresholds;
    const heapPercent = sample.heapLimitBytes > 0 ? (100 * sample.heapUsedBytes) / sample.heapLimitBytes : 0;
    const rssMb = sample.rssBytes / (1024 * 1024);
    if (t.eventLoopDelayMs > 0 && this.smoothedDelayMs > t.eventLoopDelayMs) {
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
    let eventLoopDelayMs = 0;
    if (this.histogram) {
      if (this.histogram.count > 0) eventLoopDelayMs = this.histogram.percentile(99) / 1e6;
      this.histogram.reset();
    }
    const m = process.memoryUsage();
    return { eventLoopDelayMs, heapUsedBytes: m.heapUsed, heapLimitBytes: getHeapStatistics().heap_size_limit, rssBytes: m.rss };
  }
}
