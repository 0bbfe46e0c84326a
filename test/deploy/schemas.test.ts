/**
 * Every manifest under deploy/ (the inference-gateway set-up in deploy/gateway/ included) is valid against its
 * schema, offline: the Kubernetes API's own definitions for built-in kinds and the upstream CRD schemas for
 * InferencePool, HTTPRoute, Gateway and PodMonitor (vendored in test/deploy/schemas/, see its README), with
 * unknown fields refused as `kubectl apply --validate=strict` refuses them. The endpoint picker's configuration
 * is checked against its Go type's shape, and the gateway pieces must fit together: the pool selects the
 * server's pods on the server's port and names the picker's Service, the route leads to the pool, the picker
 * scores with LoRA affinity, queue and KV-cache use.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse, parseAllDocuments } from 'yaml';

type Obj = Record<string, any>;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const SCHEMAS = join(ROOT, 'test', 'deploy', 'schemas');
const readJson = (file: string) => JSON.parse(readFileSync(join(SCHEMAS, file), 'utf8')) as Obj;

/** What strict validation means for an OpenAPI schema: closed objects, int-or-string and quantities as the API server reads them. */
function strict(node: unknown, refPrefix: string): unknown {
  if (Array.isArray(node)) return node.map((n) => strict(n, refPrefix));
  if (!node || typeof node !== 'object') return node;
  const src = node as Obj;
  if (src.format === 'int-or-string' || src['x-kubernetes-int-or-string'] === true) return { anyOf: [{ type: 'string' }, { type: 'integer' }] };
  const out: Obj = {};
  for (const [k, v] of Object.entries(src)) {
    if (k === '$ref' && typeof v === 'string') out.$ref = v.replace('#/definitions/', refPrefix);
    else if (k === 'properties' || k === 'definitions') out[k] = Object.fromEntries(Object.entries(v as Obj).map(([name, s]) => [name, strict(s, refPrefix)]));
    else if (k === 'x-kubernetes-validations' || k === 'format') continue;
    else out[k] = strict(v, refPrefix);
  }
  if (out.properties && out.additionalProperties === undefined && src['x-kubernetes-preserve-unknown-fields'] !== true) out.additionalProperties = false;
  return out;
}

const ajv = new Ajv({ strict: false, allErrors: true });
const k8s = readJson('kubernetes-definitions.json');
const definitions = strict(k8s.definitions, 'k8s#/definitions/') as Obj;
// A quantity is a string ("500m", "8Gi") or a number in YAML.
definitions['io.k8s.apimachinery.pkg.api.resource.Quantity'] = { anyOf: [{ type: 'string' }, { type: 'number' }] };
ajv.addSchema({ $id: 'k8s', definitions });
const validators = new Map<string, ValidateFunction>();
for (const [gvk, name] of Object.entries(k8s.kinds as Record<string, string>)) validators.set(gvk, ajv.compile({ $ref: `k8s#/definitions/${name}` }));
for (const file of readdirSync(SCHEMAS).filter((f) => f.endsWith('.json') && f !== 'kubernetes-definitions.json' && !f.startsWith('llm-d.ai_'))) {
  const crd = readJson(file);
  validators.set(`${crd.group}/${crd.version}/${crd.kind}`, ajv.compile(strict(crd.schema, '#/definitions/') as Obj));
}
const eppSchema = readJson('llm-d.ai_v1alpha1_EndpointPickerConfig.json');
const validateEppConfig = ajv.compile(eppSchema.schema);

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });
}

const docs: Array<{ file: string; body: Obj }> = [];
for (const file of yamlFiles(DEPLOY)) {
  for (const d of parseAllDocuments(readFileSync(file, 'utf8'))) {
    const body = d.toJS() as Obj | null;
    if (body && typeof body.kind === 'string') docs.push({ file: relative(DEPLOY, file).split(sep).join('/'), body });
  }
}
const gvkOf = (b: Obj) => `${b.apiVersion}/${b.kind}`;
const find = (kind: string, where: (d: { file: string; body: Obj }) => boolean = () => true) =>
  docs.filter((d) => d.body.kind === kind && where(d)).map((d) => d.body);
const inGateway = (d: { file: string }) => d.file.startsWith('gateway/');
const selects = (matchLabels: Obj, labels: Obj) => Object.keys(matchLabels).length > 0 && Object.entries(matchLabels).every(([k, v]) => labels?.[k] === v);

t.test('the vendored schemas catch what they should (a wrong field, a wrong type, an unknown field)', async (t) => {
  const deployment = validators.get('apps/v1/Deployment')!;
  const good = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'x' },
    spec: {
      selector: { matchLabels: { a: 'b' } },
      template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i', ports: [{ containerPort: 80 }] }] } },
    },
  };
  t.ok(deployment(good), JSON.stringify(deployment.errors));
  t.notOk(deployment({ ...good, spec: { ...good.spec, replicas: 'two' } }), 'replicas must be an integer');
  t.notOk(
    deployment({
      ...good,
      spec: {
        ...good.spec,
        template: { ...good.spec.template, spec: { containers: [{ name: 'c', image: 'i', imagePullPolicy: 'IfNotPresent', portz: [] }] } },
      },
    }),
    'an unknown container field',
  );
  const pool = validators.get('inference.networking.k8s.io/v1/InferencePool')!;
  const poolSpec = { selector: { matchLabels: { a: 'b' } }, targetPorts: [{ number: 8080 }], endpointPickerRef: { name: 'epp', port: { number: 9002 } } };
  t.ok(pool({ apiVersion: 'inference.networking.k8s.io/v1', kind: 'InferencePool', metadata: { name: 'p' }, spec: poolSpec }), JSON.stringify(pool.errors));
  t.notOk(
    pool({ apiVersion: 'inference.networking.k8s.io/v1', kind: 'InferencePool', metadata: { name: 'p' }, spec: { ...poolSpec, targetPorts: undefined } }),
    'targetPorts is required',
  );
  t.notOk(
    pool({
      apiVersion: 'inference.networking.k8s.io/v1',
      kind: 'InferencePool',
      metadata: { name: 'p' },
      spec: { ...poolSpec, endpointPickerRef: { name: 'epp', port: 9002 } },
    }),
    'a port is {number}',
  );
  t.notOk(
    validateEppConfig({
      apiVersion: 'llm-d.ai/v1alpha1',
      kind: 'EndpointPickerConfig',
      plugins: [{ type: 'queue-scorer', weight: 2 }],
      schedulingProfiles: [{ name: 'default', plugins: [{ pluginRef: 'queue-scorer' }] }],
    }),
    'weight belongs in the profile, not the plugin',
  );
});

t.test('every manifest under deploy/ is valid against its schema', async (t) => {
  t.ok(docs.length >= 15, `${docs.length} manifests`);
  for (const { file, body } of docs) {
    if (body.kind === 'Kustomization') continue; // kustomize's own configuration, not an API object
    const validate = validators.get(gvkOf(body));
    t.ok(validate, `${file}: a schema for ${gvkOf(body)}`);
    if (!validate) continue;
    const ok = validate(body);
    t.ok(ok, `${file}: ${body.kind} ${body.metadata?.name} ${ok ? 'valid' : JSON.stringify(validate.errors?.slice(0, 5))}`);
  }
});

t.test('the endpoint picker configuration: valid, known plugin types, the three scorers and a picker in the profile', async (t) => {
  const cm = find('ConfigMap', inGateway).find((c) => c.data?.['epp-config.yaml']);
  t.ok(cm, 'a ConfigMap holds epp-config.yaml');
  const config = parse(cm!.data['epp-config.yaml']) as Obj;
  t.ok(validateEppConfig(config), JSON.stringify(validateEppConfig.errors));
  const names = new Map<string, string>(config.plugins.map((p: Obj) => [p.name ?? p.type, p.type]));
  for (const type of names.values()) t.ok(eppSchema.pluginTypes.includes(type), `plugin type ${type} exists in llm-d-router`);
  for (const type of ['metrics-data-source', 'core-metrics-extractor'])
    t.ok([...names.values()].includes(type), `${type}: scrapes /metrics and reads the model server protocol`);
  const refs = config.schedulingProfiles.flatMap((p: Obj) => p.plugins.map((x: Obj) => x.pluginRef));
  for (const ref of refs) t.ok(names.has(ref), `profile plugin ${ref} is defined`);
  const scorers = refs.map((r: string) => names.get(r));
  for (const s of ['lora-affinity-scorer', 'queue-scorer', 'kv-cache-utilization-scorer']) t.ok(scorers.includes(s), `${s} scores`);
  t.ok(
    scorers.some((s: string) => s.endsWith('-picker')),
    'a picker',
  );
  const source = config.plugins.find((p: Obj) => p.type === 'metrics-data-source');
  t.equal(source.parameters?.path ?? '/metrics', '/metrics', "scrapes the server's /metrics");
});

t.test('the gateway pieces fit the server and each other', async (t) => {
  const server = find('Deployment', (d) => !inGateway(d))[0];
  const serverPod = server.spec.template;
  const serverPort = serverPod.spec.containers.find((c: Obj) => c.ports?.length).ports[0].containerPort;
  const [pool] = find('InferencePool');
  t.ok(selects(pool.spec.selector.matchLabels, serverPod.metadata.labels), 'the pool selects the server pods');
  t.same(
    pool.spec.targetPorts.map((p: Obj) => p.number),
    [serverPort],
    'on the server port',
  );

  const eppService = find('Service', inGateway).find((s) => s.metadata.name === pool.spec.endpointPickerRef.name);
  t.ok(eppService, 'endpointPickerRef names the picker Service');
  const epp = find('Deployment', inGateway)[0];
  const eppPod = epp.spec.template;
  t.ok(selects(eppService!.spec.selector, eppPod.metadata.labels), 'the picker Service selects the picker pods');
  const servicePort = eppService!.spec.ports.find((p: Obj) => p.port === pool.spec.endpointPickerRef.port.number);
  t.ok(servicePort, 'the pool names a port of the picker Service');
  const container = eppPod.spec.containers[0];
  const target = container.ports.find((p: Obj) => p.name === servicePort.targetPort || p.containerPort === servicePort.targetPort);
  const args: string[] = container.args;
  t.ok(args.includes(`--grpc-port=${target.containerPort}`), "the Service reaches the picker's ext_proc port");
  t.ok(args.includes(`--pool-name=${pool.metadata.name}`), 'the picker serves this pool');
  const configArg = args.find((a) => a.startsWith('--config-file='))!.split('=')[1];
  const mount = container.volumeMounts.find((m: Obj) => configArg.startsWith(`${m.mountPath}/`));
  const volume = eppPod.spec.volumes.find((v: Obj) => v.name === mount.name);
  const cm = find('ConfigMap', inGateway).find((c) => c.metadata.name === volume.configMap.name);
  t.type(cm?.data?.[configArg.slice(mount.mountPath.length + 1)], 'string', 'the config file comes from the ConfigMap');

  const sa = find('ServiceAccount', inGateway)[0];
  t.equal(eppPod.spec.serviceAccountName, sa.metadata.name);
  const role = find('Role', inGateway)[0];
  const binding = find('RoleBinding', inGateway)[0];
  t.match(binding, { roleRef: { kind: 'Role', name: role.metadata.name }, subjects: [{ kind: 'ServiceAccount', name: sa.metadata.name }] });
  const may = (group: string, resource: string) =>
    role.rules.some((r: Obj) => r.apiGroups.includes(group) && r.resources.includes(resource) && ['get', 'list', 'watch'].every((v) => r.verbs.includes(v)));
  t.ok(may('inference.networking.k8s.io', 'inferencepools'), 'reads InferencePools');
  t.ok(may('', 'pods'), 'reads pods');

  const [route] = find('HTTPRoute');
  const [gateway] = find('Gateway');
  t.ok(
    route.spec.parentRefs.some((p: Obj) => p.name === gateway.metadata.name),
    'the route attaches to the Gateway',
  );
  const toPool = route.spec.rules.filter((r: Obj) => r.backendRefs.some((b: Obj) => b.kind === 'InferencePool'));
  t.equal(toPool.length, 1, 'one rule leads to the pool');
  t.match(toPool[0].backendRefs, [{ group: 'inference.networking.k8s.io', kind: 'InferencePool', name: pool.metadata.name }]);
  const poolPaths = toPool[0].matches.map((m: Obj) => m.path.value).sort();
  t.same(poolPaths, ['/v1/chat/completions', '/v1/completions'], 'the OpenAI routes, whose `model` the picker reads');
  const serverService = find('Service', (d) => !inGateway(d))[0];
  for (const rule of route.spec.rules.filter((r: Obj) => !toPool.includes(r))) {
    for (const b of rule.backendRefs) {
      t.ok(
        b.kind === 'Service' && b.name === serverService.metadata.name && serverService.spec.ports.some((p: Obj) => p.port === b.port),
        'the other routes reach the server Service',
      );
    }
  }

  const k = parse(readFileSync(join(DEPLOY, 'gateway', 'kustomization.yaml'), 'utf8')) as Obj;
  t.same(
    [...k.resources].sort(),
    readdirSync(join(DEPLOY, 'gateway'))
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .sort(),
    'the kustomization lists every gateway manifest',
  );
  t.ok(
    k.images.some((i: Obj) => i.name === container.image),
    'the picker image is set by the kustomization',
  );
});
