/** --quantize / QUANTIZE / model.quantize: default none, the usual precedence, a bad value named at start. */
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';

t.test('default none; config file < environment < flag', async (t) => {
  t.equal(loadConfig({ argv: [], env: {} }).model.quantize, 'none');
  const file = join(mkdtempSync(join(tmpdir(), 'quantize-config-')), 'config.json');
  writeFileSync(file, JSON.stringify({ model: { quantize: 'int8' } }));
  t.equal(loadConfig({ argv: [], env: { CONFIG_FILE: file } }).model.quantize, 'int8');
  t.equal(loadConfig({ argv: [], env: { CONFIG_FILE: file, QUANTIZE: 'int4' } }).model.quantize, 'int4');
  t.equal(loadConfig({ argv: ['--quantize', 'none'], env: { CONFIG_FILE: file, QUANTIZE: 'int4' } }).model.quantize, 'none');
});

t.test('an unknown format is refused naming the setting and the choices', async (t) => {
  t.throws(() => loadConfig({ argv: ['--quantize', 'q4_k'], env: {} }), {
    message: /model.quantize must be one of none, int8, int4 \(got "q4_k" from flag --quantize\)/,
  });
});

t.test('--quantize-block-size / QUANTIZE_BLOCK_SIZE: default auto, powers of two from 16, anything else refused', async (t) => {
  t.equal(loadConfig({ argv: [], env: {} }).model.quantizeBlockSize, 'auto');
  t.equal(loadConfig({ argv: [], env: { QUANTIZE_BLOCK_SIZE: '64' } }).model.quantizeBlockSize, '64');
  t.equal(loadConfig({ argv: ['--quantize-block-size', '128'], env: { QUANTIZE_BLOCK_SIZE: '64' } }).model.quantizeBlockSize, '128');
  t.throws(() => loadConfig({ argv: ['--quantize-block-size', '48'], env: {} }), {
    message: /model.quantizeBlockSize must be one of auto, 16, 32, 64, 128, 256 \(got "48" from flag --quantize-block-size\)/,
  });
});
