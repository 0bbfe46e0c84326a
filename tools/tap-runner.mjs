// Rebuilds tap's test runner when it was not built with the plugins package.json configures; `npm test` runs this
// before tap. tap notices a stale runner by itself but rebuilds it only for the next run: the run that noticed still
// starts every test file with the loaders of the old plugin set. After a fresh `npm ci` (so in CI) that is tap's
// default set, whose @tapjs/typescript loader made a test process ~3.5x slower here (docs/testing.md).
// Plain JavaScript, so that it runs without the TypeScript loader.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TapConfig } from '@tapjs/config';

const config = await TapConfig.load();
const builtClass = fileURLToPath(import.meta.resolve('@tapjs/test/test-built'));
const built = /^export const signature = `([^`]*)`/m.exec(readFileSync(builtClass, 'utf8'))?.[1];
if (built?.trim() !== config.pluginSignature) {
  console.log('tap-runner: building the tap runner with the configured plugins');
  const run = spawnSync(process.execPath, [fileURLToPath(new URL('run.mjs', import.meta.resolve('tap'))), 'build'], { stdio: 'inherit' });
  process.exit(run.status ?? 1);
}
