/**
 * Bodies of POST /v1/completions and POST /v1/chat/completions: JSON schemas (checked by fastify) and
 * their TypeScript shapes. Optional parameters also accept null, as OpenAI's API does. Parameters this
 * server does not implement are listed so that a request using them at a non-default value gets a 400
 * naming them (see checkUnsupported), and unknown parameters are refused as OpenAI refuses them.
 */

export const MAX_CHOICES = 16;
export const MAX_TOP_LOGPROBS = 20;

/** The same schema, null also allowed. */
const nullable = <T extends { type: string }>(schema: T) => ({ ...schema, type: [schema.type, 'null'] });

export const responseFormatSchema = nullable({
  type: 'object',
  required: ['type'],
  additionalProperties: false,
  properties: {
    type: { enum: ['text', 'json_object', 'json_schema'] },
    json_schema: {
      type: 'object',
      required: ['name'],
      additionalProperties: false,
      properties: {
        name: { type: 'string', pattern: '^[a-zA-Z0-9_-]{1,64}$' },
        description: { type: 'string' },
        schema: {},
        strict: { type: ['boolean', 'null'] },
      },
    },
  },
});

const stopSchema = { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 } }, { type: 'null' }] };

/** Parameters common to both endpoints. */
const commonProperties = {
  model: { type: 'string', minLength: 1 },
  max_tokens: nullable({ type: 'integer', minimum: 1 }),
  temperature: nullable({ type: 'number', minimum: 0, maximum: 2 }),
  top_p: nullable({ type: 'number', minimum: 0, maximum: 1 }),
  n: nullable({ type: 'integer', minimum: 1, maximum: MAX_CHOICES }),
  seed: nullable({ type: 'integer' }),
  stop: stopSchema,
  stream: nullable({ type: 'boolean' }),
  stream_options: nullable({
    type: 'object',
    additionalProperties: false,
    properties: { include_usage: { type: ['boolean', 'null'] }, include_obfuscation: { type: ['boolean', 'null'] } },
  }),
  response_format: responseFormatSchema,
  frequency_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
  presence_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
  logit_bias: nullable({ type: 'object' }),
  user: nullable({ type: 'string' }),
  // extensions (vLLM spells them the same way)
  ignore_eos: nullable({ type: 'boolean' }),
  top_k: nullable({ type: 'integer', minimum: 0 }),
  return_tokens_as_token_ids: nullable({ type: 'boolean' }),
} as const;

const promptSchema = {
  anyOf: [
    { type: 'string' },
    { type: 'array', minItems: 1, items: { type: 'string' } },
    { type: 'array', minItems: 1, items: { type: 'integer' } },
    { type: 'array', minItems: 1, items: { type: 'array', minItems: 1, items: { type: 'integer' } } },
  ],
} as const;

export const completionBodySchema = {
  type: 'object',
  required: ['model', 'prompt'],
  additionalProperties: false,
  properties: {
    ...commonProperties,
    prompt: promptSchema,
    logprobs: nullable({ type: 'integer', minimum: 0, maximum: MAX_TOP_LOGPROBS }),
    echo: nullable({ type: 'boolean' }),
    suffix: nullable({ type: 'string' }),
    best_of: nullable({ type: 'integer', minimum: 1 }),
  },
} as const;

const contentPartSchema = {
  type: 'object',
  required: ['type'],
  properties: { type: { type: 'string' }, text: { type: 'string' } },
} as const;

export const chatBodySchema = {
  type: 'object',
  required: ['model', 'messages'],
  additionalProperties: false,
  properties: {
    ...commonProperties,
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
          content: { anyOf: [{ type: 'string' }, { type: 'null' }, { type: 'array', items: contentPartSchema }] },
          name: { type: 'string' },
        },
      },
    },
    max_completion_tokens: nullable({ type: 'integer', minimum: 1 }),
    logprobs: nullable({ type: 'boolean' }),
    top_logprobs: nullable({ type: 'integer', minimum: 0, maximum: MAX_TOP_LOGPROBS }),
    tools: nullable({ type: 'array' }),
    tool_choice: {},
    parallel_tool_calls: nullable({ type: 'boolean' }),
    functions: nullable({ type: 'array' }),
    function_call: {},
    modalities: nullable({ type: 'array', items: { type: 'string' } }),
    store: nullable({ type: 'boolean' }),
    metadata: nullable({ type: 'object' }),
    service_tier: nullable({ type: 'string' }),
  },
} as const;

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema?: { name: string; description?: string; schema?: unknown; strict?: boolean | null } };

export interface CommonBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  n?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null; include_obfuscation?: boolean | null } | null;
  response_format?: ResponseFormat | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  user?: string | null;
  ignore_eos?: boolean | null;
  top_k?: number | null;
  return_tokens_as_token_ids?: boolean | null;
}

export interface CompletionBody extends CommonBody {
  prompt: string | string[] | number[] | number[][];
  logprobs?: number | null;
  echo?: boolean | null;
  suffix?: string | null;
  best_of?: number | null;
}

export interface ContentPart {
  type: string;
  text?: string;
}

export interface ChatMessageBody {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content?: string | null | ContentPart[];
  name?: string;
}

export interface ChatBody extends CommonBody {
  messages: ChatMessageBody[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  tools?: unknown[] | null;
  tool_choice?: unknown;
  parallel_tool_calls?: boolean | null;
  functions?: unknown[] | null;
  function_call?: unknown;
  modalities?: string[] | null;
  store?: boolean | null;
  metadata?: Record<string, unknown> | null;
  service_tier?: string | null;
}

/** The query string of both generation endpoints: `route` as on /v1/generate (auto, local, bedrock). */
export const routeQuerySchema = { type: 'object', properties: { route: { type: 'string' } } } as const;
export interface RouteQuery {
  route?: string;
}
