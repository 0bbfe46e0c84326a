/** A small SSE client for the soak tool and the tests: reads `data:` events until `[DONE]` or the end. */
import { request as httpRequest, type Agent, type IncomingMessage } from 'node:http';

export interface StreamOutcome {
  status: number;
  /** Token events with a token id (the text tail flushed at the end has none). */
  tokens: number;
  /** The last `finish_reason` event's reason, if any. */
  finishReason: string | null;
  /** usage.completion_tokens of the finish event. */
  completionTokens: number | null;
  /** `event: error` payload code, if any. */
  errorCode: string | null;
  done: boolean;
  /** Set when the connection failed or was cut before the end. */
  transportError: string | null;
  /** Body of a non-200 answer, parsed when JSON. */
  body?: unknown;
}

export interface StreamOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  agent?: Agent | false;
  /** Called for each token event (e.g. to abort after n tokens). */
  onToken?: (n: number) => void;
}

/** POSTs `payload` to `url` and follows the event stream. Never throws: failures are in the outcome. */
export function streamGenerate(url: string, payload: unknown, options: StreamOptions = {}): Promise<StreamOutcome> {
  const out: StreamOutcome = { status: 0, tokens: 0, finishReason: null, completionTokens: null, errorCode: null, done: false, transportError: null };
  return new Promise((resolve) => {
    let settled = false;
    const finish = () => {
      if (!settled) {
        settled = true;
        resolve(out);
      }
    };
    const body = JSON.stringify(payload);
    const req = httpRequest(
      url,
      {
        method: 'POST',
        agent: options.agent,
        signal: options.signal,
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...options.headers },
      },
      (res: IncomingMessage) => {
        out.status = res.statusCode ?? 0;
        let buffer = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffer += chunk;
          let at: number;
          while ((at = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, at);
            buffer = buffer.slice(at + 2);
            if (out.status !== 200) continue;
            const isError = /^event: error$/m.test(block);
            const data = block
              .split('\n')
              .filter((l) => l.startsWith('data: '))
              .map((l) => l.slice(6))
              .join('\n');
            if (data === '[DONE]') {
              out.done = true;
              continue;
            }
            try {
              const event = JSON.parse(data);
              if (isError || event.error) out.errorCode = event.error?.code ?? 'unknown';
              else if (event.finish_reason) {
                out.finishReason = event.finish_reason;
                out.completionTokens = event.usage?.completion_tokens ?? null;
              } else if (typeof event.token_id === 'number' && event.token_id >= 0) {
                out.tokens++;
                options.onToken?.(out.tokens);
              }
            } catch {
              out.errorCode = 'unparseable_event';
            }
          }
        });
        res.on('end', () => {
          if (out.status !== 200) {
            try {
              out.body = JSON.parse(buffer);
            } catch {
              out.body = buffer;
            }
          }
          finish();
        });
        res.on('error', (e) => {
          out.transportError = e.message;
          finish();
        });
        res.on('close', () => {
          if (!res.complete && !out.transportError) out.transportError = 'response closed before its end';
          finish();
        });
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) => {
      out.transportError = e.code ?? e.message;
      finish();
    });
    req.end(body);
  });
}
