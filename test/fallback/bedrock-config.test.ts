import t from 'tap';
import { BEDROCK_DEFAULTS, parseBedrockConfig } from '../../src/fallback/bedrock-config.js';

const ARN = 'arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123';
const target = (extra: Record<string, unknown> = {}) => ({ modelId: ARN, family: 'llama', region: 'us-east-1', ...extra });

t.test('fills defaults', async (t) => {
  t.same(parseBedrockConfig({ targets: { sales: target() } }), {
    targets: {
      sales: { modelId: ARN, family: 'llama', region: 'us-east-1', timeoutMs: 60_000, maxRetries: 2, localAlso: false },
    },
    circuitBreaker: { failureThreshold: 5, cooldownMs: 30_000 },
  });
  t.same(parseBedrockConfig({}), { targets: {}, circuitBreaker: BEDROCK_DEFAULTS.circuitBreaker });
});

t.test('keeps every given value', async (t) => {
  const config = parseBedrockConfig({
    endpoint: 'https://vpce-0abc.bedrock-runtime.us-east-1.vpce.amazonaws.com',
    circuitBreaker: { failureThreshold: 2, cooldownMs: 500 },
    targets: {
      chat: {
        modelId: 'us.meta.llama3-1-8b-instruct-v1:0',
        family: 'converse',
        region: 'eu-west-1',
        timeoutMs: 5_000,
        maxRetries: 0,
        maxTokens: 256,
        localAlso: true,
      },
      'legal.v2': target({ family: 'titan' }),
    },
  });
  t.same(config.targets.chat, {
    modelId: 'us.meta.llama3-1-8b-instruct-v1:0',
    family: 'converse',
    region: 'eu-west-1',
    timeoutMs: 5_000,
    maxRetries: 0,
    maxTokens: 256,
    localAlso: true,
  });
  t.equal(config.targets['legal.v2'].family, 'titan');
  t.same(config.circuitBreaker, { failureThreshold: 2, cooldownMs: 500 });
  t.equal(config.endpoint, 'https://vpce-0abc.bedrock-runtime.us-east-1.vpce.amazonaws.com');
  t.same(parseBedrockConfig({ circuitBreaker: { cooldownMs: 10 } }).circuitBreaker, { failureThreshold: 5, cooldownMs: 10 });
});

const BAD: Array<[string, unknown, RegExp]> = [
  ['not an object', 'yes', /^bedrock must be an object/],
  ['targets not an object', { targets: [] }, /^bedrock\.targets must be an object/],
  ['unknown top-level key', { target: {} }, /bedrock: unknown key "target" \(allowed: targets, circuitBreaker, endpoint\)/],
  ['bad adapter name', { targets: { 'my adapter': target() } }, /"my adapter" is not a valid adapter name/],
  [
    'missing modelId',
    { targets: { a: { family: 'llama', region: 'us-east-1' } } },
    /bedrock\.targets\.a\.modelId must be a provisioned model ARN or a model id/,
  ],
  ['modelId with spaces', { targets: { a: target({ modelId: 'my model' }) } }, /targets\.a\.modelId/],
  ['bad family', { targets: { a: target({ family: 'claude' }) } }, /bedrock\.targets\.a\.family must be one of llama, titan, converse; got "claude"/],
  ['bad region', { targets: { a: target({ region: 'useast1' }) } }, /bedrock\.targets\.a\.region must be an AWS region such as "us-east-1"; got "useast1"/],
  ['ARN region mismatch', { targets: { a: target({ region: 'us-west-2' }) } }, /modelId is an ARN in us-east-1 but region is us-west-2/],
  ['timeout zero', { targets: { a: target({ timeoutMs: 0 }) } }, /targets\.a\.timeoutMs must be an integer from 1 to 900000; got 0/],
  ['timeout string', { targets: { a: target({ timeoutMs: '30s' }) } }, /timeoutMs must be an integer/],
  ['retries negative', { targets: { a: target({ maxRetries: -1 }) } }, /targets\.a\.maxRetries must be an integer from 0 to 10/],
  ['retries fractional', { targets: { a: target({ maxRetries: 1.5 }) } }, /maxRetries must be an integer/],
  ['maxTokens zero', { targets: { a: target({ maxTokens: 0 }) } }, /targets\.a\.maxTokens must be an integer from 1/],
  ['localAlso not boolean', { targets: { a: target({ localAlso: 'yes' }) } }, /targets\.a\.localAlso must be true or false/],
  ['unknown target key', { targets: { a: target({ modelID: 'x' }) } }, /bedrock\.targets\.a: unknown key "modelID"/],
  ['breaker threshold zero', { circuitBreaker: { failureThreshold: 0 } }, /circuitBreaker\.failureThreshold must be an integer from 1/],
  ['breaker unknown key', { circuitBreaker: { cooldown: 5 } }, /circuitBreaker: unknown key "cooldown"/],
  ['endpoint not a URL', { endpoint: 'localhost:4000' }, /bedrock\.endpoint must use http or https/],
  ['endpoint garbage', { endpoint: 'not a url' }, /bedrock\.endpoint must be an absolute http\(s\) URL/],
  ['endpoint with userinfo', { endpoint: 'https://AKID:secret@example.com' }, /must not embed credentials/],
];

for (const [name, raw, message] of BAD) {
  t.test(`rejects: ${name}`, async (t) => {
    t.throws(() => parseBedrockConfig(raw), { message });
  });
}

t.test('refuses credentials anywhere, pointing at the default provider chain', async (t) => {
  const cases: Array<[unknown, string]> = [
    [{ accessKeyId: 'AKID', targets: {} }, 'bedrock.accessKeyId'],
    [{ targets: { a: target({ secretAccessKey: 'x' }) } }, 'bedrock.targets.a.secretAccessKey'],
    [{ credentials: { accessKeyId: 'AKID' } }, 'bedrock.credentials'],
    [{ targets: { a: target({ aws_session_token: 'x' }) } }, 'bedrock.targets.a.aws_session_token'],
    [{ targets: { a: target({ AWS_SECRET_ACCESS_KEY: 'x' }) } }, 'bedrock.targets.a.AWS_SECRET_ACCESS_KEY'],
  ];
  for (const [raw, path] of cases) {
    const error = (() => {
      try {
        parseBedrockConfig(raw);
      } catch (e) {
        return e as Error;
      }
    })();
    t.ok(error, `${path} rejected`);
    t.match(error?.message, `${path}: AWS credentials must not be in the config`);
    t.match(error?.message, /default credential provider chain/);
    t.notMatch(error?.message, /AKID/, 'the value is not echoed');
  }
});
