/** childEnv (test/helpers/child-env.ts): tap's processinfo loader leaves NODE_OPTIONS, everything else stays. */
import t from 'tap';
import { childEnv } from '../helpers/child-env.js';

t.test('drops the processinfo loader, quoted or not, and keeps the other options and variables', async (t) => {
  const pi = '--import=file:///x/node_modules/@tapjs/processinfo/dist/esm/import.mjs';
  t.same(childEnv({ NODE_OPTIONS: `"${pi}" --max-old-space-size=512`, A: '1' }), { NODE_OPTIONS: '--max-old-space-size=512', A: '1' });
  t.same(childEnv({ NODE_OPTIONS: `--enable-source-maps ${pi}` }), { NODE_OPTIONS: '--enable-source-maps' });
  t.same(childEnv({ NODE_OPTIONS: `"${pi}"`, B: '2' }), { B: '2' }, 'an empty NODE_OPTIONS is removed');
  t.same(childEnv({ C: '3' }), { C: '3' });
});

const underTap = (process.env.NODE_OPTIONS ?? '').includes('@tapjs/processinfo');
t.test(
  'under tap, the test process has the loader in NODE_OPTIONS and its children do not',
  { skip: !underTap && 'not run by tap (no processinfo loader in NODE_OPTIONS)' },
  async (t) => {
    t.notMatch(childEnv().NODE_OPTIONS ?? '', /@tapjs\/processinfo/);
    t.equal(childEnv().PATH, process.env.PATH);
  },
);
