/**
 * POST /v1/completions[?route=auto|local|bedrock] — OpenAI's (legacy) text completions, on the local engine
 * or the adapter's Bedrock target (text prompts only), routed as /v1/generate is.
 */
import type { FastifyInstance } from 'fastify';
import { abortOnDisconnect, sendSse } from '../sse.js';
import { invalidParam } from './errors.js';
import { jsonModeFor } from './json-mode.js';
import { addCompletionLogprob, emptyCompletionLogprobs, tokenStringsFor, type CompletionLogprobs } from './logprobs.js';
import { completionPrompts } from './prompt.js';
import { completionBodySchema, type CompletionBody } from './schemas.js';
import { routeQuerySchema, type RouteQuery } from './schemas.js';
import { collectAll, startChoices, streamChoices, usageOf } from './run.js';
import { maxTokensFrom, samplingFrom } from './parameters.js';
import { openAiTarget } from './target.js';
import { codePoints, completionId, unixSeconds } from './response-fields.js';

/** OpenAI's default max_tokens for completions. */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

export async function completionRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: CompletionBody; Querystring: RouteQuery }>(
    '/v1/completions',
    { schema: { body: completionBodySchema, querystring: routeQuerySchema } },
    async (request, reply) => {
      const body = request.body;
      const { engine, adapter, limits } = await openAiTarget(app, request, body);
      if (body.echo) throw invalidParam('echo', 'echo is not supported by this server; leave it out or send false.');
      if (body.suffix) throw invalidParam('suffix', 'suffix is not supported by this server; leave it out.');
      const n = body.n ?? 1;
      if (body.best_of !== undefined && body.best_of !== null && body.best_of !== n)
        throw invalidParam('best_of', 'best_of is not supported by this server; leave it out or make it equal to n.');
      const prompts = completionPrompts(request, engine, body.prompt, limits.maxPromptChars);
      const maxTokens = maxTokensFrom(body.max_tokens, 'max_tokens', limits, COMPLETIONS_DEFAULT_MAX_TOKENS);
      const sampling = samplingFrom(body, limits, engine.generation);
      const jsonMode = jsonModeFor(body.response_format);
      const k = body.logprobs ?? null;
      const strings = k !== null ? tokenStringsFor(engine, body.return_tokens_as_token_ids === true) : null;

      const abort = abortOnDisconnect(reply);
      const choices = startChoices(app, {
        adapter,
        prompts,
        n,
        maxTokens: () => maxTokens,
        sampling,
        logprobs: k !== null,
        topLogprobs: k ?? 0,
        jsonMode,
        abort,
        route: request.query.route,
        stream: body.stream === true,
      });
      const id = completionId('cmpl');
      const created = unixSeconds();
      const model = body.model;

      if (body.stream) {
        const includeUsage = body.stream_options?.include_usage === true;
        const offsets = new Map<number, number>();
        let completionTokens = 0;
        const chunk = (choices: unknown[]) => ({ id, object: 'text_completion', created, model, choices, ...(includeUsage ? { usage: null } : {}) });
        return streamChoices(request, reply, abort, choices, {
          begin() {},
          event({ choice, event }) {
            if (event.type === 'finish') {
              completionTokens += event.usage.completionTokens;
              sendSse(reply, chunk([{ index: choice.index, text: '', logprobs: null, finish_reason: event.finishReason }]));
              return;
            }
            const offset = offsets.get(choice.index) ?? 0;
            offsets.set(choice.index, offset + codePoints(event.text));
            let logprobs: CompletionLogprobs | null = null;
            if (strings) {
              logprobs = emptyCompletionLogprobs();
              if (event.tokenId >= 0) addCompletionLogprob(logprobs, strings, event, offset);
            }
            if (event.text === '' && (!logprobs || logprobs.tokens.length === 0)) return;
            sendSse(reply, chunk([{ index: choice.index, text: event.text, logprobs, finish_reason: null }]));
          },
          end() {
            if (includeUsage) sendSse(reply, { id, object: 'text_completion', created, model, choices: [], usage: usageOf(choices, completionTokens) });
          },
        });
      }

      const collected = await collectAll(request, reply, abort, choices);
      return {
        id,
        object: 'text_completion',
        created,
        model,
        choices: collected
          .sort((a, b) => a.choice.index - b.choice.index)
          .map(({ choice, tokens, finish }) => {
            let logprobs: CompletionLogprobs | null = null;
            if (strings) {
              logprobs = emptyCompletionLogprobs();
              let offset = 0;
              for (const event of tokens) {
                if (event.tokenId >= 0) addCompletionLogprob(logprobs, strings, event, offset);
                offset += codePoints(event.text);
              }
            }
            return { index: choice.index, text: finish.text, logprobs, finish_reason: finish.finishReason };
          }),
        usage: usageOf(
          choices,
          collected.reduce((sum, c) => sum + c.finish.usage.completionTokens, 0),
        ),
      };
    },
  );
}
