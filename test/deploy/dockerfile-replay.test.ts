/**
 * Replays the Dockerfile's dependency stage in a scratch directory (no Docker engine here): the
 * same COPY steps, the same `npm ci --omit=dev` with the same ARG/ENV, so the Dockerfile cannot
 * drift from an install that works. Then checks the result the runtime stage relies on.
 *
 * Differences from a real build, on purpose: the host's node/npm run it (the image has Node 24 and
 * its bundled npm), and npm_config_prefer_offline=true makes npm use its cache first (same lockfile,
 * same packages). The lead can start the server from the replayed tree later: replay the runtime
 * stage with `stageRoots: { deps: <this root> }`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { cleanBaseEnv, parseDockerfile, replaySteps, stageSteps, type ReplayStep } from './fixtures/dockerfile.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

if (!existsSync(join(ROOT, 'package-lock.json'))) {
  t.plan(0, 'package-lock.json does not exist yet: npm ci needs it, nothing to replay');
} else {
  t.test('the deps stage installs production dependencies without downloading CUDA', { timeout: 180_000 }, async (t) => {
    const df = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
    const stage = df.stages.find((s) => s.instructions.some((i) => i.keyword === 'RUN' && /\bnpm ci\b.*--omit=dev/.test(i.args)));
    if (!stage) throw new Error('no stage runs npm ci --omit=dev');
    const steps = stageSteps(df, stage.index);
    const run = steps.find((s): s is Extract<ReplayStep, { kind: 'run' }> => s.kind === 'run' && /\bnpm ci\b/.test(s.argv.join(' ')))!;
    t.equal(run.env.ONNXRUNTIME_NODE_INSTALL, 'skip', 'the default build skips the CUDA download');

    const root = await mkdtemp(join(tmpdir(), 'docker-replay-'));
    t.teardown(() => rm(root, { recursive: true, force: true }));
    const runs = await replaySteps(steps, {
      root,
      context: ROOT,
      baseEnv: { ...cleanBaseEnv(), npm_config_prefer_offline: 'true' },
      runTimeoutMs: 150_000,
      log: (l) => t.comment(l),
    });
    t.equal(runs.length, steps.filter((s) => s.kind === 'run').length, 'every RUN ran');
    for (const r of runs) t.comment(`${r.argv.join(' ')}: exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s`);

    const workdir = steps.filter((s) => s.kind === 'workdir').pop();
    const app = join(root, ...(workdir && workdir.kind === 'workdir' ? workdir.dir.split('/').filter(Boolean) : []));
    const nm = join(app, 'node_modules');
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    for (const dep of Object.keys(pkg.dependencies)) t.ok(existsSync(join(nm, dep, 'package.json')), `dependency ${dep} installed`);
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean }> };
    const devOnly = Object.entries(lock.packages)
      .filter(([p, v]) => p.startsWith('node_modules/') && v.dev === true)
      .map(([p]) => p);
    const installedDev = devOnly.filter((p) => existsSync(join(app, p)));
    t.same(installedDev, [], `none of the ${devOnly.length} dev-only packages installed`);

    // onnxruntime-node: CPU binaries from the package, no CUDA provider downloaded.
    const ortBin = join(nm, 'onnxruntime-node', 'bin', 'napi-v6', process.platform, process.arch);
    t.ok(existsSync(join(ortBin, 'onnxruntime_binding.node')), 'the CPU binding is there');
    t.notOk(existsSync(join(ortBin, 'libonnxruntime_providers_cuda.so')), 'no CUDA provider downloaded');

    // What the runtime stage's CMD (node dist/server.js) needs from this tree, with Node alone:
    // onnxruntime-node's native binding loads (test/deploy/dist-server.test.ts runs the build itself).
    t.notOk(existsSync(join(nm, 'tsx')), 'no tsx in the image');
    await writeFile(join(app, 'replay-probe.mjs'), "import * as ort from 'onnxruntime-node';\nconsole.log('probe', typeof ort.InferenceSession.create);\n");
    const probe = spawnSync(process.execPath, ['replay-probe.mjs'], {
      cwd: app,
      env: { ...cleanBaseEnv(), ...run.env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    t.equal(probe.status, 0, `onnxruntime-node loads from the replayed tree: ${probe.stderr.slice(-1000)}`);
    t.match(probe.stdout, /probe function/);
  });
}
