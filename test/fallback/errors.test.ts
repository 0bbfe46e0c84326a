import t from 'tap';
import { AppError } from '../../src/errors.js';
import { TargetTimeoutError, TruncatedStreamError, classifyBedrockError, errorCodeForException, isRetryable } from '../../src/fallback/errors.js';
import { MalformedResponseError } from '../../src/fallback/families/types.js';

function sdkError(name: string, status?: number): Error {
  return Object.assign(new Error(`${name} message`), { name, $metadata: { httpStatusCode: status, requestId: 'r-1' } });
}

const TABLE: Array<[string, string, number, boolean]> = [
  ['ThrottlingException', 'upstream_throttled', 429, true],
  ['ServiceQuotaExceededException', 'upstream_throttled', 429, false],
  ['ModelNotReadyException', 'upstream_unavailable', 503, true],
  ['ServiceUnavailableException', 'upstream_unavailable', 503, true],
  ['InternalServerException', 'upstream_error', 502, true],
  ['ModelTimeoutException', 'upstream_timeout', 504, false],
  ['ValidationException', 'upstream_invalid_request', 400, false],
  ['AccessDeniedException', 'upstream_access_denied', 502, false],
  ['ResourceNotFoundException', 'upstream_error', 502, false],
  ['ModelErrorException', 'upstream_error', 502, false],
  ['ModelStreamErrorException', 'upstream_error', 502, false],
  ['CredentialsProviderError', 'upstream_access_denied', 502, false],
];

t.test('SDK exception names', async (t) => {
  for (const [name, code, status, retryable] of TABLE) {
    const fault = classifyBedrockError(sdkError(name), 'Target');
    t.match(fault.error, { code, status }, `${name} -> ${code}`);
    t.equal(fault.retryable, retryable, `${name} retryable: ${retryable}`);
    t.equal(isRetryable(sdkError(name)), retryable);
    t.equal(fault.error.cause instanceof Error && fault.error.cause.name, name, 'the SDK error is kept as cause');
  }
});

t.test('stream exception member names map like the exceptions', async (t) => {
  t.equal(errorCodeForException('throttlingException'), 'upstream_throttled');
  t.equal(errorCodeForException('modelStreamErrorException'), 'upstream_error');
  t.equal(errorCodeForException('serviceUnavailableException'), 'upstream_unavailable');
  t.equal(errorCodeForException('validationException'), 'upstream_invalid_request');
  t.equal(errorCodeForException('modelTimeoutException'), 'upstream_timeout');
  t.equal(errorCodeForException('internalServerException'), 'upstream_error');
  const unmodeled = Object.assign(new Error('{"message":"x"}'), { name: 'throttlingException' });
  t.match(classifyBedrockError(unmodeled, 'T').error, { code: 'upstream_throttled' });
});

t.test('unmodeled errors by HTTP status', async (t) => {
  t.match(classifyBedrockError(sdkError('Weird', 429), 'T'), { error: { code: 'upstream_throttled' }, retryable: true });
  t.match(classifyBedrockError(sdkError('Weird', 503), 'T'), { error: { code: 'upstream_unavailable' }, retryable: true });
  t.match(classifyBedrockError(sdkError('Weird', 500), 'T'), { error: { code: 'upstream_error' }, retryable: true });
  t.match(classifyBedrockError(sdkError('Weird', 418), 'T'), { error: { code: 'upstream_error' }, retryable: false });
  t.match(classifyBedrockError('a string', 'T'), { error: { code: 'upstream_error' }, retryable: false });
});

t.test('network errors, our timeout, truncated and malformed streams', async (t) => {
  const reset = Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
  t.match(classifyBedrockError(reset, 'T'), {
    error: { code: 'upstream_unavailable', message: 'T failed (ECONNRESET).' },
    retryable: true,
    countsAsFailure: true,
  });
  t.match(classifyBedrockError(new TargetTimeoutError(250), 'T'), {
    error: { code: 'upstream_timeout', status: 504, message: 'T did not answer within 250 ms.' },
    retryable: false,
  });
  t.match(classifyBedrockError(new TruncatedStreamError(), 'T'), { error: { code: 'upstream_error' }, retryable: true });
  t.match(classifyBedrockError(new MalformedResponseError('x'), 'T'), { error: { code: 'upstream_error' }, retryable: false });
});

t.test('what counts towards the circuit breaker', async (t) => {
  t.equal(classifyBedrockError(sdkError('ThrottlingException'), 'T').countsAsFailure, false);
  t.equal(classifyBedrockError(sdkError('ValidationException'), 'T').countsAsFailure, false);
  t.equal(classifyBedrockError(sdkError('ServiceUnavailableException'), 'T').countsAsFailure, true);
  t.equal(classifyBedrockError(sdkError('AccessDeniedException'), 'T').countsAsFailure, true);
  const own = new AppError('invalid_request', 'x');
  t.same(classifyBedrockError(own, 'T'), { error: own, retryable: false, countsAsFailure: false }, 'AppErrors pass through');
});

t.test('retry-after hints and message hygiene', async (t) => {
  t.equal(classifyBedrockError(sdkError('ThrottlingException'), 'T').error.retryAfter, 1);
  t.equal(classifyBedrockError(sdkError('ValidationException'), 'T').error.retryAfter, undefined);
  t.equal(classifyBedrockError(sdkError('ValidationException'), 'T').error.message, 'T failed (ValidationException): ValidationException message.');
  t.equal(classifyBedrockError(sdkError('AccessDeniedException'), 'T').error.message, 'T failed (AccessDeniedException).');
});
