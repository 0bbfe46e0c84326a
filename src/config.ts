/**
 * Typed configuration: defaults < config file (JSON) < environment < CLI flags, validated at start.
 * Every setting is declared once in SETTINGS with its environment variable and CLI flag, which is also
 * what `--help` and docs/configuration.md list.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { applyKeysFile, checkKeyConfig, type ApiKeyConfig } from './security/keys.js';
import { BEDROCK_DEFAULTS, parseBedrockConfig, type BedrockConfig } from './fallback/bedrock-config.js';
// The one thing config takes from the engine: the parser of an s3:// adapters location, to validate it at start.
import { parseS3Url } from './engine/lora/adapter-store.js';

export type { ApiKeyConfig };

/**
 * The accepted values of the choice settings. Config owns these lists; the engine declares the same unions as
 * its option types (server.ts passes one to the other, and test/unit/import-graph.test.ts checks they are equal).
 */
export const STATE_RESIDENCIES = ['auto', 'host', 'device'] as const;
export type StateResidency = (typeof STATE_RESIDENCIES)[number];
export const MODEL_DTYPES = ['auto', 'float32', 'float16'] as const;
export type ModelDtype = (typeof MODEL_DTYPES)[number];
export const QUANTIZE_MODES = ['none', 'int8', 'int4'] as const;
export type QuantizeMode = (typeof QUANTIZE_MODES)[number];
/** Block sizes MatMulNBits takes (powers of two from 16); auto = the mode's own (quantize.ts MODE_FORMAT). */
export const QUANTIZE_BLOCK_SIZES = ['auto', '16', '32', '64', '128', '256'] as const;
export type QuantizeBlockSize = (typeof QUANTIZE_BLOCK_SIZES)[number];
export const GENERATION_CONFIG_MODES = ['auto', 'none'] as const;
export type GenerationConfigMode = (typeof GENERATION_CONFIG_MODES)[number];

export interface Config {
  server: {
    host: string;
    port: number;
    bodyLimitBytes: number;
    logLevel: string;
    apiKeys: ApiKeyConfig[];
    adminKeys: string[];
    apiKeysFile: string;
    allowUnauthenticated: boolean;
  };
  model: {
    dir: string;
    /** A directory of adapter directories, or s3://BUCKET/PREFIX/. */
    adaptersDir: string;
    cacheDir: string;
    /** Bound of the graph cache in MiB: least recently used entries are evicted at start (never the one served). */
    cacheMaxMb: number;
    executionProviders: string[];
    stateResidency: StateResidency;
    dtype: ModelDtype;
    /** Weight-only quantization of the base's linear projections, embeddings and LM head (MatMulNBits). */
    quantize: QuantizeMode;
    /** Weights per quantization block along K (one scale each) of the projections and the LM head; auto = 128 (quantize.ts MODE_FORMAT). */
    quantizeBlockSize: QuantizeBlockSize;
    intraOpThreads: number;
    /** Adapters from S3 are downloaded here (bounded by adapterCacheMb, least recently used evicted). */
    adapterCacheDir: string;
    adapterCacheMb: number;
    /** Largest adapter_model.safetensors taken from S3. */
    adapterMaxMb: number;
    /** Seconds between checks for new and changed adapters (0 = never; POST /v1/adapters/NAME/reload always works). */
    adapterCheckIntervalS: number;
  };
  engine: {
    maxBatch: number;
    maxBatchTokens: number;
    maxQueue: number;
    adapterSlots: number;
    maxLoraRank: number;
    hostCacheMb: number;
    maxSequenceLength: number;
    prefillChunk: number;
    kvCacheMb: number;
    requestTimeoutMs: number;
    /** generation_config.json: `auto` = its sampling values are request defaults; `none` = ignored (its stop tokens still count). */
    generationConfig: GenerationConfigMode;
  };
  limits: {
    maxTokens: number;
    maxStopSequences: number;
    maxStopLength: number;
    maxPromptChars: number;
    /** 0 = only the model's context limits the prompt. */
    maxPromptTokens: number;
    /** Load shedding thresholds (src/security/load-shed.ts); 0 = off. */
    shedEventLoopDelayMs: number;
    shedHeapUsedPercent: number;
    shedRssMb: number;
  };
  bedrock: BedrockConfig;
}

export const DEFAULTS: Config = {
  server: {
    host: '127.0.0.1',
    port: 8080,
    bodyLimitBytes: 1 << 20,
    logLevel: 'info',
    apiKeys: [],
    adminKeys: [],
    apiKeysFile: '',
    allowUnauthenticated: false,
  },
  model: {
    dir: 'models/demo',
    adaptersDir: 'adapters',
    cacheDir: '.cache/onnx',
    cacheMaxMb: 20480,
    executionProviders: ['cpu'],
    stateResidency: 'auto',
    dtype: 'auto',
    quantize: 'none',
    quantizeBlockSize: 'auto',
    intraOpThreads: 0,
    adapterCacheDir: '.cache/adapters',
    adapterCacheMb: 4096,
    adapterMaxMb: 2048,
    adapterCheckIntervalS: 0,
  },
  engine: {
    maxBatch: 8,
    maxBatchTokens: 16384,
    maxQueue: 64,
    adapterSlots: 8,
    maxLoraRank: 64,
    hostCacheMb: 512,
    maxSequenceLength: 2048,
    prefillChunk: 512,
    kvCacheMb: 2048,
    requestTimeoutMs: 120_000,
    generationConfig: 'auto',
  },
  limits: {
    maxTokens: 2048,
    maxStopSequences: 8,
    maxStopLength: 64,
    maxPromptChars: 200_000,
    maxPromptTokens: 0,
    shedEventLoopDelayMs: 1000,
    shedHeapUsedPercent: 90,
    shedRssMb: 0,
  },
  bedrock: { targets: {}, circuitBreaker: { ...BEDROCK_DEFAULTS.circuitBreaker } },
};

type Kind = 'string' | 'int' | 'list' | 'level' | 'bool' | 'choice';
export interface Setting {
  path: string;
  env: string;
  flag: string;
  kind: Kind;
  min?: number;
  max?: number;
  /** The accepted values of a 'choice' setting. */
  choices?: readonly string[];
  help: string;
}

export const SETTINGS: Setting[] = [
  { path: 'server.host', env: 'HOST', flag: '--host', kind: 'string', help: 'address to listen on (loopback by default)' },
  { path: 'server.port', env: 'PORT', flag: '--port', kind: 'int', min: 0, max: 65535, help: 'TCP port (0 picks a free one)' },
  { path: 'server.bodyLimitBytes', env: 'BODY_LIMIT_BYTES', flag: '--body-limit-bytes', kind: 'int', min: 1024, max: 64 << 20, help: 'largest request body' },
  { path: 'server.logLevel', env: 'LOG_LEVEL', flag: '--log-level', kind: 'level', help: 'pino log level' },
  { path: 'model.dir', env: 'MODEL_DIR', flag: '--model', kind: 'string', help: 'Hugging Face checkpoint directory' },
  {
    path: 'model.adaptersDir',
    env: 'ADAPTERS_DIR',
    flag: '--adapters',
    kind: 'string',
    help: 'directory of PEFT adapter directories, or s3://BUCKET/PREFIX/ (looked up and downloaded on first use)',
  },
  {
    path: 'model.adapterCacheDir',
    env: 'ADAPTER_CACHE_DIR',
    flag: '--adapter-cache-dir',
    kind: 'string',
    help: 'where adapters from S3 are kept on local disk',
  },
  {
    path: 'model.adapterCacheMb',
    env: 'ADAPTER_CACHE_MB',
    flag: '--adapter-cache-mb',
    kind: 'int',
    min: 1,
    max: 1 << 24,
    help: 'bound of the adapter download cache in MiB (least recently used evicted)',
  },
  {
    path: 'model.adapterMaxMb',
    env: 'ADAPTER_MAX_MB',
    flag: '--adapter-max-mb',
    kind: 'int',
    min: 1,
    max: 1 << 20,
    help: 'largest adapter_model.safetensors taken from S3, in MiB',
  },
  {
    path: 'model.adapterCheckIntervalS',
    env: 'ADAPTER_CHECK_INTERVAL_S',
    flag: '--adapter-check-interval-s',
    kind: 'int',
    min: 0,
    max: 86_400,
    help: 'seconds between checks for new and changed adapters, reloaded atomically (0 = never)',
  },
  { path: 'model.cacheDir', env: 'CACHE_DIR', flag: '--cache-dir', kind: 'string', help: 'where built ONNX graphs are kept' },
  {
    path: 'model.cacheMaxMb',
    env: 'CACHE_MAX_MB',
    flag: '--cache-max-mb',
    kind: 'int',
    min: 0,
    max: 1 << 30,
    help: 'bound of the graph cache in MiB: least recently used entries evicted at start, never the one served (npm run cache:prune cleans it by hand)',
  },
  {
    path: 'model.executionProviders',
    env: 'EXECUTION_PROVIDERS',
    flag: '--execution-providers',
    kind: 'list',
    help: 'onnxruntime providers to try in order, e.g. webgpu,cpu',
  },
  {
    path: 'model.stateResidency',
    env: 'STATE_RESIDENCY',
    flag: '--state-residency',
    kind: 'choice',
    choices: STATE_RESIDENCIES,
    help: 'KV cache, LoRA slots and sampling in host or device memory (auto = device on a GPU)',
  },
  {
    path: 'model.dtype',
    env: 'MODEL_DTYPE',
    flag: '--dtype',
    kind: 'choice',
    choices: MODEL_DTYPES,
    help: 'weights, activations and caches: float32, float16 (device path only; on the CPU provider it falls back to float32 with a warning unless --state-residency device), auto = float16 on the device path',
  },
  {
    path: 'model.quantize',
    env: 'QUANTIZE',
    flag: '--quantize',
    kind: 'choice',
    choices: QUANTIZE_MODES,
    help: 'base weights quantized at graph build: none, int8 or int4 (LoRA stays float); a GPTQ/AWQ checkpoint is read as it is',
  },
  {
    path: 'model.quantizeBlockSize',
    env: 'QUANTIZE_BLOCK_SIZE',
    flag: '--quantize-block-size',
    kind: 'choice',
    choices: QUANTIZE_BLOCK_SIZES,
    help: 'weights per quantization block (one scale each) of the projections and the LM head with --quantize int8|int4: auto = 128; the embeddings use 32 (int8) or 128 (int4), or this when smaller; smaller blocks round more finely for more memory and slower decode (docs/benchmarks.md)',
  },
  {
    path: 'model.intraOpThreads',
    env: 'INTRA_OP_THREADS',
    flag: '--threads',
    kind: 'int',
    min: 0,
    max: 1024,
    help: 'onnxruntime threads (0 = one per core, capped by the container CPU limit)',
  },
  { path: 'engine.maxBatch', env: 'MAX_BATCH', flag: '--max-batch', kind: 'int', min: 1, max: 256, help: 'sequences decoded together' },
  {
    path: 'engine.maxBatchTokens',
    env: 'MAX_BATCH_TOKENS',
    flag: '--max-batch-tokens',
    kind: 'int',
    min: 16,
    max: 1 << 24,
    help: 'sum of prompt + max_tokens over running sequences',
  },
  { path: 'engine.maxQueue', env: 'MAX_QUEUE', flag: '--max-queue', kind: 'int', min: 0, max: 100_000, help: 'requests waiting beyond the batch before 429' },
  {
    path: 'engine.adapterSlots',
    env: 'ADAPTER_SLOTS',
    flag: '--adapter-slots',
    kind: 'int',
    min: 1,
    max: 1024,
    help: 'adapters resident in device slots at once',
  },
  { path: 'engine.maxLoraRank', env: 'MAX_LORA_RANK', flag: '--max-lora-rank', kind: 'int', min: 1, max: 1024, help: 'largest LoRA rank accepted' },
  {
    path: 'engine.hostCacheMb',
    env: 'HOST_CACHE_MB',
    flag: '--host-cache-mb',
    kind: 'int',
    min: 1,
    max: 1 << 20,
    help: 'host-memory LRU of parsed adapters, in MiB',
  },
  {
    path: 'engine.maxSequenceLength',
    env: 'MAX_SEQUENCE_LENGTH',
    flag: '--max-sequence-length',
    kind: 'int',
    min: 16,
    max: 1 << 20,
    help: 'context per sequence (capped by the model)',
  },
  {
    path: 'engine.prefillChunk',
    env: 'PREFILL_CHUNK',
    flag: '--prefill-chunk',
    kind: 'int',
    min: 1,
    max: 1 << 16,
    help: 'prompt tokens run per step, over all prompts in prefill (decoding rows add one each)',
  },
  {
    path: 'engine.kvCacheMb',
    env: 'KV_CACHE_MB',
    flag: '--kv-cache-mb',
    kind: 'int',
    min: 1,
    max: 1 << 24,
    help: 'KV-cache memory budget in MiB: requests wait beyond it, one that could never fit is refused',
  },
  {
    path: 'engine.requestTimeoutMs',
    env: 'REQUEST_TIMEOUT_MS',
    flag: '--request-timeout-ms',
    kind: 'int',
    min: 100,
    max: 3_600_000,
    help: 'per-request deadline',
  },
  {
    path: 'engine.generationConfig',
    env: 'GENERATION_CONFIG',
    flag: '--generation-config',
    kind: 'choice',
    choices: GENERATION_CONFIG_MODES,
    help: "the checkpoint's generation_config.json: auto = its temperature, top_p, top_k, max_new_tokens are request defaults; none = ignored (its eos_token_id still stops)",
  },
  {
    path: 'limits.maxTokens',
    env: 'LIMIT_MAX_TOKENS',
    flag: '--limit-max-tokens',
    kind: 'int',
    min: 1,
    max: 1 << 20,
    help: 'largest max_tokens a request may ask',
  },
  {
    path: 'limits.maxPromptTokens',
    env: 'LIMIT_MAX_PROMPT_TOKENS',
    flag: '--limit-max-prompt-tokens',
    kind: 'int',
    min: 0,
    max: 1 << 24,
    help: 'longest prompt in tokens (0 = the model context)',
  },
  {
    path: 'limits.shedEventLoopDelayMs',
    env: 'SHED_EVENT_LOOP_DELAY_MS',
    flag: '--shed-event-loop-delay-ms',
    kind: 'int',
    min: 0,
    max: 600_000,
    help: '503 overloaded above this event-loop delay (0 = off)',
  },
  {
    path: 'limits.shedHeapUsedPercent',
    env: 'SHED_HEAP_USED_PERCENT',
    flag: '--shed-heap-used-percent',
    kind: 'int',
    min: 0,
    max: 100,
    help: '503 overloaded above this V8 heap use (0 = off)',
  },
  {
    path: 'limits.shedRssMb',
    env: 'SHED_RSS_MB',
    flag: '--shed-rss-mb',
    kind: 'int',
    min: 0,
    max: 1 << 24,
    help: '503 overloaded above this resident memory (0 = off)',
  },
  { path: 'server.apiKeysFile', env: 'API_KEYS_FILE', flag: '--api-keys-file', kind: 'string', help: 'JSON file {apiKeys, adminKeys} (docs/security.md)' },
  {
    path: 'server.allowUnauthenticated',
    env: 'ALLOW_UNAUTHENTICATED',
    flag: '--allow-unauthenticated',
    kind: 'bool',
    help: 'allow a non-loopback host without keys',
  },
];

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export interface ConfigSources {
  argv?: string[];
  env?: NodeJS.ProcessEnv;
  /** Used when neither --config nor CONFIG_FILE names a file. */
  defaultConfigFile?: string;
}

export function loadConfig(sources: ConfigSources = {}): Config {
  const argv = sources.argv ?? process.argv.slice(2);
  const env = sources.env ?? process.env;
  const problems: string[] = [];
  const config: Config = structuredClone(DEFAULTS);

  const flags = parseFlags(argv, problems);
  const configFile = flags.get('--config') ?? env.CONFIG_FILE ?? sources.defaultConfigFile;
  if (configFile) {
    if (!existsSync(configFile)) {
      if (flags.has('--config') || env.CONFIG_FILE) problems.push(`config file ${configFile} does not exist`);
    } else {
      try {
        mergeFile(config, JSON.parse(readFileSync(configFile, 'utf8')), configFile, problems);
      } catch (e) {
        problems.push(`config file ${configFile} is not valid JSON: ${(e as Error).message}`);
      }
    }
  }
  for (const s of SETTINGS) {
    if (env[s.env] !== undefined && env[s.env] !== '') apply(config, s, env[s.env]!, `environment ${s.env}`, problems);
  }
  for (const s of SETTINGS) {
    if (flags.has(s.flag)) apply(config, s, flags.get(s.flag)!, `flag ${s.flag}`, problems);
  }
  if (config.model.adaptersDir.startsWith('s3://')) {
    try {
      parseS3Url(config.model.adaptersDir);
    } catch (e) {
      problems.push(`model.adaptersDir ${(e as Error).message}`);
    }
  }
  if (config.model.dtype === 'float16' && config.model.stateResidency === 'host') {
    problems.push('model.dtype float16 is served by the device-resident path: set model.stateResidency to device or auto, or model.dtype to float32');
  }
  applyKeysFile(config, problems);
  problems.push(...checkKeyConfig(config));
  if (problems.length) throw new ConfigError(problems);
  return config;
}

function parseFlags(argv: string[], problems: string[]): Map<string, string> {
  const known = new Set(['--config', ...SETTINGS.map((s) => s.flag)]);
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [name, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (!known.has(name)) {
      problems.push(`unknown argument ${arg} (run with --help for the list)`);
      continue;
    }
    const bare = SETTINGS.find((s) => s.flag === name)?.kind === 'bool' && inline === undefined && (argv[i + 1] === undefined || argv[i + 1].startsWith('--'));
    const value = bare ? 'true' : (inline ?? argv[++i]);
    if (value === undefined) problems.push(`flag ${name} needs a value`);
    else flags.set(name, value);
  }
  return flags;
}

function apply(config: Config, s: Setting, raw: unknown, source: string, problems: string[]): void {
  const value = coerce(s, raw);
  if (typeof value === 'string' && value.startsWith('!')) {
    problems.push(`${s.path} ${value.slice(1)} (got ${JSON.stringify(raw)} from ${source})`);
    return;
  }
  const [section, key] = s.path.split('.') as [keyof Config, string];
  (config[section] as Record<string, unknown>)[key] = value;
}

/** Returns the typed value, or a string starting with '!' that says what is wrong. */
function coerce(s: Setting, raw: unknown): unknown {
  switch (s.kind) {
    case 'string':
      return typeof raw === 'string' && raw.length > 0 ? raw : '!must be a non-empty string';
    case 'level':
      return typeof raw === 'string' && LOG_LEVELS.includes(raw) ? raw : `!must be one of ${LOG_LEVELS.join(', ')}`;
    case 'choice':
      return typeof raw === 'string' && s.choices!.includes(raw) ? raw : `!must be one of ${s.choices!.join(', ')}`;
    case 'bool':
      if (raw === true || raw === 'true' || raw === '1') return true;
      if (raw === false || raw === 'false' || raw === '0') return false;
      return '!must be true or false';
    case 'list': {
      const list = Array.isArray(raw)
        ? raw
        : typeof raw === 'string'
          ? raw
              .split(',')
              .map((x) => x.trim())
              .filter(Boolean)
          : null;
      return list && list.length && list.every((x) => typeof x === 'string') ? list : '!must be a non-empty comma-separated list';
    }
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isInteger(n) || n < (s.min ?? -Infinity) || n > (s.max ?? Infinity)) return `!must be an integer from ${s.min} to ${s.max}`;
      return n;
    }
  }
}

function mergeFile(config: Config, file: unknown, path: string, problems: string[]): void {
  if (typeof file !== 'object' || file === null || Array.isArray(file)) {
    problems.push(`config file ${path} must hold a JSON object`);
    return;
  }
  for (const [section, values] of Object.entries(file as Record<string, unknown>)) {
    if (section === 'bedrock') {
      try {
        config.bedrock = parseBedrockConfig(values);
      } catch (e) {
        problems.push(`config file ${path}: ${(e as Error).message}`);
      }
      continue;
    }
    if (section === '$schema' || section === '//') continue;
    if (!(section in DEFAULTS)) {
      problems.push(`config file ${path}: unknown section "${section}" (known: ${Object.keys(DEFAULTS).join(', ')})`);
      continue;
    }
    for (const [key, value] of Object.entries((values ?? {}) as Record<string, unknown>)) {
      const setting = SETTINGS.find((s) => s.path === `${section}.${key}`);
      if (setting) apply(config, setting, value, `config file ${path}`, problems);
      else if (
        `${section}.${key}` in
        { 'server.apiKeys': 1, 'server.adminKeys': 1, 'limits.maxStopSequences': 1, 'limits.maxStopLength': 1, 'limits.maxPromptChars': 1 }
      ) {
        (config[section as keyof Config] as Record<string, unknown>)[key] = value;
      } else problems.push(`config file ${path}: unknown setting ${section}.${key}`);
    }
  }
}

/** A setting's default as --help and docs/configuration.md show it. */
export function defaultText(s: Setting): string {
  const [section, key] = s.path.split('.') as [keyof Config, string];
  const value = (DEFAULTS[section] as Record<string, unknown>)[key];
  if (Array.isArray(value)) return value.join(',');
  return value === '' ? '(none)' : String(value);
}

export function helpText(): string {
  const rows = SETTINGS.map((s) => `  ${(s.flag + ' <value>').padEnd(34)} ${s.env.padEnd(22)} ${s.help} [default: ${defaultText(s)}]`);
  return [
    'Usage: npm start -- [flags]',
    '',
    '  --config <file>                    CONFIG_FILE            JSON config file (default config/default.json)',
    ...rows,
    '',
  ].join('\n');
}

export function resolvePaths(config: Config, base = process.cwd()): Config {
  const adaptersDir = config.model.adaptersDir.startsWith('s3://') ? config.model.adaptersDir : resolve(base, config.model.adaptersDir);
  return {
    ...config,
    model: {
      ...config.model,
      dir: resolve(base, config.model.dir),
      adaptersDir,
      cacheDir: resolve(base, config.model.cacheDir),
      adapterCacheDir: resolve(base, config.model.adapterCacheDir),
    },
  };
}
