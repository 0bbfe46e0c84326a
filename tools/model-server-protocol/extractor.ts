/**
 * How the Gateway API Inference Extension's endpoint picker reads a model server and scores it, written from
 * llm-d-router (pkg/epp/framework/plugins/datalayer/extractor/metrics: extractor.go, loraspec.go, spec.go;
 * scheduling/scorer: loraaffinity, queuedepth, kvcacheutilization; picker/maxscore), for the tests that check
 * our /metrics the way it reads them and for bench/fleet.ts's routing harness. Not used by the server.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The sample lines of the Prometheus text format. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]] = l[2].replace(/\\(["\\n])/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** The endpoint's metrics as the picker keeps them (fwkdl.Metrics). */
export interface EndpointMetrics {
  waitingQueueSize: number;
  runningRequestsSize: number;
  kvCacheUsagePercent: number;
  maxActiveModels: number;
  activeModels: string[];
  waitingModels: string[];
  /** vllm:lora_requests_info's value (unix time of the lists' last change). */
  loraValue: number;
  /** vllm:cache_config_info's block_size and num_gpu_blocks labels. */
  cacheBlockSize: number;
  cacheNumBlocks: number;
}

const names = (csv: string) =>
  csv
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

/**
 * The default (vLLM) mapping: the three gauges, and of vllm:lora_requests_info the series with the largest value,
 * its lists split on ',' and trimmed, max_lora parsed as an integer (strconv.Atoi: an error otherwise); the
 * labels block_size and num_gpu_blocks of vllm:cache_config_info as integers.
 */
export function extract(text: string): EndpointMetrics {
  const samples = parseExposition(text);
  const gauge = (name: string) => {
    const found = samples.filter((s) => s.name === name);
    if (found.length === 0) throw new Error(`metric family ${name} not found`);
    return found[found.length - 1].value;
  };
  const lora = samples
    .filter((s) => s.name === 'vllm:lora_requests_info')
    .reduce<Sample | null>((best, s) => (best === null || s.value > best.value ? s : best), null);
  if (!lora) throw new Error('vllm:lora_requests_info not found');
  if (!/^[+-]?\d+$/.test(lora.labels.max_lora ?? '')) throw new Error(`max_lora is not an integer: ${lora.labels.max_lora}`);
  const cache = samples.filter((s) => s.name === 'vllm:cache_config_info').at(-1);
  if (!cache) throw new Error('metric family vllm:cache_config_info not found');
  for (const label of ['block_size', 'num_gpu_blocks'])
    if (!/^[+-]?\d+$/.test(cache.labels[label] ?? '')) throw new Error(`${label} is not an integer: ${cache.labels[label]}`);
  return {
    waitingQueueSize: Math.trunc(gauge('vllm:num_requests_waiting')),
    runningRequestsSize: Math.trunc(gauge('vllm:num_requests_running')),
    kvCacheUsagePercent: gauge('vllm:kv_cache_usage_perc'),
    maxActiveModels: Number.parseInt(lora.labels.max_lora, 10),
    activeModels: names(lora.labels.running_lora_adapters ?? ''),
    waitingModels: names(lora.labels.waiting_lora_adapters ?? ''),
    loraValue: lora.value,
    cacheBlockSize: Number.parseInt(cache.labels.block_size, 10),
    cacheNumBlocks: Number.parseInt(cache.labels.num_gpu_blocks, 10),
  };
}

/** lora-affinity-scorer: 1 where the adapter is active, 0.8 where a slot is free, 0.6 where it is queued, else 0. */
export function loraAffinityScore(m: EndpointMetrics, model: string): number {
  if (m.activeModels.includes(model)) return 1;
  if (m.activeModels.length + m.waitingModels.length < m.maxActiveModels) return 0.8;
  if (m.waitingModels.includes(model)) return 0.6;
  return 0;
}

/** queue-scorer: min-max normalized over the candidates, the shortest queue 1 (all 1 when equal). */
export function queueScores(all: EndpointMetrics[]): number[] {
  const sizes = all.map((m) => m.waitingQueueSize);
  const min = Math.min(...sizes);
  const max = Math.max(...sizes);
  return sizes.map((s) => (max === min ? 1 : (max - s) / (max - min)));
}

/** kv-cache-utilization-scorer: 1 - usage. */
export function kvScore(m: EndpointMetrics): number {
  return 1 - m.kvCacheUsagePercent;
}

export interface Weights {
  lora: number;
  queue: number;
  kv: number;
}

/** The profile in deploy/gateway/endpoint-picker.yaml: weighted sum, max-score-picker (random among ties). */
export function pick(all: EndpointMetrics[], model: string | null, weights: Weights, random: () => number = Math.random): number {
  const queue = queueScores(all);
  const scores = all.map((m, i) => (model === null ? 0 : weights.lora * loraAffinityScore(m, model)) + weights.queue * queue[i] + weights.kv * kvScore(m));
  const best = Math.max(...scores);
  const ties = scores.map((s, i) => (Math.abs(s - best) < 1e-12 ? i : -1)).filter((i) => i >= 0);
  return ties[Math.floor(random() * ties.length)];
}
