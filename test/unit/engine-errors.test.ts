/** The one mapping from engine error codes to the catalogue (src/routes/engine-errors.ts), and engine errors as data. */
import t from 'tap';
import { ENGINE_ERROR_CODES, EngineError, toEngineErrorData } from '../../src/engine/errors.js';
import { engineErrorToAppError } from '../../src/routes/engine-errors.js';
import { toAppError } from '../../src/routes/to-app-error.js';
import { toOpenAIBody, toOpenAIError } from '../../src/routes/openai/errors.js';
import { ERRORS } from '../../src/errors.js';

t.test('every engine code maps to a catalogue entry', async (t) => {
  for (const code of ENGINE_ERROR_CODES) {
    const app = engineErrorToAppError(new EngineError(code, 'x'));
    t.ok(app.code in ERRORS, `${code} -> ${app.code} ${app.status}`);
  }
  const status = (code: (typeof ENGINE_ERROR_CODES)[number]) => engineErrorToAppError(new EngineError(code, 'm')).status;
  t.equal(status('cancelled'), 408);
  t.equal(status('timeout'), 408);
  t.equal(status('not_ready'), 503);
  t.equal(status('shutting_down'), 503);
  t.equal(status('internal'), 500);
  t.equal(status('adapter_not_found'), 404);
  t.equal(status('adapter_in_use'), 409);
  t.same([engineErrorToAppError(new EngineError('kv_budget_exceeded', 'too big')).code, status('kv_budget_exceeded')], ['context_length_exceeded', 400]);
  const full = engineErrorToAppError(new EngineError('queue_full', 'The queue holds 64 requests, its limit.'));
  t.same([full.code, full.status, full.retryAfter], ['queue_full', 429, 1], 'queue_full: 429 with Retry-After');
  t.equal(engineErrorToAppError(new EngineError('queue_full', 'm', { retryAfterSeconds: 3 })).retryAfter, 3);
  t.equal(engineErrorToAppError(new EngineError('not_ready', 'm')).retryAfter, 5);
  t.notMatch(engineErrorToAppError(new EngineError('internal', 'secret detail')).toBody().error.message, /secret/, 'internal details stay out');
});

t.test('the app and OpenAI error paths render engine errors through the mapping', async (t) => {
  const e = new EngineError('context_length_exceeded', 'The prompt has 300 tokens.');
  t.same(toAppError(e).toBody(), { error: { code: 'context_length_exceeded', message: `The prompt has 300 tokens. ${ERRORS.context_length_exceeded.hint}` } });
  const withParam = toOpenAIBody(
    toOpenAIError(new EngineError('invalid_request', 'This JSON schema is not supported: x.', { param: 'response_format.json_schema.schema' })),
  );
  t.same(withParam.error, {
    message: 'This JSON schema is not supported: x.',
    type: 'invalid_request_error',
    param: 'response_format.json_schema.schema',
    code: 'invalid_request',
  });
  t.equal(toOpenAIBody(toOpenAIError(new EngineError('queue_full', 'full'))).error.type, 'rate_limit_error');
});

t.test('errors as data across the worker boundary', async (t) => {
  const e = new EngineError('queue_full', 'full', { retryAfterSeconds: 2, param: 'p' });
  const back = EngineError.fromData(structuredClone(e.toData()));
  t.ok(back instanceof EngineError);
  t.same([back.code, back.message, back.retryAfterSeconds, back.param], ['queue_full', 'full', 2, 'p']);
  t.same(
    toEngineErrorData(new Error('boom')),
    { code: 'internal', message: 'The engine failed while running this request.' },
    'a plain error is internal, without its message',
  );
  t.equal(toEngineErrorData({ code: 'request_timeout', message: 'cancelled' }, true).code, 'cancelled', 'a request_timeout the caller asked for is cancelled');
  t.equal(toEngineErrorData({ code: 'request_timeout', message: 'late' }).code, 'timeout');
  t.equal(toEngineErrorData({ code: 'adapter_errored', message: 'bad' }).code, 'adapter_errored', 'engine codes carried by other errors are kept');
});
