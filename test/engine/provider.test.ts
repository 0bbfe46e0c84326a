/** Execution provider choice: an unavailable provider falls back to CPU with a log line. */
import t from 'tap';
import { Engine } from '../../src/engine/engine.js';
import { engineOptions, greedyRequest, reference } from '../helpers/engine.js';

t.test('webgpu (no GPU here) falls back to cpu, and says so', async (t) => {
  const lines: Array<{ obj: object; msg?: string }> = [];
  const log = { info: () => undefined, warn: (obj: object, msg?: string) => lines.push({ obj, msg }) };
  const engine = await Engine.load(engineOptions({ executionProviders: ['webgpu'] }), log);
  t.teardown(() => engine.close());
  t.equal(engine.provider, 'cpu');
  t.ok(
    lines.some((l) => /webgpu is unavailable/.test(l.msg ?? '')),
    'a log line names the provider that failed',
  );
  t.ok(
    lines.some((l) => /falling back to cpu/.test(l.msg ?? '')),
    'a log line says it falls back to cpu',
  );
  const result = await engine.generate(greedyRequest(reference.cases[0]));
  t.same(result.tokenIds, reference.cases[0].greedy_token_ids, 'and still serves correctly');
});
