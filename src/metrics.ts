/**
 * GET /metrics in Prometheus text format (prom-client). Label cardinality is bounded: the adapter label is
 * the adapter's name only for registered adapters ("base" for the base model, "other" for anything else),
 * and the route label is the route pattern, never the raw URL.
 *
 * Besides our own `lora_*` series, the model server protocol of the Gateway API Inference Extension, under the
 * names its endpoint picker reads by default (vLLM's): `vllm:num_requests_waiting`, `vllm:num_requests_running`,
 * `vllm:kv_cache_usage_perc` and `vllm:lora_requests_info` (docs/scale-out.md).
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
/** Tokens one forward run holds: a lone decoding row up to full prompt chunks (--prefill-chunk) plus the batch. */
const STEP_TOKEN_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048];

/** What the model server protocol reports: load, KV-cache use and the LoRA lists (src/engine/worker/protocol.ts Snapshot). */
export interface ProtocolState {
  /** The KV budget as vllm:cache_config_info reports it: tokens per block and blocks. */
  kvBlockTokens: number;
  kvBlocks: number;
  waiting: number;
  running: number;
  /** 0..1 */
  kvUsage: number;
  maxLoras: number;
  runningAdapters: string[];
  waitingAdapters: string[];
}

/** Sources the metrics read at scrape time; set when the engine (and the Bedrock route) exist. */
export interface MetricsSources {
  protocol?: () => ProtocolState;
  /** Adapters held per tier (device, host, disk, remote) and bytes (host, disk_cache). */
  adapterTiers?: () => { counts: Record<string, number>; bytes: Record<string, number> };
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
  private readonly adapterLoad: Histogram<'source'>;
  private readonly stepSeconds: Histogram<'kind'>;
  private readonly stepTokens: Histogram<'kind'>;
  /** The LoRA lists' labels as last exported, and when they last changed (vllm:lora_requests_info's value). */
  private loraInfo = { key: '', changedAt: 0 };

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'lora_' });
    this.requests = new Counter({
      name: 'lora_requests_total',
      help: 'HTTP requests by route pattern, adapter and status',
      labelNames: ['route', 'adapter', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: 'lora_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['route', 'adapter', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.ttft = new Histogram({
      name: 'lora_time_to_first_token_seconds',
      help: 'Time from submission to the first generated token',
      labelNames: ['adapter'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.itl = new Histogram({
      name: 'lora_inter_token_latency_seconds',
      help: 'Time between consecutive generated tokens of one sequence',
      labelNames: ['adapter'],
      buckets: TOKEN_BUCKETS,
      registers,
    });
    this.tokens = new Counter({ name: 'lora_generated_tokens_total', help: 'Generated tokens', labelNames: ['adapter'], registers });
    this.stepSeconds = new Histogram({
      name: 'lora_engine_step_seconds',
      help: 'Wall time of one engine step (one forward run); kind: decode (only decoding rows), prefill (only prompt chunks) or mixed',
      labelNames: ['kind'],
      buckets: TOKEN_BUCKETS,
      registers,
    });
    this.stepTokens = new Histogram({
      name: 'lora_engine_step_tokens',
      help: 'Tokens one engine step ran: one per decoding row plus the prompt tokens of its chunks',
      labelNames: ['kind'],
      buckets: STEP_TOKEN_BUCKETS,
      registers,
    });
    this.adapterLoad = new Histogram({
      name: 'lora_adapter_load_seconds',
      help: 'Time to load an adapter into host memory (download from the store included, source s3), reloads included',
      labelNames: ['source'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const sources = this.sources;
    const loraInfo = this.loraInfo;
    new Gauge({
      name: 'vllm:num_requests_waiting',
      help: 'Model server protocol: requests waiting in the queue',
      registers,
      collect() {
        this.set(sources.protocol?.().waiting ?? 0);
      },
    });
    new Gauge({
      name: 'vllm:num_requests_running',
      help: 'Model server protocol: requests in the running batch',
      registers,
      collect() {
        this.set(sources.protocol?.().running ?? 0);
      },
    });
    new Gauge({
      name: 'vllm:kv_cache_usage_perc',
      help: 'Model server protocol: share of the KV-cache budget (--kv-cache-mb) held by running requests, 0..1',
      registers,
      collect() {
        this.set(sources.protocol?.().kvUsage ?? 0);
      },
    });
    new Gauge({
      name: 'vllm:lora_requests_info',
      help: 'Model server protocol: max_lora = device slots; running_lora_adapters = adapters in device slots, idle or not; waiting_lora_adapters = adapters queued requests wait for that are not in a slot. Value: unix time of the last change',
      labelNames: ['max_lora', 'running_lora_adapters', 'waiting_lora_adapters'],
      registers,
      collect() {
        const state = sources.protocol?.();
        if (!state) return;
        const labels = {
          max_lora: String(state.maxLoras),
          running_lora_adapters: state.runningAdapters.join(','),
          waiting_lora_adapters: state.waitingAdapters.join(','),
        };
        const key = JSON.stringify(labels);
        if (key !== loraInfo.key) {
          loraInfo.key = key;
          loraInfo.changedAt = Date.now() / 1000;
        }
        // One series: the current lists (vLLM keeps every past combination; the endpoint picker takes the newest).
        this.reset();
        this.set(labels, loraInfo.changedAt);
      },
    });
    new Gauge({
      name: 'vllm:cache_config_info',
      help: 'Model server protocol: the KV-cache budget (--kv-cache-mb) in blocks of block_size token positions (the unit the cache grows by); value 1',
      labelNames: ['block_size', 'num_gpu_blocks'],
      registers,
      collect() {
        const state = sources.protocol?.();
        if (!state) return;
        this.reset();
        this.set({ block_size: String(state.kvBlockTokens), num_gpu_blocks: String(state.kvBlocks) }, 1);
      },
    });
    new Gauge({
      name: 'lora_adapter_residency',
      help: 'Adapters held per tier: device (slots), host (parsed in memory), disk (adapters directory or download cache), remote (in the store only); an adapter can be in several',
      labelNames: ['tier'],
      registers,
      collect() {
        for (const [tier, n] of Object.entries(sources.adapterTiers?.().counts ?? {})) this.set({ tier }, n);
      },
    });
    new Gauge({
      name: 'lora_adapter_tier_bytes',
      help: 'Bytes of the host tier (parsed weights) and of the download cache on disk',
      labelNames: ['tier'],
      registers,
      collect() {
        for (const [tier, n] of Object.entries(sources.adapterTiers?.().bytes ?? {})) this.set({ tier }, n);
      },
    });
    new Gauge({
      name: 'lora_queue_depth',
      help: 'Requests waiting for a batch row',
      registers,
      collect() {
        this.set(sources.queueDepth?.() ?? 0);
      },
    });
    new Gauge({
      name: 'lora_batch_size',
      help: 'Sequences in the running batch',
      registers,
      collect() {
        this.set(sources.batchSize?.() ?? 0);
      },
    });
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

  step(ms: number, shape: { decodeRows: number; promptTokens: number }): void {
    const kind = shape.promptTokens === 0 ? 'decode' : shape.decodeRows === 0 ? 'prefill' : 'mixed';
    this.stepSeconds.observe({ kind }, ms / 1000);
    this.stepTokens.observe({ kind }, shape.decodeRows + shape.promptTokens);
  }

  adapterLoaded(_adapter: string, seconds: number, source: 'disk' | 's3'): void {
    this.adapterLoad.observe({ source }, seconds);
  }
}

export function registerMetrics(app: FastifyInstance): void {
  app.decorate('metrics', new Metrics());
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', app.metrics.registry.contentType);
    return app.metrics.registry.metrics();
  });
}
