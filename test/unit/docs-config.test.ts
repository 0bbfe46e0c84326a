/**
 * docs/configuration.md is generated from the config loader's own table (SETTINGS in src/config.ts) by
 * `npm run docs:config`: it must be exactly what that renders, and it must list every setting.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { SETTINGS } from '../../src/config.js';
import { renderConfigurationDoc } from '../../tools/docs-config/render.js';

const file = join(fileURLToPath(new URL('../..', import.meta.url)), 'docs', 'configuration.md');

t.test('docs/configuration.md is what npm run docs:config renders from SETTINGS', async (t) => {
  const onDisk = readFileSync(file, 'utf8');
  const rendered = renderConfigurationDoc();
  t.ok(onDisk === rendered, 'docs/configuration.md is out of date with src/config.ts: run `npm run docs:config` and commit it');
  if (onDisk !== rendered) t.same(onDisk.split('\n'), rendered.split('\n'), 'the lines that differ');
});

t.test('every setting has a row with its key, environment variable, flag and default', async (t) => {
  const rendered = renderConfigurationDoc();
  for (const s of SETTINGS) t.match(rendered, `| \`${s.path}\` | \`${s.env}\` | \`${s.flag}\` |`, s.path);
  t.ok(SETTINGS.length >= 30, `${SETTINGS.length} settings`);
});
