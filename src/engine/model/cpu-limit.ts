/**
 * The CPU limit of the container the server runs in (a Kubernetes `resources.limits.cpu`, `docker run --cpus`),
 * in whole cores, from the cgroup the process belongs to: cgroup v2 `cpu.max`, or cgroup v1
 * `cpu.cfs_quota_us` / `cpu.cfs_period_us`. Node's `availableParallelism()` counts the host's cores and ignores
 * such a quota, so an engine sized by it alone starts more onnxruntime threads than it may run at once, and
 * onnxruntime's parallel loops wait on the throttled ones.
 *
 * Inside a container the cgroup file system is usually mounted at the process's own cgroup, while
 * /proc/self/cgroup may name the host's path; both places are looked at, the process's path first.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

function read(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

/** Quota over period, rounded up to whole cores (at least 1); null for no quota or unreadable numbers. */
function cores(quota: number, period: number): number | null {
  if (!(quota > 0) || !(period > 0)) return null;
  return Math.max(1, Math.ceil(quota / period));
}

/**
 * The limit in whole cores, or null when there is none (or no cgroup file system, as on macOS). `root` and
 * `selfCgroup` are for tests: the cgroup mount and the text of /proc/self/cgroup.
 */
export function cgroupCpuLimit(root = '/sys/fs/cgroup', selfCgroup = read('/proc/self/cgroup') ?? ''): number | null {
  const lines = selfCgroup.split('\n').map((line) => line.split(':'));
  const v2Path = lines.find((parts) => parts[0] === '0' && parts[1] === '')?.[2];
  if (v2Path !== undefined) {
    for (const dir of [join(root, v2Path), root]) {
      const max = read(join(dir, 'cpu.max'));
      if (max === null) continue;
      const [quota, period] = max.split(/\s+/);
      return quota === 'max' ? null : cores(Number(quota), Number(period));
    }
  }
  const v1Path = lines.find((parts) => parts[1]?.split(',').includes('cpu'))?.[2];
  if (v1Path !== undefined) {
    for (const mount of [join(root, 'cpu'), join(root, 'cpu,cpuacct')]) {
      for (const dir of [join(mount, v1Path), mount]) {
        const quota = read(join(dir, 'cpu.cfs_quota_us'));
        const period = read(join(dir, 'cpu.cfs_period_us'));
        if (quota !== null && period !== null) return cores(Number(quota), Number(period));
      }
    }
  }
  return null;
}
