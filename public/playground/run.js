// @ts-check
/**
 * One model's run: the OpenAI streaming request for the page's settings, its text as it streams, and what it
 * took (time to first token, tokens per second). No DOM here: the panel listens (see panels.js).
 */
import { ApiError } from './api.js';

/**
 * @typedef {object} RunSettings
 * @property {'chat' | 'completion'} mode chat: /v1/chat/completions with the prompt as one user message (the
 *   server applies the chat template); completion: /v1/completions with the prompt as written
 * @property {string} prompt
 * @property {number} temperature
 * @property {number} maxTokens
 * @property {number | null} seed null: the server picks one
 */

/**
 * @typedef {object} RunStats
 * @property {number} tokens completion tokens (the server's usage, else the text events counted)
 * @property {number | null} ttftMs from sending the request to the first text
 * @property {number | null} tokensPerSecond tokens after the first over the time after the first text (decode speed)
 * @property {string | null} finishReason
 */

/**
 * @typedef {object} RunListener
 * @property {(route: string | null) => void} onRoute the server answered; `route` is its x-inference-route (local, bedrock)
 * @property {(text: string) => void} onText the next piece of the answer
 * @property {(stats: RunStats) => void} onDone
 * @property {(error: ApiError) => void} onError
 */

/**
 * @param {string} model
 * @param {RunSettings} s
 * @returns {{path: string, body: Record<string, unknown>}}
 */
export function requestFor(model, s) {
  const common = {
    model,
    max_tokens: s.maxTokens,
    temperature: s.temperature,
    ...(s.seed === null ? {} : { seed: s.seed }),
    stream: true,
    stream_options: { include_usage: true },
  };
  return s.mode === 'chat'
    ? { path: '/v1/chat/completions', body: { ...common, messages: [{ role: 'user', content: s.prompt }] } }
    : { path: '/v1/completions', body: { ...common, prompt: s.prompt } };
}

/**
 * The text a stream chunk adds: `choices[0].delta.content` (chat) or `choices[0].text` (completion).
 * @param {any} chunk
 * @returns {string}
 */
export function textOf(chunk) {
  const choice = Array.isArray(chunk?.choices) ? chunk.choices[0] : undefined;
  const text = choice?.delta?.content ?? choice?.text;
  return typeof text === 'string' ? text : '';
}

/**
 * @param {{startedAt: number, firstAt: number | null, lastAt: number | null, tokens: number}} t
 * @returns {{ttftMs: number | null, tokensPerSecond: number | null}}
 */
export function timing({ startedAt, firstAt, lastAt, tokens }) {
  const ttftMs = firstAt === null ? null : firstAt - startedAt;
  const decodeMs = firstAt === null || lastAt === null ? 0 : lastAt - firstAt;
  const tokensPerSecond = tokens >= 2 && decodeMs > 0 ? ((tokens - 1) * 1000) / decodeMs : null;
  return { ttftMs, tokensPerSecond };
}

/**
 * Streams one model's answer to `listener`. Never throws: failures (the server's 401/403/4xx/5xx, an error
 * event inside the stream, a stop by the user) go to `listener.onError`.
 * @param {import('./api.js').Api} api
 * @param {string} model
 * @param {RunSettings} settings
 * @param {RunListener} listener
 * @param {AbortSignal} signal
 * @param {() => number} [now]
 */
export async function runModel(api, model, settings, listener, signal, now = () => performance.now()) {
  const startedAt = now();
  /** @type {number | null} */ let firstAt = null;
  /** @type {number | null} */ let lastAt = null;
  let textEvents = 0;
  /** @type {number | null} */ let completionTokens = null;
  /** @type {string | null} */ let finishReason = null;
  try {
    const { path, body } = requestFor(model, settings);
    const { route, events } = await api.stream(path, body, signal);
    listener.onRoute(route);
    for await (const chunk of events) {
      const text = textOf(chunk);
      if (text) {
        lastAt = now();
        firstAt ??= lastAt;
        textEvents++;
        listener.onText(text);
      }
      const finish = chunk?.choices?.[0]?.finish_reason;
      if (typeof finish === 'string') finishReason = finish;
      if (typeof chunk?.usage?.completion_tokens === 'number') completionTokens = chunk.usage.completion_tokens;
    }
    const tokens = completionTokens ?? textEvents;
    listener.onDone({ tokens, finishReason, ...timing({ startedAt, firstAt, lastAt, tokens }) });
  } catch (e) {
    if (signal.aborted) listener.onError(new ApiError(0, 'stopped', 'Stopped before the end.'));
    else if (e instanceof ApiError) listener.onError(e);
    else listener.onError(new ApiError(0, 'client_error', `The answer could not be read: ${e instanceof Error ? e.message : String(e)}`));
  }
}
