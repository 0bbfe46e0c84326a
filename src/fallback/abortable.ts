/** Small helpers that make awaits give up as soon as a signal aborts. */

const noop = () => {};

/** Settles like `promise`, or rejects with `signal.reason` as soon as `signal` aborts. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(noop);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The abort signal of one attempt: aborted when the caller's signal aborts, when its timer fires,
 * or by hand (to drop an upstream stream we no longer need).
 */
export class AttemptController {
  private readonly controller = new AbortController();
  private readonly unlinks: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(parent?: AbortSignal) {
    if (parent) {
      if (parent.aborted) {
        this.controller.abort(parent.reason);
      } else {
        const onAbort = () => this.controller.abort(parent.reason);
        parent.addEventListener('abort', onAbort, { once: true });
        this.unlinks.push(() => parent.removeEventListener('abort', onAbort));
      }
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** (Re)arms the timer: abort with `reason()` unless re-armed or disposed within `ms`. */
  armTimer(ms: number, reason: () => Error): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.controller.abort(reason()), Math.max(0, ms));
  }

  disarmTimer(): void {
    clearTimeout(this.timer);
  }

  abort(reason: unknown): void {
    this.controller.abort(reason);
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const unlink of this.unlinks) unlink();
    this.unlinks.length = 0;
  }
}
