/**
 * POST /v1/chat/completions[?route=auto|local|bedrock] — OpenAI chat completions, rendered with the chat
 * template, on the local engine or the adapter's Bedrock target (which gets the rendered text as its
 * prompt), routed as /v1/generate is.
 */
import type { FastifyInstance } from 'fastify';
import { abortOnDisconnect, sendSse } from '../sse.js';
import { invalidParam } from './errors.js';
import { jsonModeFor } from './json-mode.js';
import { chatLogprob, tokenStringsFor } from './logprobs.js';
import { chatPrompt } from './prompt.js';
import { chatBodySchema, type ChatBody } from './schemas.js';
import { routeQuerySchema, type RouteQuery } from './schemas.js';
import { collectAll, startChoices, streamChoices, usageOf } from './run.js';
import { maxTokensFrom, samplingFrom } from './parameters.js';
import { openAiTarget } from './target.js';
import { completionId, unixSeconds } from './response-fields.js';

function rejectUnsupportedChat(body: ChatBody): void {
  if (body.tools && body.tools.length) throw invalidParam('tools', 'tools (function calling) are not supported by this server.');
  if (body.functions && body.functions.length) throw invalidParam('functions', 'functions (function calling) are not supported by this server.');
  for (const param of ['tool_choice', 'function_call'] as const) {
    const value = body[param];
    if (value !== undefined && value !== null && value !== 'none' && value !== 'auto')
      throw invalidParam(param, `${param} is not supported by this server; leave it out or send "none".`);
  }
  if (body.modalities && body.modalities.some((m) => m !== 'text'))
    throw invalidParam('modalities', 'This server generates text only; modalities may hold "text" only.');
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && body.logprobs !== true)
    throw invalidParam('top_logprobs', 'top_logprobs needs logprobs: true.');
}

export async function chatRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: ChatBody; Querystring: RouteQuery }>(
    '/v1/chat/completions',
    { schema: { body: chatBodySchema, querystring: routeQuerySchema } },
    async (request, reply) => {
      const body = request.body;
      const { engine, adapter, limits } = await openAiTarget(app, request, body);
      rejectUnsupportedChat(body);
      const prompt = chatPrompt(request, engine, adapter, body.messages, limits.maxPromptChars);
      const promptIds = prompt.ids;
      const param = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
      // Without a limit a chat reply may run to the end of the context, as with OpenAI, or to generation_config.json's max_new_tokens.
      const maxTokens = maxTokensFrom(
        body.max_completion_tokens ?? body.max_tokens,
        param,
        limits,
        Math.min(engine.generation.maxTokens ?? Infinity, engine.maxSequenceLength - promptIds.length),
      );
      const sampling = samplingFrom(body, limits, engine.generation);
      const jsonMode = jsonModeFor(body.response_format);
      const logprobs = body.logprobs === true;
      const k = logprobs ? (body.top_logprobs ?? 0) : 0;
      const strings = logprobs ? tokenStringsFor(engine, body.return_tokens_as_token_ids === true) : null;
      const n = body.n ?? 1;

      const abort = abortOnDisconnect(reply);
      const choices = startChoices(app, {
        adapter,
        prompts: [prompt],
        n,
        maxTokens: () => maxTokens,
        sampling,
        logprobs,
        topLogprobs: k,
        jsonMode,
        abort,
        route: request.query.route,
        stream: body.stream === true,
      });
      const id = completionId('chatcmpl');
      const created = unixSeconds();
      const model = body.model;

      if (body.stream) {
        const includeUsage = body.stream_options?.include_usage === true;
        let completionTokens = 0;
        const chunk = (choice: Record<string, unknown>) => ({
          id,
          object: 'chat.completion.chunk',
          created,
          model,
          choices: [choice],
          ...(includeUsage ? { usage: null } : {}),
        });
        return streamChoices(request, reply, abort, choices, {
          begin() {
            for (const c of choices) sendSse(reply, chunk({ index: c.index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }));
          },
          event({ choice, event }) {
            if (event.type === 'finish') {
              completionTokens += event.usage.completionTokens;
              sendSse(reply, chunk({ index: choice.index, delta: {}, logprobs: null, finish_reason: event.finishReason }));
              return;
            }
            const content = strings && event.tokenId >= 0 ? [chatLogprob(strings, event)] : [];
            if (event.text === '' && content.length === 0) return;
            sendSse(
              reply,
              chunk({ index: choice.index, delta: { content: event.text }, logprobs: strings ? { content, refusal: null } : null, finish_reason: null }),
            );
          },
          end() {
            if (includeUsage) sendSse(reply, { id, object: 'chat.completion.chunk', created, model, choices: [], usage: usageOf(choices, completionTokens) });
          },
        });
      }

      const collected = await collectAll(request, reply, abort, choices);
      return {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: collected
          .sort((a, b) => a.choice.index - b.choice.index)
          .map(({ choice, tokens, finish }) => ({
            index: choice.index,
            message: { role: 'assistant', content: finish.text, refusal: null },
            logprobs: strings ? { content: tokens.filter((e) => e.tokenId >= 0).map((e) => chatLogprob(strings, e)), refusal: null } : null,
            finish_reason: finish.finishReason,
          })),
        usage: usageOf(
          choices,
          collected.reduce((sum, c) => sum + c.finish.usage.completionTokens, 0),
        ),
      };
    },
  );
}
