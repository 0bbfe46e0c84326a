/**
 * An EngineClient served by an EngineHost on this same thread, over a MessageChannel: the same protocol,
 * messages and structured clones as the worker thread, without the thread. For tests that need to reach
 * into the engine (inject faults, read scheduler internals) and for tools; the server uses the worker.
 */
import { MessageChannel } from 'node:worker_threads';
import type { Engine } from '../engine.js';
import { EngineClient, type EngineClientHooks } from './engine-client.js';
import { EngineHost, engineInfo } from './engine-host.js';

export function inProcessClient(engine: Engine, hooks: EngineClientHooks = {}): EngineClient & { host: EngineHost } {
  const { port1, port2 } = new MessageChannel();
  const host = new EngineHost(engine, port2, hooks.log);
  port2.unref();
  const client = new EngineClient(port1, hooks, {
    tokenizer: engine.tokenizer,
    terminate: async () => {
      host.detach();
      port1.close();
    },
    ref: (on) => (on ? port1.ref() : port1.unref()),
  });
  port1.unref();
  // Ready at once (the engine is loaded), as the worker's `ready` message would make it.
  client.receive({
    type: 'phase',
    phase: 'ready',
    info: engineInfo(engine),
    snapshot: host.snapshot(),
  });
  return Object.assign(client, { host });
}
