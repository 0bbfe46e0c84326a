/**
 * The load shedder's rules (src/security/load-shed.ts): samples taken before the engine is attached are
 * discarded, and so is the first one after, with the histogram and smoothing reset; the event-loop delay
 * counts only for intervals with traffic, so an idle server never sheds on it. First through HTTP the way
 * the bug was seen (a model build's stall, then the first requests after /readyz turned 200 got 503
 * overloaded), then on the class with an injected probe.
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { attachEngine } from '../../src/app.js';
import { LoadShedder, type LoadSample } from '../../src/security/load-shed.js';
import { loadFixtureEngine } from '../helpers/engine.js';
import { buildTestApp, clientFor } from '../helpers/app.js';

const MiB = 2 ** 20;
const calm: LoadSample = { eventLoopDelayMs: 0, heapUsedBytes: 100 * MiB, heapLimitBytes: 4096 * MiB, rssBytes: 300 * MiB };
const stalled: LoadSample = { ...calm, eventLoopDelayMs: 5000 };
const busy = (ms: number) => {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    /* a synchronous stall, as a model build is */
  }
};

t.test('an idle server, in the first second after ready, answers every request (a stall before the engine was attached)', async (t) => {
  const engine = await loadFixtureEngine();
  const app = await buildTestApp(null, (c) => {
    c.limits.shedEventLoopDelayMs = 400;
  });
  t.teardown(async () => {
    await app.close();
    await engine.close();
  });
  const shedder = app.security.shedder; // sampling every 500 ms since the app was built, as in the server
  await sleep(200);
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 503, 'not ready yet');
  busy(2000); // the model build: 2 s of event-loop delay, 5x the threshold
  attachEngine(app, clientFor(engine));
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 200, 'ready');
  const codes: number[] = [];
  const until = Date.now() + 1000;
  while (Date.now() < until) {
    const res = await app.inject({ method: 'POST', url: '/v1/generate', payload: { prompt: 'Hi', max_tokens: 1 } });
    codes.push(res.statusCode);
    await sleep(20);
  }
  t.ok(codes.length >= 5, `${codes.length} requests`);
  t.same(
    codes.map((c, i) => `${i}: ${c}`).filter((c) => !c.endsWith(' 200')),
    [],
    `every request answered 200 (shedder: ${shedder.reason ?? 'not shedding'}, smoothed ${shedder.smoothedDelayMs.toFixed(0)} ms)`,
  );
  t.equal(shedder.requestsInFlight, 0, 'every request counted as traffic is done');
});

t.test('a stall while serving sheds, however the sampling tick and the delay monitor are ordered after it', async (t) => {
  const engine = await loadFixtureEngine();
  const app = await buildTestApp(engine, (c) => {
    c.limits.shedEventLoopDelayMs = 400;
  });
  t.teardown(async () => {
    await app.close();
    await engine.close();
  });
  const shedder = app.security.shedder;
  shedder.stop();
  shedder.start(50); // a tick every 50 ms often runs before the monitor's timer after a stall
  await sleep(200);
  const done = shedder.requestStarted(); // a request in flight through the stall, as the gate counts one
  busy(1500);
  for (let i = 0; i < 10 && !shedder.reason; i++) await sleep(20);
  t.match(shedder.reason, /event-loop delay \d+ ms is above 400 ms/, `shedding: ${shedder.reason}`);
  done();
  shedder.stop();
});

t.test('samples taken while not active are discarded', async (t) => {
  const active = false;
  const shedder = new LoadShedder({ eventLoopDelayMs: 1000, heapUsedPercent: 90, rssMb: 0 }, () => active);
  shedder.probe = () => stalled;
  shedder.requestStarted();
  for (let i = 0; i < 3; i++) t.equal(shedder.update(), null);
  t.equal(shedder.smoothedDelayMs, 0);
  shedder.probe = () => ({ ...calm, heapUsedBytes: 4000 * MiB });
  t.equal(shedder.update(), null, 'nothing sheds before the engine is attached');
});

t.test('becoming active: the first sample is discarded and the average starts from zero', async (t) => {
  let active = false;
  const shedder = new LoadShedder({ eventLoopDelayMs: 1000, heapUsedPercent: 0, rssMb: 0 }, () => active);
  const done = shedder.requestStarted(); // traffic throughout
  shedder.probe = () => calm;
  shedder.update();
  active = true;
  shedder.probe = () => stalled; // the interval that held the model build
  t.equal(shedder.update(), null, 'first sample after activation: discarded');
  t.equal(shedder.smoothedDelayMs, 0);
  t.match(shedder.update(), /event-loop delay 2500 ms is above 1000 ms/, 'the next one counts');
  // Deactivated (an engine reload) and active again: the same reset.
  active = false;
  t.equal(shedder.update(), null);
  active = true;
  t.equal(shedder.update(), null, 'first sample after activation again: discarded');
  t.equal(shedder.smoothedDelayMs, 0);
  done();
});

t.test('an idle server never sheds on the delay signal', async (t) => {
  const shedder = new LoadShedder({ eventLoopDelayMs: 1000, heapUsedPercent: 0, rssMb: 0 });
  shedder.probe = () => stalled;
  shedder.update(); // first active sample
  for (let i = 0; i < 5; i++) t.equal(shedder.update(), null, `idle interval ${i}: a stall nobody waited on`);
  t.equal(shedder.smoothedDelayMs, 0);

  // Traffic: a request arrived in the interval (done by now).
  shedder.requestStarted()();
  t.match(shedder.update(), /event-loop delay 2500 ms/, 'a request arrived in the interval: the delay counts');
  shedder.requestStarted()();
  t.match(shedder.update(), /event-loop delay 3750 ms/);
  // Traffic stops: the next interval clears the delay reason and the average decays.
  t.equal(shedder.update(), null, 'idle again: not shedding');
  t.equal(shedder.smoothedDelayMs, 1875);
  t.equal(shedder.update(), null);
  t.equal(shedder.smoothedDelayMs, 937.5);
});

t.test('a request in flight is traffic across intervals until it is done', async (t) => {
  const shedder = new LoadShedder({ eventLoopDelayMs: 1000, heapUsedPercent: 0, rssMb: 0 });
  shedder.probe = () => stalled;
  shedder.update();
  const done = shedder.requestStarted();
  shedder.update();
  t.match(shedder.update(), /event-loop delay/, 'a long stream keeps the interval busy');
  t.equal(shedder.requestsInFlight, 1);
  done();
  done();
  t.equal(shedder.requestsInFlight, 0, 'done is idempotent');
  t.equal(shedder.update(), null);
});

t.test('heap and RSS are states: they shed with or without traffic', async (t) => {
  const shedder = new LoadShedder({ eventLoopDelayMs: 1000, heapUsedPercent: 90, rssMb: 1024 });
  shedder.probe = () => calm;
  shedder.update();
  shedder.probe = () => ({ ...calm, heapUsedBytes: 3900 * MiB });
  t.match(shedder.update(), /heap use 95% is above 90%/);
  shedder.probe = () => ({ ...calm, rssBytes: 2048 * MiB });
  t.match(shedder.update(), /resident memory 2048 MiB is above 1024 MiB/);
  shedder.probe = () => calm;
  t.equal(shedder.update(), null);
});
