/**
 * Writes the schemas test/deploy/schemas.test.ts validates deploy/ against (run by hand when a schema source
 * changes; the tests never download anything):
 *   - kubernetes-definitions.json: the definitions of the Kubernetes API's OpenAPI (swagger 2.0) document that
 *     the kinds in KINDS need (and everything they reference), keyed by group/version/kind;
 *   - one <group>_<version>_<Kind>.json per CRD file: the openAPIV3Schema of the CRD's served storage version.
 *
 *   npx tsx tools/deploy-schemas/vendor.ts --swagger FILE [--crd FILE ...] --out test/deploy/schemas
 *
 * Sources used (test/deploy/schemas/README.md says which revisions): the Kubernetes swagger document is the one
 * kubernetes-client/python generates from (kubernetes/swagger.json.unprocessed); the CRDs are the upstream files
 * of gateway-api (HTTPRoute, Gateway), gateway-api-inference-extension (InferencePool) and prometheus-operator
 * (PodMonitor).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

const KINDS = [
  'apps/v1/Deployment',
  'v1/Service',
  'v1/ConfigMap',
  'v1/ServiceAccount',
  'v1/Secret',
  'v1/PersistentVolumeClaim',
  'autoscaling/v2/HorizontalPodAutoscaler',
  'policy/v1/PodDisruptionBudget',
  'networking.k8s.io/v1/Ingress',
  'rbac.authorization.k8s.io/v1/Role',
  'rbac.authorization.k8s.io/v1/RoleBinding',
];

type Json = Record<string, any>;

function args(): { swagger: string; crds: string[]; out: string } {
  const argv = process.argv.slice(2);
  const crds: string[] = [];
  let swagger = '';
  let out = '';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--swagger') swagger = argv[++i];
    else if (argv[i] === '--crd') crds.push(argv[++i]);
    else if (argv[i] === '--out') out = argv[++i];
  }
  if (!swagger || !out) throw new Error('usage: vendor.ts --swagger FILE [--crd FILE ...] --out DIR');
  return { swagger, crds, out };
}

function refsOf(node: unknown, found: Set<string>): void {
  if (Array.isArray(node)) node.forEach((n) => refsOf(n, found));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') found.add(v.replace('#/definitions/', ''));
      else refsOf(v, found);
    }
  }
}

function main(): void {
  const { swagger, crds, out } = args();
  const doc = JSON.parse(readFileSync(swagger, 'utf8')) as Json;
  const all = doc.definitions as Record<string, Json>;
  const kinds: Record<string, string> = {};
  for (const [name, def] of Object.entries(all)) {
    for (const gvk of def['x-kubernetes-group-version-kind'] ?? []) {
      const key = `${gvk.group ? `${gvk.group}/` : ''}${gvk.version}/${gvk.kind}`;
      if (KINDS.includes(key)) kinds[key] = name;
    }
  }
  const missing = KINDS.filter((k) => !kinds[k]);
  if (missing.length) throw new Error(`not in the swagger document: ${missing.join(', ')}`);
  const keep = new Set<string>();
  const queue = Object.values(kinds);
  while (queue.length) {
    const name = queue.pop()!;
    if (keep.has(name)) continue;
    keep.add(name);
    const refs = new Set<string>();
    refsOf(all[name], refs);
    queue.push(...refs);
  }
  const definitions = Object.fromEntries([...keep].sort().map((n) => [n, all[n]]));
  writeFileSync(join(out, 'kubernetes-definitions.json'), `${JSON.stringify({ source: doc.info, kinds, definitions })}\n`);
  console.log(`kubernetes-definitions.json: ${Object.keys(kinds).length} kinds, ${keep.size} definitions`);

  for (const file of crds) {
    for (const d of parseAllDocuments(readFileSync(file, 'utf8'))) {
      const crd = d.toJS() as Json;
      if (crd?.kind !== 'CustomResourceDefinition') continue;
      const version = crd.spec.versions.find((v: Json) => v.storage) ?? crd.spec.versions[0];
      const name = `${crd.spec.group}_${version.name}_${crd.spec.names.kind}.json`;
      writeFileSync(
        join(out, name),
        `${JSON.stringify({ group: crd.spec.group, version: version.name, kind: crd.spec.names.kind, schema: version.schema.openAPIV3Schema })}\n`,
      );
      console.log(name);
    }
  }
}

main();
