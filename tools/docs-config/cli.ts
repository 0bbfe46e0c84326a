/** `npm run docs:config`: writes docs/configuration.md from src/config.ts's SETTINGS. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderConfigurationDoc } from './render.js';

const file = join(fileURLToPath(new URL('../..', import.meta.url)), 'docs', 'configuration.md');
writeFileSync(file, renderConfigurationDoc());
process.stdout.write(`wrote ${file}\n`);
