import t from 'tap';
import { StopSequenceFilter, truncateAtStop } from '../../src/text/stop-sequences.js';

function run(stops: string[], pieces: string[]): { released: string[]; stopped: boolean; flushed: string } {
  const filter = new StopSequenceFilter(stops);
  const released = pieces.map((p) => filter.push(p));
  return { released, stopped: filter.stopped, flushed: filter.flush() };
}

t.test('no stops: everything passes through', async (t) => {
  t.same(run([], ['a', 'b']), { released: ['a', 'b'], stopped: false, flushed: '' });
  t.same(run([''], ['a']), { released: ['a'], stopped: false, flushed: '' }, 'empty stops are ignored');
});

t.test('a stop inside one piece', async (t) => {
  t.same(run(['\n'], ['ab\ncd', 'ef']), { released: ['ab', ''], stopped: true, flushed: '' });
});

t.test('a stop across pieces is held back, then dropped', async (t) => {
  t.same(run(['</s>'], ['hi <', '/', 's> more']), { released: ['hi ', '', ''], stopped: true, flushed: '' });
});

t.test('a false start is released when it stops matching', async (t) => {
  t.same(run(['</s>'], ['hi <', 'b>']), { released: ['hi ', '<b>'], stopped: false, flushed: '' });
  t.same(run(['STOP'], ['x ST']), { released: ['x '], stopped: false, flushed: 'ST' });
});

t.test('the earliest of several stops wins', async (t) => {
  t.same(run(['bb', 'a'], ['xxbba']), { released: ['xx'], stopped: true, flushed: '' });
});

t.test('truncateAtStop', async (t) => {
  t.same(truncateAtStop('one two. three', ['.', 'three']), { text: 'one two', stopped: true });
  t.same(truncateAtStop('one two', ['.']), { text: 'one two', stopped: false });
  t.same(truncateAtStop('one', []), { text: 'one', stopped: false });
});
