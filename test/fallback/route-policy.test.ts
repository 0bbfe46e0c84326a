import t from 'tap';
import { AppError } from '../../src/errors.js';
import { decideRoute, parseRequestedRoute, type RouteInput } from '../../src/fallback/route-policy.js';

type Expect = 'local' | 'bedrock' | { code: string; status: number; message: RegExp };

const LOCAL_ONLY = { adapter: 'support', servedLocally: true, hasBedrockTarget: false };
const BOTH = { adapter: 'sales', servedLocally: true, hasBedrockTarget: true };
const BEDROCK_ONLY = { adapter: 'legal', servedLocally: false, hasBedrockTarget: true };
const UNKNOWN = { adapter: 'nope', servedLocally: false, hasBedrockTarget: false };
const BASE = { adapter: null, servedLocally: true, hasBedrockTarget: false };

const notFound = { code: 'adapter_not_found', status: 404, message: /"nope" is not known/ };

const TABLE: Array<[string, RouteInput, Expect]> = [
  // base model: local only, never Bedrock, not even on overflow
  ['base, auto', { requested: 'auto', ...BASE }, 'local'],
  ['base, local', { requested: 'local', ...BASE }, 'local'],
  ['base, bedrock', { requested: 'bedrock', ...BASE }, { code: 'invalid_request', status: 400, message: /base model is served only locally/ }],
  ['base, auto, queue full', { requested: 'auto', ...BASE, localOutcome: 'queue_full' }, 'local'],
  ['base, auto, engine error', { requested: 'auto', ...BASE, localOutcome: 'engine_error' }, 'local'],
  // adapter served locally only
  ['local-only, auto', { requested: 'auto', ...LOCAL_ONLY }, 'local'],
  ['local-only, local', { requested: 'local', ...LOCAL_ONLY }, 'local'],
  ['local-only, bedrock', { requested: 'bedrock', ...LOCAL_ONLY }, { code: 'invalid_request', status: 400, message: /"support" has no Bedrock target/ }],
  ['local-only, auto, queue full', { requested: 'auto', ...LOCAL_ONLY, localOutcome: 'queue_full' }, 'local'],
  // adapter served locally and on Bedrock
  ['both, auto', { requested: 'auto', ...BOTH }, 'local'],
  ['both, local', { requested: 'local', ...BOTH }, 'local'],
  ['both, bedrock', { requested: 'bedrock', ...BOTH }, 'bedrock'],
  ['both, auto, queue full -> overflow', { requested: 'auto', ...BOTH, localOutcome: 'queue_full' }, 'bedrock'],
  ['both, auto, engine error -> overflow', { requested: 'auto', ...BOTH, localOutcome: 'engine_error' }, 'bedrock'],
  ['both, local, queue full: no overflow', { requested: 'local', ...BOTH, localOutcome: 'queue_full' }, 'local'],
  ['both, auto, queue full, circuit open', { requested: 'auto', ...BOTH, localOutcome: 'queue_full', bedrockAvailable: false }, 'local'],
  ['both, auto, queue full, needs logprobs', { requested: 'auto', ...BOTH, localOutcome: 'queue_full', bedrockCompatible: false }, 'local'],
  [
    'both, bedrock, needs logprobs',
    { requested: 'bedrock', ...BOTH, bedrockCompatible: false },
    { code: 'invalid_request', status: 400, message: /no logprobs/ },
  ],
  ['both, bedrock, circuit open: still Bedrock (fails fast there)', { requested: 'bedrock', ...BOTH, bedrockAvailable: false }, 'bedrock'],
  // adapter only on Bedrock
  ['bedrock-only, auto', { requested: 'auto', ...BEDROCK_ONLY }, 'bedrock'],
  ['bedrock-only, bedrock', { requested: 'bedrock', ...BEDROCK_ONLY }, 'bedrock'],
  [
    'bedrock-only, local',
    { requested: 'local', ...BEDROCK_ONLY },
    { code: 'invalid_request', status: 400, message: /"legal" is served only by Bedrock; use route=auto or route=bedrock/ },
  ],
  [
    'bedrock-only, auto, needs logprobs',
    { requested: 'auto', ...BEDROCK_ONLY, bedrockCompatible: false },
    { code: 'invalid_request', status: 400, message: /no logprobs/ },
  ],
  // unknown adapter: never the base model
  ['unknown, auto', { requested: 'auto', ...UNKNOWN }, notFound],
  ['unknown, local', { requested: 'local', ...UNKNOWN }, notFound],
  ['unknown, bedrock', { requested: 'bedrock', ...UNKNOWN }, notFound],
  ['unknown, auto, queue full', { requested: 'auto', ...UNKNOWN, localOutcome: 'queue_full' }, notFound],
];

for (const [name, input, expected] of TABLE) {
  t.test(name, async (t) => {
    const decision = decideRoute(input);
    if (typeof expected === 'string') {
      t.equal(decision, expected);
    } else {
      t.ok(decision instanceof AppError, 'an AppError');
      t.match(decision, expected);
    }
  });
}

t.test('parseRequestedRoute', async (t) => {
  t.equal(parseRequestedRoute(undefined), 'auto');
  t.equal(parseRequestedRoute(''), 'auto');
  for (const route of ['auto', 'local', 'bedrock']) t.equal(parseRequestedRoute(route), route);
  t.throws(() => parseRequestedRoute('cloud'), { code: 'invalid_request', message: /route must be one of auto, local, bedrock; got "cloud"/ });
  t.throws(() => parseRequestedRoute(['auto']), { code: 'invalid_request' });
});
