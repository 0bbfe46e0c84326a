/**
 * response_format -> a JSON constraint for the engine: `json_object` (any JSON object) or `json_schema`
 * (the schema's supported subset; anything else is a 400 that names the keyword). The token vocabulary
 * is built once per engine.
 */
import type { Engine } from '../../engine/engine.js';
import type { LogitsConstraint } from '../../engine/scheduler.js';
import {
  buildTokenVocabulary,
  compileJsonConstraint,
  UnsupportedSchemaError,
  validateSchemaSupported,
  type JsonConstraint,
  type JsonSchema,
  type TokenVocabulary,
} from '../../engine/constrain/index.js';
import { invalidParam } from './errors.js';
import type { ResponseFormat } from './schemas.js';

const vocabularies = new WeakMap<Engine, TokenVocabulary>();

/** The engine's tokens as bytes, padded to the model's vocabulary (ids past the tokenizer's have no bytes). */
export function engineVocabulary(engine: Engine): TokenVocabulary {
  let vocabulary = vocabularies.get(engine);
  if (!vocabulary) {
    const bytes = engine.tokenizer.tokenBytes().slice(0, engine.spec.vocabSize);
    while (bytes.length < engine.spec.vocabSize) bytes.push(new Uint8Array(0));
    vocabulary = buildTokenVocabulary(bytes, engine.spec.eosTokenIds);
    vocabularies.set(engine, vocabulary);
  }
  return vocabulary;
}

/** What a request's response_format asks for: a factory of per-choice constraints, or null (plain text). */
export interface JsonMode {
  /** null: json_object (any JSON object). */
  schema: JsonSchema | null;
  strict: boolean;
  constraint: JsonConstraint;
  /** A fresh decoding state for one choice. */
  start(): LogitsConstraint;
}

export function jsonModeFor(engine: Engine, format: ResponseFormat | null | undefined): JsonMode | null {
  if (!format || format.type === 'text') return null;
  let schema: JsonSchema | null = null;
  let strict = false;
  if (format.type === 'json_schema') {
    if (!format.json_schema) throw invalidParam('response_format.json_schema', "response_format of type 'json_schema' needs a json_schema object ({name, schema, strict}).");
    if (format.json_schema.schema === undefined) throw invalidParam('response_format.json_schema.schema', 'json_schema.schema is required: the JSON Schema the output must follow.');
    strict = format.json_schema.strict === true;
    const reason = validateSchemaSupported(format.json_schema.schema, { strict });
    if (reason !== null) throw invalidParam('response_format.json_schema.schema', `This JSON schema is not supported: ${reason}.`);
    schema = format.json_schema.schema as JsonSchema;
  } else if ('json_schema' in format && format.json_schema !== undefined) {
    throw invalidParam('response_format.json_schema', `json_schema is only allowed with response_format type 'json_schema'.`);
  }
  let constraint: JsonConstraint;
  try {
    constraint = compileJsonConstraint(schema, engineVocabulary(engine), { strict });
  } catch (e) {
    if (e instanceof UnsupportedSchemaError) throw invalidParam('response_format.json_schema.schema', `This JSON schema is not supported: ${e.message}.`);
    // The vocabulary lacks what JSON needs (see assertVocabularyCanFinishJson); anything else is a bug.
    if (e instanceof Error && e.message.startsWith('JSON mode needs')) throw invalidParam('response_format', `JSON mode is not available for this model: ${e.message}.`);
    throw e;
  }
  return { schema, strict, constraint, start: () => constraint.start() };
}
