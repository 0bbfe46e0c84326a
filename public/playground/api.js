// @ts-check
/**
 * The playground's calls to this server: JSON requests and server-sent event streams, with the API key as a
 * bearer token, and the server's errors (native `{error: {code, message}}` or OpenAI's
 * `{error: {code, type, message}}`) turned into one ApiError. No DOM here (the unit tests run it in Node).
 */

/** The response header that says which route answered (src/fallback/route-policy.ts). */
export const ROUTE_HEADER = 'x-inference-route';

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the server could not be reached
   * @param {string} code the catalogue's code (e.g. unauthorized), or a local one
   * @param {string} message what the server said
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** One line for the page, e.g. "401 unauthorized: This server needs an API key." (no status: inside a stream, or local). */
  describe() {
    return `${this.status ? `${this.status} ` : ''}${this.code}: ${this.message}`;
  }
}

/**
 * The ApiError for a failed response, from its JSON error body when it has one.
 * @param {Response} response
 * @returns {Promise<ApiError>}
 */
export async function errorFrom(response) {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === 'object' && body.error && typeof body.error.message === 'string') {
      return new ApiError(response.status, String(body.error.code ?? body.error.type ?? 'error'), body.error.message);
    }
  } catch {
    // Not JSON: fall through to the status text.
  }
  return new ApiError(response.status, response.statusText || 'error', text.slice(0, 300) || 'The server answered without a message.');
}

/**
 * The `data:` payloads of a server-sent event stream, one per event, until `[DONE]` or the end of the body.
 * Events may be split across network chunks anywhere, including inside a UTF-8 character.
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<string>}
 */
export async function* serverSentData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  // A chunk that ends in \r may be half of a \r\n: held back until the next one.
  let heldCarriageReturn = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let text = heldCarriageReturn + decoder.decode(value, { stream: true });
      heldCarriageReturn = text.endsWith('\r') ? '\r' : '';
      if (heldCarriageReturn) text = text.slice(0, -1);
      buffer += text.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5))
          .join('\n');
        if (data === '[DONE]') return;
        if (data) yield data;
      }
    }
  } finally {
    // Stops the download when the reader leaves early ([DONE], an error event, a stop).
    await reader.cancel().catch(() => undefined);
  }
}

export class Api {
  /**
   * @param {() => string} key the API key to send ('' sends none)
   * @param {typeof fetch} [fetchImpl]
   */
  constructor(key, fetchImpl = fetch.bind(globalThis)) {
    this.key = key;
    this.fetch = fetchImpl;
  }

  /** @param {Record<string, string>} [extra] */
  headers(extra = {}) {
    const key = this.key().trim();
    return { ...(key ? { authorization: `Bearer ${key}` } : {}), ...extra };
  }

  /**
   * @param {string} path
   * @param {{method?: string, body?: unknown, signal?: AbortSignal}} [init]
   * @returns {Promise<Response>} a 2xx response; any other status is thrown as an ApiError
   */
  async request(path, init = {}) {
    let response;
    try {
      response = await this.fetch(path, {
        method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
        headers: this.headers(init.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        ...(init.signal ? { signal: init.signal } : {}),
      });
    } catch (e) {
      if (e instanceof Error && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network_error', `The server could not be reached: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  /**
   * @param {string} path
   * @param {{method?: string, body?: unknown, signal?: AbortSignal}} [init]
   * @returns {Promise<any>}
   */
  async json(path, init = {}) {
    return (await this.request(path, init)).json();
  }

  /**
   * Starts a streaming request: resolves once the server answered (its headers, so the route is known), with
   * the parsed JSON of each event. An `{error}` event inside the stream is thrown as an ApiError.
   * @param {string} path
   * @param {unknown} body
   * @param {AbortSignal} [signal]
   * @returns {Promise<{route: string | null, events: AsyncGenerator<any>}>}
   */
  async stream(path, body, signal) {
    const response = await this.request(path, { body, ...(signal ? { signal } : {}) });
    if (!response.body) throw new ApiError(response.status, 'empty_response', 'The server sent no stream.');
    const stream = response.body;
    async function* events() {
      for await (const data of serverSentData(stream)) {
        const event = JSON.parse(data);
        // The status (200) went out before the failure: the event's code says what happened.
        if (event && event.error) throw new ApiError(0, String(event.error.code ?? 'error'), String(event.error.message ?? 'The stream failed.'));
        yield event;
      }
    }
    return { route: response.headers.get(ROUTE_HEADER), events: events() };
  }
}
