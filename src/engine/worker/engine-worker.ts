/**
 * The engine's worker thread: loads the Engine here (graph build, session, weights, adapters), reports each
 * start-up phase, then serves the protocol (protocol.ts) through an EngineHost. Every forward pass, host
 * sampling and detokenization run on this thread, never on the HTTP thread. Started by EngineClient.spawn
 * through bootstrap.mjs (which registers tsx first when this file is TypeScript).
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { Engine, type EngineLog, type EngineOptions } from '../engine.js';
import { isTransientStartFailure } from '../errors.js';
import { EngineHost, engineInfo } from './engine-host.js';
import type { FromWorker, ToWorker } from './protocol.js';

const port = parentPort!;
const options = (workerData as { options: EngineOptions }).options;
const post = (m: FromWorker) => port.postMessage(m);

const log: EngineLog = {
  info: (obj, msg) => post({ type: 'log', level: 'info', obj: plain(obj), msg }),
  warn: (obj, msg) => post({ type: 'log', level: 'warn', obj: plain(obj), msg }),
};

/** Log objects as cloneable data (errors flattened). */
function plain(obj: object): object {
  try {
    return JSON.parse(JSON.stringify(obj, (_k, v) => (v instanceof Error ? { message: v.message, stack: v.stack } : v)));
  } catch {
    return { note: 'unserializable log object' };
  }
}

/**
 * Every token's bytes, built here (a fraction of a second for a large vocabulary, which would stall the HTTP
 * thread) right after ready, and sent packed in two transferred buffers. JSON mode reuses the same table.
 */
function postTokenBytes(engine: Engine): void {
  const table = engine.tokenizer.tokenBytes();
  const offsets = new Uint32Array(table.length + 1);
  let total = 0;
  table.forEach((b, i) => {
    offsets[i] = total;
    total += b.length;
  });
  offsets[table.length] = total;
  const bytes = new Uint8Array(total);
  table.forEach((b, i) => bytes.set(b, offsets[i]));
  port.postMessage({ type: 'token_bytes', bytes, offsets } satisfies FromWorker, [bytes.buffer, offsets.buffer]);
}

/**
 * Lowers this thread's CPU priority (Linux: niceness is per thread, and the onnxruntime threads the session
 * starts from here inherit it), so that on a busy machine the HTTP thread, at the process's priority, is
 * scheduled first and /healthz stays fast. Elsewhere, or where not permitted, the thread keeps its priority.
 */
function lowerPriority(niceness: number): void {
  if (niceness <= 0) return;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return;
    const nice = Math.min(19, getPriority(tid) + niceness);
    setPriority(tid, nice);
    log.info({ tid, nice }, 'engine worker thread niceness');
  } catch {
    // not Linux, or not permitted
  }
}
lowerPriority(options.workerNiceness ?? 5);

// A shutdown that arrives while the model loads: exit once loading ends (the client also terminates us).
let shutdownRequested = false;
const early = (m: ToWorker) => {
  if (m.type === 'shutdown') shutdownRequested = true;
};
port.on('message', early);

try {
  const engine = await Engine.load(options, log, { onPhase: (phase, detail) => post({ type: 'phase', phase, ...(detail ? { detail } : {}) }) });
  port.off('message', early);
  const host = new EngineHost(engine, port, log);
  post({
    type: 'phase',
    phase: 'ready',
    info: engineInfo(engine),
    snapshot: host.snapshot(),
  });
  if (shutdownRequested) await host.shutdown();
  else setImmediate(() => postTokenBytes(engine));
} catch (e) {
  post({ type: 'log', level: 'error', obj: plain({ err: e }), msg: 'the model failed to load' });
  post({ type: 'phase', phase: 'failed', error: (e as Error).message ?? String(e), transient: isTransientStartFailure(e) });
}
