/** Constrained decoding for OpenAI's response_format json_object / json_schema. See docs/json-mode.md. */
export { buildTokenVocabulary, type TokenVocabulary } from './token-vocabulary.js';
export {
  compileJsonConstraint,
  DEFAULT_MAX_FREE_FORM_NESTING,
  DEFAULT_MAX_WHITESPACE_RUN,
  type JsonConstraint,
  type JsonConstraintOptions,
  type JsonConstraintState,
} from './json-constraint.js';
export { UnsupportedSchemaError, validateSchemaSupported, SUPPORTED_KEYWORDS, ANNOTATION_KEYWORDS, type CompileSchemaOptions } from './schema-compiler.js';
export { validateJson } from './validate-json.js';
export type { JsonSchema } from './json-schema.js';
