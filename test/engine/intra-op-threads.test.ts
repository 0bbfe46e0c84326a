/**
 * onnxruntime's intra-op threads: `--threads 0` (the default) means one per core the process may use, passed
 * to onnxruntime as that number, never as 0 (onnxruntime's own default measured 40-50% slower at batch-8
 * decode here), and capped by a container's CPU limit (cgroup v2 cpu.max or v1 CFS quota), which Node's
 * availableParallelism() does not see. The cgroup files are written to a temporary folder.
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { intraOpThreadCount } from '../../src/engine/model/ort.js';
import { cgroupCpuLimit } from '../../src/engine/model/cpu-limit.js';
import { ModelRunner } from '../../src/engine/model/model-runner.js';

function cgroupRoot(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'cgroup-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), `${text}\n`);
  }
  return root;
}

t.test('0 or unset is one thread per usable core, given explicitly; a set count is kept', async (t) => {
  t.equal(intraOpThreadCount(0, null), availableParallelism());
  t.equal(intraOpThreadCount(undefined, null), availableParallelism());
  t.equal(intraOpThreadCount(3, 1), 3, 'an explicit count wins over the CPU limit');
  t.equal(intraOpThreadCount(0, 1), 1, 'a container limit of one core caps the default');
  t.equal(intraOpThreadCount(0, 100000), availableParallelism(), 'a limit above the host has no effect');
});

t.test("the host runner's session options never leave the count to onnxruntime", async (t) => {
  t.equal(ModelRunner.sessionOptions(['cpu'], 0).intraOpNumThreads, intraOpThreadCount(0));
  t.ok(ModelRunner.sessionOptions(['cpu']).intraOpNumThreads! >= 1);
  t.equal(ModelRunner.sessionOptions(['cpu'], 1).intraOpNumThreads, 1);
});

t.test('cgroup v2: cpu.max of the process cgroup, else of the mount root; "max" is no limit', async (t) => {
  t.equal(cgroupCpuLimit(cgroupRoot({ 'kubepods/pod1/cpu.max': '250000 100000' }), '0::/kubepods/pod1'), 3, '2.5 cores round up to 3');
  t.equal(cgroupCpuLimit(cgroupRoot({ 'cpu.max': '50000 100000' }), '0::/'), 1, 'half a core is still one thread');
  t.equal(cgroupCpuLimit(cgroupRoot({ 'cpu.max': '200000 100000' }), '0::/host/path/not/mounted'), 2, 'namespaced mount: the root');
  t.equal(cgroupCpuLimit(cgroupRoot({ 'cpu.max': 'max 100000' }), '0::/'), null);
});

t.test('cgroup v1: cfs quota over period; -1 is no limit; no cgroup files, no limit', async (t) => {
  const v1 = '4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/';
  t.equal(cgroupCpuLimit(cgroupRoot({ 'cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '400000', 'cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000' }), v1), 4);
  t.equal(cgroupCpuLimit(cgroupRoot({ 'cpu/cpu.cfs_quota_us': '150000', 'cpu/cpu.cfs_period_us': '100000' }), '1:cpu:/elsewhere'), 2);
  t.equal(cgroupCpuLimit(cgroupRoot({ 'cpu/cpu.cfs_quota_us': '-1', 'cpu/cpu.cfs_period_us': '100000' }), '1:cpu:/'), null);
  t.equal(cgroupCpuLimit(cgroupRoot({}), ''), null);
  t.equal(cgroupCpuLimit(cgroupRoot({}), v1), null);
});
