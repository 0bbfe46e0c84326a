import t from 'tap';
import { CircuitBreaker } from '../../src/fallback/circuit-breaker.js';
import { LLAMA_ARN, request, startHarness } from './harness.js';

function breakerAt(clock: { now: number }) {
  return new CircuitBreaker({ failureThreshold: 3, cooldownMs: 1_000, now: () => clock.now });
}

t.test('opens after N consecutive failures, half-opens after the cool-down', async (t) => {
  const clock = { now: 5_000 };
  const breaker = breakerAt(clock);
  for (let i = 0; i < 2; i++) breaker.recordFailure(breaker.tryAcquire()!);
  t.equal(breaker.state, 'closed');
  breaker.recordFailure(breaker.tryAcquire()!);
  t.same(breaker.snapshot(), { state: 'open', consecutiveFailures: 3, openUntil: 6_000 });
  t.equal(breaker.tryAcquire(), null, 'refuses while open');
  t.equal(breaker.msUntilProbe(), 1_000);

  clock.now = 6_000;
  t.equal(breaker.state, 'half-open');
  const probe = breaker.tryAcquire();
  t.same(probe, { probe: true });
  t.equal(breaker.tryAcquire(), null, 'one probe at a time');
  breaker.recordSuccess(probe!);
  t.same(breaker.snapshot(), { state: 'closed', consecutiveFailures: 0 });
});

t.test('a failed probe opens the circuit for another cool-down', async (t) => {
  const clock = { now: 0 };
  const breaker = breakerAt(clock);
  for (let i = 0; i < 3; i++) breaker.recordFailure(breaker.tryAcquire()!);
  clock.now = 1_000;
  breaker.recordFailure(breaker.tryAcquire()!);
  t.same(breaker.snapshot(), { state: 'open', consecutiveFailures: 4, openUntil: 2_000 });
});

t.test('a success resets the count; a released probe frees the slot without a verdict', async (t) => {
  const clock = { now: 0 };
  const breaker = breakerAt(clock);
  breaker.recordFailure(breaker.tryAcquire()!);
  breaker.recordFailure(breaker.tryAcquire()!);
  breaker.recordSuccess(breaker.tryAcquire()!);
  breaker.recordFailure(breaker.tryAcquire()!);
  t.equal(breaker.state, 'closed');
  t.equal(breaker.snapshot().consecutiveFailures, 1);

  breaker.recordFailure(breaker.tryAcquire()!);
  breaker.recordFailure(breaker.tryAcquire()!);
  clock.now = 1_000;
  const probe = breaker.tryAcquire()!;
  breaker.release(probe);
  t.equal(breaker.state, 'half-open');
  t.ok(breaker.tryAcquire()?.probe, 'the next call may probe');
});

t.test('a late failure of a call started while closed does not take the probe slot', async (t) => {
  const clock = { now: 0 };
  const breaker = breakerAt(clock);
  const longCall = breaker.tryAcquire()!;
  for (let i = 0; i < 3; i++) breaker.recordFailure(breaker.tryAcquire()!);
  clock.now = 1_000;
  const probe = breaker.tryAcquire()!;
  breaker.release(longCall);
  t.equal(breaker.tryAcquire(), null, 'the probe is still in flight');
  breaker.recordSuccess(probe);
  t.equal(breaker.state, 'closed');
});

t.test('through BedrockFallback: opens, refuses without calling, shows in status, recovers', async (t) => {
  const { fake, fallback, clock } = await startHarness(t, {
    extraTargets: { flaky: { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', maxRetries: 0 } },
  });
  fake.setDefault({ error: { type: 'ServiceUnavailableException' } });
  for (let i = 0; i < 3; i++) {
    await t.rejects(fallback.generate(request({ adapter: 'flaky' })), { code: 'upstream_unavailable' });
  }
  t.equal(fake.requests.length, 3);
  t.same(
    fallback.status().find((s) => s.adapter === 'flaky'),
    {
      adapter: 'flaky',
      modelId: LLAMA_ARN,
      family: 'llama',
      region: 'us-east-1',
      circuit: 'open',
      consecutiveFailures: 3,
      openUntil: new Date(clock.now + 10_000).toISOString(),
    },
  );
  t.equal(fallback.isAvailable('flaky'), false);
  t.equal(fallback.isAvailable('sales'), true, 'circuits are per target');

  await t.rejects(fallback.generate(request({ adapter: 'flaky' })), {
    code: 'upstream_unavailable',
    retryAfter: 10,
    message: /paused for a cool-down/,
  });
  const streamed = fallback.stream(request({ adapter: 'flaky' }));
  await t.rejects(streamed.next(), { code: 'upstream_unavailable' });
  t.equal(fake.requests.length, 3, 'no call while open');
  t.equal(fallback.counters().byAdapter.flaky.circuitRejections, 2);

  clock.now += 10_000;
  t.equal(fallback.status().find((s) => s.adapter === 'flaky')?.circuit, 'half-open');
  fake.setDefault({});
  const result = await fallback.generate(request({ adapter: 'flaky' }));
  t.equal(result.finishReason, 'stop');
  t.match(
    fallback.status().find((s) => s.adapter === 'flaky'),
    { circuit: 'closed', consecutiveFailures: 0 },
  );
  t.notOk('openUntil' in fallback.status().find((s) => s.adapter === 'flaky')!);
});

t.test('through BedrockFallback: only one probe while half-open; a failed probe re-opens', async (t) => {
  const { fake, fallback, clock } = await startHarness(t, {
    extraTargets: { flaky: { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', maxRetries: 0 } },
  });
  fake.setDefault({ error: { type: 'InternalServerException' } });
  for (let i = 0; i < 3; i++) await fallback.generate(request({ adapter: 'flaky' })).catch(() => {});
  clock.now += 10_000;
  fake.setDefault({ delayMs: 100, error: { type: 'InternalServerException' } });
  const probe = fallback.generate(request({ adapter: 'flaky' }));
  await t.rejects(fallback.generate(request({ adapter: 'flaky' })), { message: /paused/ }, 'second caller refused');
  await t.rejects(probe, { code: 'upstream_error' });
  t.match(
    fallback.status().find((s) => s.adapter === 'flaky'),
    { circuit: 'open', consecutiveFailures: 4 },
  );
});

t.test('throttling and invalid requests do not open the circuit', async (t) => {
  const { fake, fallback } = await startHarness(t, {
    extraTargets: { busy: { modelId: LLAMA_ARN, family: 'llama', region: 'us-east-1', maxRetries: 0 } },
  });
  fake.setDefault({ error: { type: 'ThrottlingException' } });
  for (let i = 0; i < 5; i++) await fallback.generate(request({ adapter: 'busy' })).catch(() => {});
  fake.setDefault({ error: { type: 'ValidationException' } });
  for (let i = 0; i < 5; i++) await fallback.generate(request({ adapter: 'busy' })).catch(() => {});
  t.match(
    fallback.status().find((s) => s.adapter === 'busy'),
    { circuit: 'closed' },
  );
  t.equal(fake.requests.length, 10);
});
