/**
 * GET /metrics in Prometheus text format (prom-client). Label cardinality is bounded: the adapter label is
 * the adapter's name only for registered adapters ("base" for the base model, "other" for anything else),
 * and the route label is the route pattern, never the raw URL.
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const TOKEN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Sources the metrics read at scrape time; set when the engine (and the Bedrock route) exist. */
export interface MetricsSources {
  queueDepth?: () => number;
  batchSize?: () => number;
  adapterCounters?: () => Record<string, number>;
  adaptersByStatus?: () => Record<string, number>;
  bedrock?: () => { calls: Record<string, number>; errors: Record<string, number>; circuits: Array<{ adapter: string; state: string }> };
  isKnownAdapter?: (name: string) => boolean;
}

export class Metrics {
  readonly registry = new Registry();
  readonly sources: MetricsSources = {};
  private readonly requests: Counter<'route' | 'adapter' | 'status'>;
  private readonly duration: Histogram<'route' | 'adapter' | 'status'>;
  private readonly ttft: Histogram<'adapter'>;
  private readonly itl: Histogram<'adapter'>;
  private readonly tokens: Counter<'adapter'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'lora_' });
    this.requests = new Counter({ name: 'lora_requests_total', help: 'HTTP requests by route pattern, adapter and status', labelNames: ['route', 'adapter', 'status'], registers });
    this.duration = new Histogram({ name: 'lora_request_duration_seconds', help: 'HTTP request latency', labelNames: ['route', 'adapter', 'status'], buckets: LATENCY_BUCKETS, registers });
    this.ttft = new Histogram({ name: 'lora_time_to_first_token_seconds', help: 'Time from submission to the first generated token', labelNames: ['adapter'], buckets: LATENCY_BUCKETS, registers });
    this.itl = new Histogram({ name: 'lora_inter_token_latency_seconds', help: 'Time between consecutive generated tokens of one sequence', labelNames: ['adapter'], buckets: TOKEN_BUCKETS, registers });
    this.tokens = new Counter({ name: 'lora_generated_tokens_total', help: 'Generated tokens', labelNames: ['adapter'], registers });
    const sources = this.sources;
    new Gauge({ name: 'lora_queue_depth', help: 'Requests waiting for a batch row', registers, collect() { this.set(sources.queueDepth?.() ?? 0); } });
    new Gauge({ name: 'lora_batch_size', help: 'Sequences in the running batch', registers, collect() { this.set(sources.batchSize?.() ?? 0); } });
    new Gauge({
      name: 'lora_adapter_cache_events',
      help: 'Adapter cache counters since start (tier hits and misses, loads, load errors, evictions, load time in ms); monotonic',
      labelNames: ['event'],
      registers,
      collect() {
        for (const [event, value] of Object.entries(sources.adapterCounters?.() ?? {})) this.set({ event }, value);
      },
    });
    new Gauge({
      name: 'lora_adapters',
      help: 'Registered adapters by status (available, loading, host, device, errored)',
      labelNames: ['status'],
      registers,
      collect() {
        for (const [status, n] of Object.entries(sources.adaptersByStatus?.() ?? {})) this.set({ status }, n);
      },
    });
    new Gauge({
      name: 'lora_bedrock_calls',
      help: 'Bedrock calls since start by adapter; monotonic',
      labelNames: ['adapter'],
      registers,
      collect() {
        for (const [adapter, n] of Object.entries(sources.bedrock?.().calls ?? {})) this.set({ adapter }, n);
      },
    });
    new Gauge({
      name: 'lora_bedrock_errors',
      help: 'Bedrock errors since start by error code; monotonic',
      labelNames: ['code'],
      registers,
      collect() {
        for (const [code, n] of Object.entries(sources.bedrock?.().errors ?? {})) this.set({ code }, n);
      },
    });
    new Gauge({
      name: 'lora_bedrock_circuit_open',
      help: 'Bedrock circuit breaker per target: 0 closed, 0.5 half-open, 1 open',
      labelNames: ['adapter'],
      registers,
      collect() {
        for (const c of sources.bedrock?.().circuits ?? []) this.set({ adapter: c.adapter }, c.state === 'open' ? 1 : c.state === 'half-open' ? 0.5 : 0);
      },
    });
  }

  adapterLabel(adapter: string | null | undefined): string {
    if (adapter === undefined) return 'none';
    if (adapter === null) return 'base';
    return this.sources.isKnownAdapter?.(adapter) ? adapter : 'other';
  }

  observeRequest(route: string, adapter: string | null | undefined, status: number, seconds: number): void {
    const labels = { route, adapter: this.adapterLabel(adapter), status: String(status) };
    this.requests.inc(labels);
    this.duration.observe(labels, seconds);
  }

  firstToken(adapter: string | null, ms: number): void {
    this.ttft.observe({ adapter: this.adapterLabel(adapter) }, ms / 1000);
  }

  nextToken(adapter: string | null, ms: number): void {
    this.itl.observe({ adapter: this.adapterLabel(adapter) }, ms / 1000);
  }

  finished(adapter: string | null, completionTokens: number): void {
    this.tokens.inc({ adapter: this.adapterLabel(adapter) }, completionTokens);
  }
}

export function registerMetrics(app: FastifyInstance): void {
  app.decorate('metrics', new Metrics());
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', app.metrics.registry.contentType);
    return app.metrics.registry.metrics();
  });
}
