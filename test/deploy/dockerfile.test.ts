/**
 * The Dockerfile, checked without a Docker engine: dockerfile-utils' linter finds nothing, and the
 * parts the image needs are there (multi-stage, non-root USER, HEALTHCHECK, EXPOSE, the CUDA build
 * argument, production-only install, what is copied and that .dockerignore lets it through).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validate } from 'dockerfile-utils';
import t from 'tap';
import {
  execForm,
  findStage,
  globalArgValues,
  isIgnored,
  parseDockerfile,
  parseDockerignore,
  resolveFrom,
  splitFlags,
  stageSteps,
  type ReplayStep,
} from './fixtures/dockerfile.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const df = parseDockerfile(text);
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const final = df.stages[df.stages.length - 1];
const finalSteps = stageSteps(df, final.index);
const other = (steps: ReplayStep[], keyword: string) =>
  steps.filter((s): s is Extract<ReplayStep, { kind: 'other' }> => s.kind === 'other' && s.keyword === keyword);

t.test('dockerfile-utils reports no errors or warnings', async (t) => {
  const diagnostics = validate(text);
  t.same(
    diagnostics.map((d) => `line ${d.range.start.line + 1}: ${d.message}`),
    [],
    'no diagnostics',
  );
  // The linter is live: it does flag a broken file.
  t.ok(validate('FROM\nexpose abc\nHEALTHCHECK --interval=1x CMD true\n').length >= 2, 'flags a broken Dockerfile');
});

const NODE_IMAGE = 'node:24-bookworm-slim';

t.test(`multi-stage on ${NODE_IMAGE} (a maintained LTS), the final stage copies from the build and deps stages`, async (t) => {
  t.ok(df.stages.length >= 3, `${df.stages.length} stages`);
  const deps = findStage(df, 'deps');
  const build = findStage(df, 'build');
  t.equal(resolveFrom(df, deps).image, NODE_IMAGE, `dependencies install on ${NODE_IMAGE}`);
  t.equal(resolveFrom(df, build).image, NODE_IMAGE, `dist/ is built on ${NODE_IMAGE}`);
  t.ok(
    final.instructions.every((i) => !(i.keyword === 'RUN' && /\bnpm\b/.test(i.args))),
    'npm does not run in the final stage',
  );
  // Default build: the final stage's base resolves to the slim Node image.
  let base = resolveFrom(df, final);
  while (base.stage) base = resolveFrom(df, base.stage);
  t.equal(base.image, NODE_IMAGE, `the default (CPU) image is based on ${NODE_IMAGE}`);
  const copies = finalSteps.filter((s): s is Extract<ReplayStep, { kind: 'copy' }> => s.kind === 'copy');
  t.ok(
    copies.some((c) => c.from === deps.name && c.sources.includes('/app/node_modules')),
    'node_modules come from the deps stage',
  );
  t.ok(
    copies.some((c) => c.from === build.name && c.sources.includes('/app/dist')),
    'dist/ comes from the build stage',
  );
  // package.json's engines covers the image's Node.
  const major = Number(/^node:(\d+)/.exec(NODE_IMAGE)![1]);
  const engines = (pkg as { engines?: { node?: string } }).engines?.node ?? '';
  t.ok(
    engines.split('||').some((range) => range.trim().startsWith(`^${major}.`)),
    `engines "${engines}" lists Node ${major}`,
  );
});

t.test('the build stage compiles src/ with the build tsconfig and nothing else', async (t) => {
  const steps = stageSteps(df, 'build');
  const runs = steps.filter((s): s is Extract<ReplayStep, { kind: 'run' }> => s.kind === 'run').map((s) => s.argv.join(' '));
  t.ok(
    runs.some((r) => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r)),
    'npm ci with the dev dependencies (TypeScript)',
  );
  t.ok(
    runs.some((r) => /\bnpm run build\b/.test(r)),
    'npm run build',
  );
  t.match(pkg.scripts.build, /tsc -p tsconfig\.build\.json/, 'npm run build is tsc -p tsconfig.build.json');
  const build = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { compilerOptions: { outDir: string; rootDir: string } };
  t.same([build.compilerOptions.rootDir, build.compilerOptions.outDir], ['src', 'dist'], 'src/ -> dist/');
  const copied = steps.flatMap((s) => (s.kind === 'copy' ? s.sources : []));
  for (const f of ['tsconfig.json', 'tsconfig.build.json', 'src']) t.ok(copied.includes(f), `COPY ${f}`);
});

t.test('npm ci installs production dependencies only, with the same .npmrc', async (t) => {
  const deps = findStage(df, 'deps');
  const steps = stageSteps(df, 'deps');
  const run = steps.find((s): s is Extract<ReplayStep, { kind: 'run' }> => s.kind === 'run' && /\bnpm ci\b/.test(s.argv.join(' ')));
  t.not(deps, final, 'npm ci does not run in the final stage');
  t.ok(run);
  t.match(run!.argv.join(' '), /npm ci .*--omit=dev/);
  const copied = steps.flatMap((s) => (s.kind === 'copy' ? s.sources : []));
  t.same(copied.sort(), ['.npmrc', 'package-lock.json', 'package.json'], 'only the manifest, the lockfile and .npmrc before npm ci');
  t.ok(
    deps.instructions.every((i) => i.keyword !== 'ADD'),
    'no ADD',
  );
  // The image runs the build (dist/): no TypeScript and no tsx at run time.
  for (const dev of ['tsx', 'typescript']) {
    t.notOk(pkg.dependencies[dev], `${dev} is not a production dependency`);
    t.ok(pkg.devDependencies[dev], `${dev} is a devDependency (npm start, tests, the build stage)`);
  }
});

t.test('onnxruntime-node: CUDA download skipped by default, ORT_INSTALL=cuda12 builds the CUDA variant', async (t) => {
  t.equal(globalArgValues(df).ORT_INSTALL, 'skip', 'ARG ORT_INSTALL defaults to skip');
  const env = (args: Record<string, string>) => stageSteps(df, 'deps', args).find((s): s is Extract<ReplayStep, { kind: 'run' }> => s.kind === 'run')!.env;
  t.equal(env({}).ONNXRUNTIME_NODE_INSTALL, 'skip');
  t.equal(env({ ORT_INSTALL: 'cuda12' }).ONNXRUNTIME_NODE_INSTALL, 'cuda12');
  const cudaBase = resolveFrom(df, final, { ORT_INSTALL: 'cuda12' });
  t.ok(cudaBase.stage, 'ORT_INSTALL=cuda12 selects a runtime base stage');
  t.match(resolveFrom(df, cudaBase.stage!, { ORT_INSTALL: 'cuda12' }).image, /^nvidia\/cuda:12\.[\d.]+-cudnn-runtime-/, 'a CUDA 12 + cuDNN runtime image');
  t.ok(
    stageSteps(df, cudaBase.stage!.index).some((s) => s.kind === 'copy' && s.sources.includes('/usr/local/bin/node')),
    'Node is copied into the CUDA base',
  );
  t.throws(() => {
    const r = resolveFrom(df, final, { ORT_INSTALL: 'cuda11' });
    if (!r.stage) throw new Error(`no stage ${r.image}`);
  }, 'an unknown ORT_INSTALL value has no base stage (the build fails)');
  t.match(text, /--build-arg ORT_INSTALL=cuda12/, 'the CUDA build is documented in the Dockerfile');
  const docs = join(ROOT, 'docs', 'operations.md');
  t.ok(existsSync(docs) && readFileSync(docs, 'utf8').includes('--build-arg ORT_INSTALL=cuda12'), 'and in docs/operations.md');
});

t.test('runs as a non-root user', async (t) => {
  const users = finalSteps.filter((s): s is Extract<ReplayStep, { kind: 'user' }> => s.kind === 'user');
  t.ok(users.length >= 1, 'USER in the final stage');
  const last = users[users.length - 1].user;
  const [name] = last.split(':');
  t.notOk(['root', '0', ''].includes(name), `USER ${last} is not root`);
  t.match(name, /^\d+$/, 'numeric, so Kubernetes runAsNonRoot can verify it');
  const lastUserLine = users[users.length - 1].line;
  t.ok(
    finalSteps.every((s) => s.kind !== 'run' || s.line < lastUserLine),
    'no RUN after USER (nothing runs as root later)',
  );
});

t.test('HEALTHCHECK on /healthz with node (no curl in slim), EXPOSE and HOST/PORT from the environment', async (t) => {
  const hc = other(finalSteps, 'HEALTHCHECK');
  t.equal(hc.length, 1, 'one HEALTHCHECK');
  const { flags, rest } = splitFlags(hc[0].args);
  t.match(flags, { interval: /^\d+s$/, timeout: /^\d+s$/, retries: /^\d+$/ });
  t.match(rest, /^CMD\s/);
  const argv = execForm(rest.replace(/^CMD\s+/, ''));
  t.ok(argv, 'exec form');
  t.equal(argv![0], 'node');
  t.equal(argv![1], '-e');
  t.match(argv![2], /fetch\(.*\/healthz/);
  t.match(argv![2], /process\.env\.PORT/, 'follows PORT');
  t.notMatch(text, /\b(curl|wget)\b/);
  const env = Object.assign({}, ...finalSteps.filter((s) => s.kind === 'env').map((s) => (s as { vars: Record<string, string> }).vars)) as Record<
    string,
    string
  >;
  t.equal(env.HOST, '0.0.0.0');
  t.equal(env.PORT, '8080');
  t.equal(env.NODE_ENV, 'production');
  const expose = other(finalSteps, 'EXPOSE');
  t.equal(expose.length, 1);
  t.equal(expose[0].args.trim(), env.PORT, 'EXPOSE matches PORT');
});

t.test('CMD runs the build of the entry point `npm start` runs, with node alone', async (t) => {
  const cmd = other(finalSteps, 'CMD');
  t.equal(cmd.length, 1);
  const argv = execForm(cmd[0].args);
  t.ok(argv, 'exec form, so the server gets SIGTERM');
  const start = /^tsx\s+src\/(\S+)\.ts$/.exec(pkg.scripts.start.trim());
  t.ok(start, `npm start is "tsx src/<entry>.ts" (got "${pkg.scripts.start}")`);
  t.ok(existsSync(join(ROOT, 'src', `${start![1]}.ts`)), `src/${start![1]}.ts exists`);
  t.same(argv, ['node', `dist/${start![1]}.js`], 'node dist/<the same entry>.js');
  t.notMatch(text, /--import\s+tsx|"tsx"/, 'tsx is not used in the image');
  t.notOk(
    finalSteps.some((s) => s.kind === 'copy' && s.sources.includes('src')),
    'src/ is not in the image',
  );
});

t.test('the image is built from config/, models/, adapters/ and src/, and .dockerignore lets exactly those in', async (t) => {
  const ignore = parseDockerignore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
  const fromContext = [...stageSteps(df, 'build'), ...stageSteps(df, 'deps'), ...finalSteps].flatMap((s) =>
    s.kind === 'copy' && s.from === null ? s.sources : [],
  );
  for (const dir of ['config', 'models', 'adapters', 'src', 'tsconfig.build.json']) t.ok(fromContext.includes(dir), `COPY ${dir}`);
  for (const src of fromContext) {
    t.ok(existsSync(join(ROOT, src)), `${src} exists in the repository`);
    t.notOk(isIgnored(src, ignore), `${src} is in the build context`);
  }
  for (const p of ['src/server.ts', 'config/default.json', 'adapters/support/adapter_config.json', 'models/demo/config.json']) {
    t.notOk(isIgnored(p, ignore), `${p} would be sent`);
  }
  for (const p of [
    'node_modules',
    'node_modules/fastify/package.json',
    '.git/HEAD',
    'test/loadtest/args.test.ts',
    '.tap/x',
    'loadtest-results/r/report.html',
    'src/node_modules/x',
    'debug.log',
    '.env',
    'Dockerfile',
    'deploy/deployment.yaml',
    '.cache/onnx/x',
    'tools/loadtest/cli.ts',
  ]) {
    t.ok(isIgnored(p, ignore), `${p} stays out`);
  }
});

t.test('the .dockerignore matcher follows Docker semantics', async (t) => {
  const p = parseDockerignore('*\n!src/\n**/node_modules\n/docs/*.md\n!docs/keep.md\n# comment\n');
  t.ok(isIgnored('README.md', p));
  t.notOk(isIgnored('src', p));
  t.notOk(isIgnored('src/a/b.ts', p));
  t.ok(isIgnored('src/a/node_modules/x.js', p));
  t.ok(isIgnored('docs/a.md', p));
  t.notOk(isIgnored('docs/keep.md', p));
  const q = parseDockerignore('**/*.log\ntmp?\n');
  t.ok(isIgnored('a/b/c.log', q));
  t.ok(isIgnored('x.log', q));
  t.ok(isIgnored('tmp1/file', q));
  t.notOk(isIgnored('tmp12', q));
});
