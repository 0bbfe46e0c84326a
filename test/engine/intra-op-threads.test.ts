/**
 * onnxruntime's intra-op threads: `--threads 0` (the default) means one per core, passed to onnxruntime as
 * that number, never as 0 (onnxruntime's own default measured 40-50% slower at batch-8 decode here).
 */
import t from 'tap';
import { availableParallelism } from 'node:os';
import { intraOpThreadCount } from '../../src/engine/model/ort.js';
import { ModelRunner } from '../../src/engine/model/model-runner.js';

t.test('0 or unset is one thread per core, given explicitly; a set count is kept', async (t) => {
  t.equal(intraOpThreadCount(0), availableParallelism());
  t.equal(intraOpThreadCount(undefined), availableParallelism());
  t.equal(intraOpThreadCount(3), 3);
});

t.test("the host runner's session options never leave the count to onnxruntime", async (t) => {
  t.equal(ModelRunner.sessionOptions(['cpu'], 0).intraOpNumThreads, availableParallelism());
  t.equal(ModelRunner.sessionOptions(['cpu']).intraOpNumThreads, availableParallelism());
  t.equal(ModelRunner.sessionOptions(['cpu'], 1).intraOpNumThreads, 1);
});
