/**
 * Every YAML file under deploy/ parses, and the Kubernetes manifests fit together: probes,
 * resources, non-root, env config the server knows, adapters on a ReadWriteMany volume at
 * ADAPTERS_DIR, HPA on the queue-depth Pods metric that prometheus-adapter serves, PDB/Service/
 * PodMonitor selectors that match the Deployment's pods, the Ingress hashing on the adapter. The inference-gateway
 * set-up in deploy/gateway/ has its own test (schemas.test.ts), and is left out of the server's checks here.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, posix, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { SETTINGS } from '../../src/config.js';
import { parseDockerfile, stageSteps } from './fixtures/dockerfile.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');

// Loose shapes: the checks below say what must be there.
type Obj = Record<string, any>;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });
}

interface Doc {
  file: string;
  body: Obj;
}

const files = yamlFiles(DEPLOY);
const docs: Doc[] = [];
const parseProblems: string[] = [];
for (const file of files) {
  const rel = relative(DEPLOY, file).split(sep).join('/');
  for (const d of parseAllDocuments(readFileSync(file, 'utf8'), { prettyErrors: true })) {
    for (const e of [...d.errors, ...d.warnings]) parseProblems.push(`${rel}: ${e.message}`);
    const body = d.toJS() as unknown;
    if (body !== null && body !== undefined) docs.push({ file: rel, body: body as Obj });
  }
}
const manifests = docs.filter((d) => typeof d.body.kind === 'string' && d.body.kind !== 'Kustomization' && !d.file.startsWith('gateway/'));
const ofKind = (kind: string) => manifests.filter((d) => d.body.kind === kind).map((d) => d.body);
const one = (kind: string): Obj => {
  const list = ofKind(kind);
  if (list.length !== 1) throw new Error(`expected one ${kind}, found ${list.length}`);
  return list[0];
};

/** matchLabels selects the labels (every key/value present). */
function selects(matchLabels: Obj | undefined, labels: Obj | undefined): boolean {
  if (!matchLabels || Object.keys(matchLabels).length === 0) return false;
  return Object.entries(matchLabels).every(([k, v]) => labels?.[k] === v);
}

t.test('every YAML file under deploy/ parses', async (t) => {
  t.ok(files.length >= 8, `${files.length} files`);
  t.same(parseProblems, [], 'no YAML errors or warnings');
  for (const d of docs) t.type(d.body, 'object', `${d.file}: a mapping`);
  for (const d of manifests) {
    t.type(d.body.apiVersion, 'string', `${d.file}: apiVersion`);
    t.type(d.body.metadata?.name, 'string', `${d.file}: metadata.name`);
    t.notOk(d.body.metadata?.namespace, `${d.file}: no hard-coded namespace (kustomization sets it)`);
  }
});

t.test('kustomization lists every top-level manifest and names the image', async (t) => {
  const k = docs.find((d) => d.file === 'kustomization.yaml')?.body;
  t.ok(k, 'deploy/kustomization.yaml');
  const topLevel = files.map((f) => relative(DEPLOY, f).split(sep).join('/')).filter((f) => !f.includes('/') && f !== 'kustomization.yaml');
  t.same([...k!.resources].sort(), topLevel.sort(), 'resources = the top-level manifest files');
  const deployment = one('Deployment');
  const images = new Set<string>(k!.images.map((i: Obj) => i.name));
  for (const c of [...deployment.spec.template.spec.containers, ...(deployment.spec.template.spec.initContainers ?? [])]) {
    t.ok(images.has(c.image), `container ${c.name}: image "${c.image}" is set by the kustomization`);
  }
});

t.test('Deployment: probes, resources, non-root, env config, adapters volume', async (t) => {
  const dep = one('Deployment');
  t.equal(dep.apiVersion, 'apps/v1');
  const pod = dep.spec.template;
  t.ok(selects(dep.spec.selector.matchLabels, pod.metadata.labels), 'selector matches the pod labels');
  const containers: Obj[] = pod.spec.containers;
  const server = containers.find((c) => c.ports?.length);
  t.ok(server, 'a container with ports');
  const port = server!.ports[0];
  const portOf = (p: string | number) => (typeof p === 'number' ? p : server!.ports.find((x: Obj) => x.name === p)?.containerPort);

  // Probes.
  t.equal(server!.readinessProbe?.httpGet?.path, '/readyz', 'readiness on /readyz');
  t.equal(server!.livenessProbe?.httpGet?.path, '/healthz', 'liveness on /healthz');
  t.equal(portOf(server!.readinessProbe.httpGet.port), port.containerPort, 'readiness probe port is the server port');
  t.equal(portOf(server!.livenessProbe.httpGet.port), port.containerPort, 'liveness probe port is the server port');

  // Resources on every container, init containers included.
  for (const c of [...containers, ...(pod.spec.initContainers ?? [])]) {
    t.ok(c.resources?.requests?.cpu, `${c.name}: cpu request`);
    t.ok(c.resources?.requests?.memory, `${c.name}: memory request`);
    t.ok(c.resources?.limits?.memory, `${c.name}: memory limit`);
    t.equal(c.securityContext?.allowPrivilegeEscalation, false, `${c.name}: no privilege escalation`);
    t.same(c.securityContext?.capabilities?.drop, ['ALL'], `${c.name}: drops all capabilities`);
    t.equal(c.securityContext?.readOnlyRootFilesystem, true, `${c.name}: read-only root filesystem`);
    t.not(c.securityContext?.runAsUser, 0, `${c.name}: not root`);
    t.not(c.securityContext?.runAsNonRoot, false, `${c.name}: runAsNonRoot not turned off`);
  }

  // Non-root, and the same uid as the image's USER.
  const psc = pod.spec.securityContext;
  t.equal(psc.runAsNonRoot, true, 'pod runAsNonRoot');
  t.ok(Number.isInteger(psc.runAsUser) && psc.runAsUser > 0, 'pod runAsUser is a non-root uid');
  const df = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
  const user = stageSteps(df, df.stages.length - 1)
    .filter((s) => s.kind === 'user')
    .pop();
  t.equal(String(psc.runAsUser), user && user.kind === 'user' ? user.user.split(':')[0] : undefined, "runAsUser is the Dockerfile's USER");

  // Env config from the ConfigMap, only settings the server knows.
  const cm = one('ConfigMap');
  t.ok(
    server!.envFrom?.some((e: Obj) => e.configMapRef?.name === cm.metadata.name),
    'envFrom the ConfigMap',
  );
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(cm.data as Obj)) if (/^[A-Z][A-Z0-9_]*$/.test(k)) env[k] = v as string;
  for (const e of server!.env ?? []) env[e.name] = e.value;
  t.equal(env.HOST, '0.0.0.0', 'HOST=0.0.0.0');
  t.equal(Number(env.PORT), port.containerPort, 'PORT = containerPort');
  const serverSource = readFileSync(join(ROOT, 'src', 'server.ts'), 'utf8');
  const known = new Set<string>([...SETTINGS.map((s) => s.env), 'CONFIG_FILE', ...[...serverSource.matchAll(/process\.env\.([A-Z0-9_]+)/g)].map((m) => m[1])]);
  for (const name of Object.keys(env)) t.ok(known.has(name), `${name} is a setting the server reads`);
  for (const [k, v] of Object.entries(env)) t.type(v, 'string', `${k} is a string (quoted in YAML)`);

  // Volumes: where ADAPTERS_DIR, CACHE_DIR and the config file are.
  const mounts: Obj[] = server!.volumeMounts ?? [];
  const volumes: Obj[] = pod.spec.volumes ?? [];
  const volumeAt = (path: string) => {
    const m = mounts.filter((x) => path === x.mountPath || path.startsWith(`${x.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    return m ? { mount: m, volume: volumes.find((v) => v.name === m.name) } : null;
  };
  t.ok(env.ADAPTERS_DIR, 'ADAPTERS_DIR set');
  const adapters = volumeAt(env.ADAPTERS_DIR);
  t.equal(adapters?.mount.mountPath, env.ADAPTERS_DIR, 'a volume is mounted at ADAPTERS_DIR');
  const claim = adapters?.volume?.persistentVolumeClaim?.claimName;
  t.ok(claim, 'the adapters volume is a PVC');
  const pvc = ofKind('PersistentVolumeClaim').find((p) => p.metadata.name === claim);
  t.ok(pvc, `PVC ${claim} is in deploy/`);
  t.ok(pvc?.spec.accessModes.includes('ReadWriteMany'), 'ReadWriteMany, shared by all replicas');
  t.notOk(adapters?.mount.readOnly, 'writable (the admin API registers adapters there)');
  for (const ic of pod.spec.initContainers ?? []) {
    t.equal(ic.image, server!.image, `${ic.name} uses the server image`);
    t.ok(
      (ic.volumeMounts ?? []).some((m: Obj) => volumes.find((v) => v.name === m.name)?.persistentVolumeClaim?.claimName === claim),
      `${ic.name} mounts the adapters PVC`,
    );
  }
  if (env.CACHE_DIR) {
    const cache = volumeAt(env.CACHE_DIR);
    t.ok(cache?.volume?.emptyDir || cache?.volume?.persistentVolumeClaim, 'CACHE_DIR is on a writable volume (root filesystem is read-only)');
  }
  t.ok(volumeAt('/tmp')?.volume?.emptyDir, '/tmp is writable');
  if (env.CONFIG_FILE) {
    const cfg = volumeAt(env.CONFIG_FILE);
    t.equal(cfg?.volume?.configMap?.name, cm.metadata.name, 'CONFIG_FILE comes from the ConfigMap');
    const key: string = cfg?.volume?.configMap?.items?.find((i: Obj) => posix.join(cfg.mount.mountPath, i.path) === env.CONFIG_FILE)?.key ?? '';
    t.type(cm.data[key], 'string', `ConfigMap key "${key}" is the config file`);
    t.doesNotThrow(() => JSON.parse(cm.data[key] as string), 'the config file is JSON');
  }
  // Draining: the grace period covers preStop + the server's drain deadline.
  const drainMs = Number(env.DRAIN_DEADLINE_MS ?? 30000);
  t.ok(pod.spec.terminationGracePeriodSeconds * 1000 > drainMs, 'terminationGracePeriodSeconds > drain deadline');
  t.equal(dep.spec.strategy?.rollingUpdate?.maxUnavailable, 0, 'rolling updates keep capacity');
});

t.test('Service selects the Deployment pods and targets the server port', async (t) => {
  const dep = one('Deployment');
  const svc = one('Service');
  const pod = dep.spec.template;
  t.ok(selects(svc.spec.selector, pod.metadata.labels), 'Service selector matches the pod labels');
  const server = pod.spec.containers.find((c: Obj) => c.ports?.length);
  for (const p of svc.spec.ports) {
    const target = p.targetPort;
    const ok = typeof target === 'number' ? server.ports.some((x: Obj) => x.containerPort === target) : server.ports.some((x: Obj) => x.name === target);
    t.ok(ok, `port ${p.name}: targetPort ${target} is a container port`);
  }
});

t.test('HPA scales the Deployment on the queue-depth Pods metric that prometheus-adapter serves', async (t) => {
  const dep = one('Deployment');
  const hpa = one('HorizontalPodAutoscaler');
  t.equal(hpa.apiVersion, 'autoscaling/v2');
  t.match(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: dep.metadata.name });
  t.ok(hpa.spec.minReplicas >= 2, 'at least 2 replicas');
  t.ok(hpa.spec.maxReplicas > hpa.spec.minReplicas);
  const pods = hpa.spec.metrics.filter((m: Obj) => m.type === 'Pods');
  t.equal(pods.length, 1, 'one Pods metric');
  const metric = pods[0].pods;
  t.equal(metric.metric.name, 'lora_queue_depth');
  t.equal(metric.target.type, 'AverageValue');
  t.ok(Number(metric.target.averageValue) > 0);
  const cm = one('ConfigMap');
  if (cm.data.MAX_QUEUE) t.ok(Number(metric.target.averageValue) < Number(cm.data.MAX_QUEUE), 'target below MAX_QUEUE');

  const values = docs.find((d) => d.file === 'monitoring/prometheus-adapter-values.yaml')?.body;
  t.ok(values, 'prometheus-adapter values');
  const rule = values!.rules.custom.find((r: Obj) => r.name?.as === metric.metric.name);
  t.ok(rule, 'a prometheus-adapter rule exposes the metric');
  t.match(rule.seriesQuery, metric.metric.name);
  t.same(rule.resources.overrides, { namespace: { resource: 'namespace' }, pod: { resource: 'pod' } }, 'per pod, as a Pods metric needs');
  t.match(rule.metricsQuery, /<<\.GroupBy>>/);

  const pm = one('PodMonitor');
  t.ok(selects(pm.spec.selector.matchLabels, dep.spec.template.metadata.labels), 'PodMonitor selects the server pods');
  const ports = dep.spec.template.spec.containers.flatMap((c: Obj) => (c.ports ?? []).map((p: Obj) => p.name));
  t.ok(
    pm.spec.podMetricsEndpoints.every((e: Obj) => ports.includes(e.port) && e.path === '/metrics'),
    'scrapes /metrics on a named port',
  );
});

t.test('PodDisruptionBudget selects the Deployment pods and allows a drain', async (t) => {
  const dep = one('Deployment');
  const pdb = one('PodDisruptionBudget');
  const hpa = one('HorizontalPodAutoscaler');
  t.equal(pdb.apiVersion, 'policy/v1');
  t.ok(selects(pdb.spec.selector.matchLabels, dep.spec.template.metadata.labels), 'PDB selector matches the pod labels');
  t.same(pdb.spec.selector.matchLabels, dep.spec.selector.matchLabels, 'same labels as the Deployment selector');
  if (pdb.spec.minAvailable !== undefined) t.ok(pdb.spec.minAvailable < hpa.spec.minReplicas, 'minAvailable below minReplicas');
  else t.ok(Number(pdb.spec.maxUnavailable) >= 1, 'maxUnavailable at least 1');
});

t.test('Ingress hashes on the adapter and routes to the Service', async (t) => {
  const svc = one('Service');
  const ing = one('Ingress');
  t.equal(ing.apiVersion, 'networking.k8s.io/v1');
  t.match(ing.metadata.annotations['nginx.ingress.kubernetes.io/upstream-hash-by'], /\$arg_adapter/);
  t.equal(ing.metadata.annotations['nginx.ingress.kubernetes.io/proxy-buffering'], 'off', 'no buffering: SSE streams token by token');
  for (const rule of ing.spec.rules) {
    for (const p of rule.http.paths) {
      t.equal(p.backend.service.name, svc.metadata.name);
      t.ok(
        svc.spec.ports.some((sp: Obj) => sp.name === p.backend.service.port.name || sp.port === p.backend.service.port.number),
        'a Service port',
      );
    }
  }
});

t.test('ServiceAccount exists and the Deployment uses it', async (t) => {
  const sa = one('ServiceAccount');
  t.equal(one('Deployment').spec.template.spec.serviceAccountName, sa.metadata.name);
});
