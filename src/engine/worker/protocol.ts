/**
 * The messages between the HTTP thread (EngineClient, engine-client.ts) and the engine's worker thread
 * (EngineHost, engine-host.ts, started by engine-worker.ts). Plain data only: everything here survives
 * postMessage's structured clone (no functions, no class instances; errors travel as EngineErrorData).
 *
 * HTTP thread -> worker:
 *   submit {id, request, promptIds, responseFormat?}   queue a generation (prompt already tokenized)
 *   cancel {id}                                        the client went away: drop it at the next step
 *   call {callId, method, args}                        adapter admin: register, validate, remove, pin, unpin,
 *                                                      prepare (look up / download a remote adapter), reload
 *   shutdown                                           refuse new work, finish what runs, release the model
 * worker -> HTTP thread:
 *   phase {phase, detail?, error?, transient?, info?, snapshot?}   start-up progress; `ready` carries the engine's facts,
 *                                                   `failed` the reason and whether another try may succeed
 *   batch {items, observed, load, snapshot?}          per flush (at most one per event-loop turn): token /
 *                                                      finish / error items of any requests, metrics
 *                                                      observations, queue depth and batch size; a snapshot
 *                                                      when a request started or ended in it
 *   snapshot {snapshot}                                adapters, counters, scheduler stats: when they change,
 *                                                      at most every 250 ms
 *   reply {callId, ok, result | error, snapshot}       the answer to a call, with the state after it
 *   log {level, obj, msg}                              the engine's log lines, written by the HTTP thread's logger
 *   token_bytes {bytes, offsets}                       after ready: every token's bytes, built in the worker (for
 *                                                      log-probability token strings on the HTTP thread)
 *   closed                                             after shutdown: nothing runs, the model is released
 */
import type { EngineErrorData } from '../errors.js';
import type { GenerateRequest, GenerationEvent } from '../types.js';
import type { AdapterCounters, AdapterInfo, AdapterTiers, ReloadResult } from '../lora/adapter-manager.js';
import type { SchedulerStats, StepShape } from '../scheduler.js';
import type { ResponseFormatData, StartPhase } from '../engine.js';
import type { GenerationDefaults } from '../model/generation-config.js';

export type { ResponseFormatData, StartPhase };

/** A generate request without its AbortSignal (cancellation is a message). */
export type WireRequest = Omit<GenerateRequest, 'signal'>;

export interface SubmitMessage {
  type: 'submit';
  id: number;
  request: WireRequest;
  promptIds: number[];
  responseFormat?: ResponseFormatData;
  promptLogprobs?: boolean;
}

export interface CancelMessage {
  type: 'cancel';
  id: number;
}

export type AdminCall =
  | { method: 'register'; name: string; path: string }
  | { method: 'validate'; name: string }
  | { method: 'remove'; name: string }
  | { method: 'pin'; name: string }
  | { method: 'unpin'; name: string }
  /** Just-in-time: look a name up in the remote store and download it (result null: no such adapter). */
  | { method: 'prepare'; name: string }
  | { method: 'reload'; name: string };

export type CallMessage = { type: 'call'; callId: number } & AdminCall;

export interface ShutdownMessage {
  type: 'shutdown';
  /** Cancel every generation now (past the drain deadline) instead of letting them finish. */
  now?: boolean;
}

export type ToWorker = SubmitMessage | CancelMessage | CallMessage | ShutdownMessage;

/** The engine's facts the HTTP thread needs (for /readyz, validation, tokenization). */
export interface EngineInfo {
  modelName: string;
  modelDir: string;
  adaptersRoot: string;
  provider: string;
  residency: 'host' | 'device';
  dtype: 'float32' | 'float16';
  /** The base's weight format (`float32`, `int8`, `int4`, `gptq-int4 (group 128); ...`) and its bytes in the graph. */
  weightFormat: string;
  baseWeightBytes: number;
  maxSequenceLength: number;
  vocabSize: number;
  /** The model's own context (max_position_embeddings); maxSequenceLength may be lower (--max-sequence-length). */
  maxPositions: number;
  eosTokenIds: number[];
  /** Request defaults from generation_config.json. */
  generation: GenerationDefaults;
  /** Device slots for adapters (the model server protocol's max_lora). */
  maxLoras: number;
  /** The remote adapter store's URL (s3://...) when adapters come from one: unknown names are looked up there. */
  adapterStore: string | null;
  /** The KV budget in the units the model server protocol's cache_config_info reports: tokens per block, blocks. */
  kvBlockTokens: number;
  kvBlocks: number;
}

export interface LoadSnapshot {
  queueDepth: number;
  batchSize: number;
}

export interface Snapshot extends LoadSnapshot {
  adapters: AdapterInfo[];
  counters: AdapterCounters;
  stats: SchedulerStats;
  /** Generations the worker holds (queued or running). */
  inFlight: number;
  /** The model server protocol's LoRA lists: adapters in device slots (idle or not), adapters queued requests wait for that are not. */
  lora: { running: string[]; waiting: string[] };
  /** Share of the KV-cache budget admission has handed to running requests, 0..1. */
  kvUsage: number;
  tiers: AdapterTiers;
}

export type StreamItem =
  | { id: number; kind: 'event'; event: GenerationEvent; scores?: { promptLogprobs: number[]; lastLogprobs: Float32Array } }
  | { id: number; kind: 'error'; error: EngineErrorData };

/** Metrics hooks (GenerationObserver) as data: first token, next token, finished, a step; adapter loads. */
export type Observation =
  | { kind: 'first' | 'next' | 'finished'; adapter: string | null; value: number }
  /** An adapter loaded into the host tier: seconds, and whether its files came from local disk or the store. */
  | { kind: 'adapter_load'; adapter: string; value: number; source: 'disk' | 's3' }
  /** One forward run: milliseconds, and the rows' decode tokens and prompt tokens it held. */
  | ({ kind: 'step'; value: number } & StepShape);

export type FromWorker =
  | { type: 'phase'; phase: StartPhase; detail?: string; error?: string; transient?: boolean; info?: EngineInfo; snapshot?: Snapshot }
  | { type: 'batch'; items: StreamItem[]; observed: Observation[]; load: LoadSnapshot; snapshot?: Snapshot }
  | { type: 'snapshot'; snapshot: Snapshot }
  | { type: 'reply'; callId: number; ok: true; result: AdapterInfo | ReloadResult | null; snapshot: Snapshot }
  | { type: 'reply'; callId: number; ok: false; error: EngineErrorData; snapshot: Snapshot }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; obj: object; msg?: string }
  /** Every token's bytes (TextTokenizer.tokenBytes), packed: token i is bytes[offsets[i] .. offsets[i + 1]). */
  | { type: 'token_bytes'; bytes: Uint8Array; offsets: Uint32Array }
  | { type: 'closed' };

/** What each side needs of the other end: a Worker, a worker's parentPort, or one end of a MessageChannel. */
export interface Port {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (message: any) => void): unknown;
}
