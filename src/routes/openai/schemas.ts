/**
 * Bodies of POST /v1/completions and POST /v1/chat/completions: TypeBox schemas (checked by fastify), from
 * which their TypeScript types are derived. Optional parameters also accept null, as OpenAI's API does. Parameters this
 * server does not implement are listed so that a request using them at a non-default value gets a 400
 * naming them (see checkUnsupported), and unknown parameters are refused as OpenAI refuses them.
 */

import { Type, type Static, type TSchema } from 'typebox';

export const MAX_CHOICES = 16;
export const MAX_TOP_LOGPROBS = 20;

/**
 * The same schema, null also allowed, written as JSON Schema's `type: [T, 'null']` (what OpenAI's own schemas
 * say, and the shape the validation messages of src/routes/openai/errors.ts are made from; a Union would be anyOf).
 */
const nullable = <T extends TSchema>(schema: T) => Type.Unsafe<Static<T> | null>({ ...schema, type: [(schema as { type?: string }).type, 'null'] });
/** Free-form values the server accepts without looking inside (only their JSON type is checked). */
const anyObject = () => Type.Unsafe<Record<string, unknown>>({ type: 'object' });
const anyArray = () => Type.Unsafe<unknown[]>({ type: 'array' });

export const responseFormatSchema = nullable(
  Type.Object(
    {
      type: Type.Enum(['text', 'json_object', 'json_schema']),
      json_schema: Type.Optional(
        Type.Object(
          {
            name: Type.String({ pattern: '^[a-zA-Z0-9_-]{1,64}$' }),
            description: Type.Optional(Type.String()),
            schema: Type.Optional(Type.Unknown()),
            strict: Type.Optional(nullable(Type.Boolean())),
          },
          { additionalProperties: false },
        ),
      ),
    },
    { additionalProperties: false },
  ),
);
export type ResponseFormat = NonNullable<Static<typeof responseFormatSchema>>;

const stopSchema = Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 })), Type.Null()]);

/** Parameters common to both endpoints. */
const commonProperties = {
  model: Type.String({ minLength: 1 }),
  max_tokens: Type.Optional(nullable(Type.Integer({ minimum: 1 }))),
  temperature: Type.Optional(nullable(Type.Number({ minimum: 0, maximum: 2 }))),
  top_p: Type.Optional(nullable(Type.Number({ minimum: 0, maximum: 1 }))),
  n: Type.Optional(nullable(Type.Integer({ minimum: 1, maximum: MAX_CHOICES }))),
  seed: Type.Optional(nullable(Type.Integer())),
  stop: Type.Optional(stopSchema),
  stream: Type.Optional(nullable(Type.Boolean())),
  stream_options: Type.Optional(
    nullable(
      Type.Object(
        { include_usage: Type.Optional(nullable(Type.Boolean())), include_obfuscation: Type.Optional(nullable(Type.Boolean())) },
        { additionalProperties: false },
      ),
    ),
  ),
  response_format: Type.Optional(responseFormatSchema),
  frequency_penalty: Type.Optional(nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  presence_penalty: Type.Optional(nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  logit_bias: Type.Optional(nullable(anyObject())),
  user: Type.Optional(nullable(Type.String())),
  // extensions (vLLM spells them the same way)
  ignore_eos: Type.Optional(nullable(Type.Boolean())),
  top_k: Type.Optional(nullable(Type.Integer({ minimum: 0 }))),
  return_tokens_as_token_ids: Type.Optional(nullable(Type.Boolean())),
};
export const commonBodySchema = Type.Object(commonProperties);
export type CommonBody = Static<typeof commonBodySchema>;

const promptSchema = Type.Union([
  Type.String(),
  Type.Array(Type.String(), { minItems: 1 }),
  Type.Array(Type.Integer(), { minItems: 1 }),
  Type.Array(Type.Array(Type.Integer(), { minItems: 1 }), { minItems: 1 }),
]);

export const completionBodySchema = Type.Object(
  {
    ...commonProperties,
    prompt: promptSchema,
    logprobs: Type.Optional(nullable(Type.Integer({ minimum: 0, maximum: MAX_TOP_LOGPROBS }))),
    echo: Type.Optional(nullable(Type.Boolean())),
    suffix: Type.Optional(nullable(Type.String())),
    best_of: Type.Optional(nullable(Type.Integer({ minimum: 1 }))),
  },
  { additionalProperties: false },
);
export type CompletionBody = Static<typeof completionBodySchema>;

const contentPartSchema = Type.Object({ type: Type.String(), text: Type.Optional(Type.String()) });
export type ContentPart = Static<typeof contentPartSchema>;

const chatMessageSchema = Type.Object({
  role: Type.Enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: Type.Optional(Type.Union([Type.String(), Type.Null(), Type.Array(contentPartSchema)])),
  name: Type.Optional(Type.String()),
});
export type ChatMessageBody = Static<typeof chatMessageSchema>;

export const chatBodySchema = Type.Object(
  {
    ...commonProperties,
    messages: Type.Array(chatMessageSchema, { minItems: 1 }),
    max_completion_tokens: Type.Optional(nullable(Type.Integer({ minimum: 1 }))),
    logprobs: Type.Optional(nullable(Type.Boolean())),
    top_logprobs: Type.Optional(nullable(Type.Integer({ minimum: 0, maximum: MAX_TOP_LOGPROBS }))),
    tools: Type.Optional(nullable(anyArray())),
    tool_choice: Type.Optional(Type.Unknown()),
    parallel_tool_calls: Type.Optional(nullable(Type.Boolean())),
    functions: Type.Optional(nullable(anyArray())),
    function_call: Type.Optional(Type.Unknown()),
    modalities: Type.Optional(nullable(Type.Array(Type.String()))),
    store: Type.Optional(nullable(Type.Boolean())),
    metadata: Type.Optional(nullable(anyObject())),
    service_tier: Type.Optional(nullable(Type.String())),
  },
  { additionalProperties: false },
);
export type ChatBody = Static<typeof chatBodySchema>;

/** The query string of both generation endpoints: `route` as on /v1/generate (auto, local, bedrock). */
export const routeQuerySchema = Type.Object({ route: Type.Optional(Type.String()) });
export type RouteQuery = Static<typeof routeQuerySchema>;
