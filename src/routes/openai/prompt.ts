/**
 * Prompts for the OpenAI routes: chat messages rendered with the model's chat template (or the adapter's
 * own chat_template.jinja when it ships one) and tokenized as HF's apply_chat_template does (no special
 * tokens added: the template writes them); completion prompts as text or token ids, one or a batch.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyRequest } from 'fastify';
import { Template } from '@huggingface/jinja';
import { AppError } from '../../errors.js';
import type { EngineClient as Engine } from '../../engine/worker/engine-client.js';
import type { ChatMessage } from '../../engine/model/tokenizer.js';
import { assertPromptTokens } from '../../security/plugin.js';
import { invalidParam } from './errors.js';
import type { ChatMessageBody } from './schemas.js';

const MAX_TEMPLATE_BYTES = 1 << 20;

const adapterTemplates = new Map<string, { mtimeMs: number; size: number; template: Template }>();

/**
 * An adapter's own chat template (chat_template.jinja among its files, in the directory it was registered
 * from, whatever name it is registered under), or null when it ships none. Re-read when the file changes.
 */
export function adapterChatTemplate(engine: Engine, adapter: string): Template | null {
  // A name served only by a Bedrock target has no local files: the model's template.
  if (!engine.adapters.has(adapter)) return null;
  const file = join(engine.adapters.get(adapter).dir, 'chat_template.jinja');
  if (!existsSync(file)) {
    adapterTemplates.delete(file);
    return null;
  }
  const stat = statSync(file);
  const cached = adapterTemplates.get(file);
  if (cached && cached.mtimeMs === stat.mtimeMs && cached.size === stat.size) return cached.template;
  if (stat.size >= MAX_TEMPLATE_BYTES)
    throw new AppError('adapter_errored', `Adapter ${adapter}'s chat_template.jinja is larger than ${MAX_TEMPLATE_BYTES} bytes.`);
  let template: Template;
  try {
    template = new Template(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new AppError('adapter_errored', `Adapter ${adapter}'s chat_template.jinja does not parse: ${(e as Error).message}.`);
  }
  adapterTemplates.set(file, { mtimeMs: stat.mtimeMs, size: stat.size, template });
  return template;
}

/** OpenAI messages to template messages: text parts joined by newlines, `developer` rendered as `system`. */
export function toTemplateMessages(messages: ChatMessageBody[]): ChatMessage[] {
  return messages.map((m, i) => {
    let content: string;
    if (typeof m.content === 'string') content = m.content;
    else if (m.content === null || m.content === undefined) content = '';
    else {
      const texts: string[] = [];
      m.content.forEach((part, j) => {
        if (part.type !== 'text' || typeof part.text !== 'string') {
          throw invalidParam(
            `messages[${i}].content[${j}]`,
            `Content parts of type ${JSON.stringify(part.type)} are not supported; this server takes text parts ({"type": "text", "text": ...}) only.`,
          );
        }
        texts.push(part.text);
      });
      content = texts.join('\n');
    }
    return { role: m.role === 'developer' ? 'system' : m.role, content };
  });
}

/** Renders and tokenizes a chat for the base model or an adapter. */
export function chatPromptIds(request: FastifyRequest, engine: Engine, adapter: string | null, messages: ChatMessageBody[], maxPromptChars: number): number[] {
  return chatPrompt(request, engine, adapter, messages, maxPromptChars).ids;
}

/**
 * A chat rendered with the chat template: the text (what a Bedrock target gets, as one prompt) and its
 * token ids for the local engine.
 */
export function chatPrompt(
  request: FastifyRequest,
  engine: Engine,
  adapter: string | null,
  messages: ChatMessageBody[],
  maxPromptChars: number,
): { ids: number[]; text: string } {
  const templateMessages = toTemplateMessages(messages);
  const own = adapter === null ? null : adapterChatTemplate(engine, adapter);
  if (!own && !engine.tokenizer.hasChatTemplate) {
    throw invalidParam('messages', 'This model has no chat template, so it cannot take chat messages; use POST /v1/completions with a prompt.');
  }
  let text: string;
  try {
    text = own ? engine.tokenizer.renderChat(templateMessages, true, own) : engine.tokenizer.renderChat(templateMessages, true);
  } catch (e) {
    throw invalidParam('messages', `The chat template refused these messages: ${(e as Error).message}.`);
  }
  if (text.length > maxPromptChars) throw invalidParam('messages', `The rendered chat has ${text.length} characters; the limit is ${maxPromptChars}.`);
  // No special tokens added: the template wrote them (as HF's apply_chat_template tokenizes).
  const ids = engine.tokenizer.encode(text, { addSpecialTokens: false });
  assertPromptTokens(request, ids.length);
  return { ids, text };
}

/** A completions `prompt` (string, strings, token ids, or lists of token ids) as token-id prompts. */
export function completionPromptIds(
  request: FastifyRequest,
  engine: Engine,
  prompt: string | string[] | number[] | number[][],
  maxPromptChars: number,
): number[][] {
  return completionPrompts(request, engine, prompt, maxPromptChars).map((p) => p.ids);
}

/** A completions `prompt` as prompts with token ids, and their text where given as text (Bedrock needs it). */
export function completionPrompts(
  request: FastifyRequest,
  engine: Engine,
  prompt: string | string[] | number[] | number[][],
  maxPromptChars: number,
): Array<{ ids: number[]; text?: string }> {
  const prompts: Array<string | number[]> =
    typeof prompt === 'string' ? [prompt] : prompt.length && typeof prompt[0] === 'number' ? [prompt as number[]] : (prompt as Array<string | number[]>);
  const vocab = engine.spec.vocabSize;
  return prompts.map((p, i) => {
    const param = prompts.length > 1 ? `prompt[${i}]` : 'prompt';
    if (typeof p === 'string') {
      if (p.length > maxPromptChars) throw invalidParam(param, `The prompt has ${p.length} characters; the limit is ${maxPromptChars}.`);
      const ids = engine.tokenizer.encode(p);
      assertPromptTokens(request, ids.length);
      return { ids, text: p };
    }
    const bad = p.find((id) => id < 0 || id >= vocab);
    if (bad !== undefined) throw invalidParam(param, `The prompt holds token id ${bad}, outside this model's vocabulary of ${vocab}.`);
    assertPromptTokens(request, p.length);
    return { ids: p };
  });
}
