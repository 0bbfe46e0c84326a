/**
 * Safe by default: the environment a deploy/ pod's server container really gets (the image's ENV, then
 * the ConfigMap through envFrom, then the container's own env, in Kubernetes' order of precedence) must
 * not open an unauthenticated server on its non-loopback HOST. The keys Secret and the config file are
 * materialised in a temporary directory at the paths the pod mounts them, and the real server is started
 * with that environment: with a Secret that holds no keys it refuses to start (exit 2).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config.js';
import { exposureProblem, isLoopbackHost, sha256Hex } from '../../src/security/keys.js';
import { cleanBaseEnv, parseDockerfile, resolveFrom, stageSteps, type Stage } from './fixtures/dockerfile.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
type Obj = Record<string, any>;

/** The image's ENV: the final stage's, after those of the stages it is built FROM (default build arguments). */
function imageEnv(): Record<string, string> {
  const df = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
  const chain: Stage[] = [];
  for (let s: Stage | null = df.stages[df.stages.length - 1]; s; s = resolveFrom(df, s).stage) chain.unshift(s);
  const env: Record<string, string> = {};
  for (const s of chain) for (const step of stageSteps(df, s.index)) if (step.kind === 'env') Object.assign(env, step.vars);
  return env;
}

function manifests(): Obj[] {
  const out: Obj[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(name)) for (const d of parseAllDocuments(readFileSync(p, 'utf8'))) out.push(d.toJS() as Obj);
    }
  };
  walk(join(ROOT, 'deploy'));
  return out.filter((d) => d && typeof d.kind === 'string');
}

const docs = manifests();
const deployment = docs.find((d) => d.kind === 'Deployment')!;
const pod = deployment.spec.template.spec;
const server: Obj = pod.containers.find((c: Obj) => c.ports?.length);
const configMaps = new Map<string, Obj>(docs.filter((d) => d.kind === 'ConfigMap').map((d) => [d.metadata.name, d]));

/** Image ENV < envFrom (in order) < env: what the server container's process sees. */
function podEnv(): Record<string, string> {
  const env = { ...imageEnv() };
  for (const from of server.envFrom ?? []) {
    const cm = configMaps.get(from.configMapRef?.name);
    if (!cm) throw new Error(`envFrom names ConfigMap ${from.configMapRef?.name}, which deploy/ does not hold`);
    for (const [k, v] of Object.entries(cm.data ?? {})) if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) env[k] = String(v);
  }
  for (const e of server.env ?? []) {
    if (e.valueFrom) throw new Error(`env ${e.name} comes from ${JSON.stringify(e.valueFrom)}: this test cannot resolve it`);
    env[e.name] = String(e.value ?? '');
  }
  return env;
}

/**
 * Writes what the pod's configMap and secret volumes would hold under `root`, and returns `env` with every
 * value that names a path under one of the server's mounts moved under `root`.
 */
function materialise(env: Record<string, string>, root: string, secretFiles: Record<string, string>): Record<string, string> {
  const volumes = new Map<string, Obj>(pod.volumes.map((v: Obj) => [v.name, v]));
  const mounts: Obj[] = server.volumeMounts ?? [];
  for (const m of mounts) {
    const v = volumes.get(m.name)!;
    const dir = join(root, m.mountPath);
    mkdirSync(dir, { recursive: true });
    if (v.configMap) {
      const cm = configMaps.get(v.configMap.name)!;
      const items: Obj[] = v.configMap.items ?? Object.keys(cm.data).map((key) => ({ key, path: key }));
      for (const i of items) writeFileSync(join(dir, i.path), String(cm.data[i.key]));
    }
    if (v.secret) for (const [name, text] of Object.entries(secretFiles)) writeFileSync(join(dir, name), text);
  }
  const moved: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    const under = mounts.some((m) => v === m.mountPath || v.startsWith(`${m.mountPath}/`));
    moved[k] = under ? join(root, v) : v;
  }
  return moved;
}

const env = podEnv();

t.test('the pod listens beyond loopback and says explicitly that authentication stays on', async (t) => {
  t.notOk(isLoopbackHost(env.HOST ?? '127.0.0.1'), `HOST=${env.HOST}: reachable from other pods`);
  t.equal(server.env.find((e: Obj) => e.name === 'ALLOW_UNAUTHENTICATED')?.value, 'false', 'the container env sets ALLOW_UNAUTHENTICATED=false');
  t.equal(env.ALLOW_UNAUTHENTICATED, 'false', 'and that is what the process sees');
  t.ok(env.API_KEYS_FILE, 'keys come from API_KEYS_FILE');
  t.ok(
    (server.volumeMounts as Obj[]).some((m) => env.API_KEYS_FILE.startsWith(`${m.mountPath}/`) && pod.volumes.find((v: Obj) => v.name === m.name)?.secret),
    'API_KEYS_FILE is on a Secret volume',
  );
  const image = imageEnv();
  t.not(image.ALLOW_UNAUTHENTICATED, 'true', 'the image does not turn authentication off');
  t.notOk(
    [...configMaps.values()].some((cm) => cm.data?.ALLOW_UNAUTHENTICATED === 'true'),
    'nor a ConfigMap',
  );
});

t.test('the image alone (docker run IMAGE, no keys) is refused; serving without keys is a run-time choice', async (t) => {
  const image = imageEnv();
  const config = loadConfig({ argv: [], env: image });
  t.notOk(isLoopbackHost(config.server.host), 'the image listens on all interfaces');
  t.match(exposureProblem(config), /not loopback, and no API keys are configured/);
  t.equal(exposureProblem(loadConfig({ argv: [], env: { ...image, ALLOW_UNAUTHENTICATED: 'true' } })), null, 'docker run -e ALLOW_UNAUTHENTICATED=true');
});

t.test("the pod's effective environment with a keys Secret", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'pod-env-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const keysName = posix.basename(env.API_KEYS_FILE);

  const withKey = materialise(env, join(root, 'with-key'), { [keysName]: JSON.stringify({ adminKeys: [sha256Hex('admin')] }) });
  t.equal(exposureProblem(loadConfig({ argv: [], env: withKey })), null, 'a Secret with a key: accepted');

  for (const [what, text] of [
    ['an empty keys object', '{}'],
    ['empty key lists', JSON.stringify({ apiKeys: [], adminKeys: [] })],
  ] as const) {
    const podEnv = materialise(env, join(root, what.replace(/\W+/g, '-')), { [keysName]: text });
    t.match(exposureProblem(loadConfig({ argv: [], env: podEnv })), /not loopback, and no API keys are configured/, `a Secret with ${what}: refused`);
  }

  // The real server, started with exactly that environment (the Secret holds no keys): exit 2 before it listens.
  const podEnvNoKeys = materialise(env, join(root, 'real'), { [keysName]: JSON.stringify({ apiKeys: [], adminKeys: [] }) });
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'server.ts')], {
    cwd: ROOT,
    env: { PATH: cleanBaseEnv().PATH ?? '', HOME: dirname(root), ...podEnvNoKeys, PORT: '0' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(run.status, 2, `exit status 2 (stderr: ${run.stderr.slice(-500)})`);
  t.match(run.stderr, /server\.host is 0\.0\.0\.0, which is not loopback, and no API keys are configured/);
  t.notMatch(run.stdout, /listening|Server listening/i, 'it never listened');
});
