/**
 * response_format -> JSON mode for the engine: `json_object` (any JSON object) or `json_schema` (the
 * schema's supported subset; anything else is a 400 that names the keyword). The schema is checked here,
 * on the HTTP thread, and sent to the engine as data; the engine compiles the constraint (and caches it)
 * in its worker thread, where the token vocabulary lives. A schema that passes this check but that the
 * compiler still refuses comes back as an engine error naming the parameter (a 400 all the same).
 */
import { validateSchemaSupported, type JsonSchema } from '../../engine/constrain/index.js';
import type { ResponseFormatData } from '../../engine/engine.js';
import { invalidParam } from './errors.js';
import type { ResponseFormat } from './schemas.js';

/** What a request's response_format asks the engine for (schema null: any JSON object), or null (plain text). */
export function jsonModeFor(format: ResponseFormat | null | undefined): ResponseFormatData | null {
  if (!format || format.type === 'text') return null;
  let schema: JsonSchema | null = null;
  let strict = false;
  if (format.type === 'json_schema') {
    if (!format.json_schema)
      throw invalidParam('response_format.json_schema', "response_format of type 'json_schema' needs a json_schema object ({name, schema, strict}).");
    if (format.json_schema.schema === undefined)
      throw invalidParam('response_format.json_schema.schema', 'json_schema.schema is required: the JSON Schema the output must follow.');
    strict = format.json_schema.strict === true;
    const reason = validateSchemaSupported(format.json_schema.schema, { strict });
    if (reason !== null) throw invalidParam('response_format.json_schema.schema', `This JSON schema is not supported: ${reason}.`);
    schema = format.json_schema.schema as JsonSchema;
  } else if ('json_schema' in format && format.json_schema !== undefined) {
    throw invalidParam('response_format.json_schema', `json_schema is only allowed with response_format type 'json_schema'.`);
  }
  return { schema, strict };
}
