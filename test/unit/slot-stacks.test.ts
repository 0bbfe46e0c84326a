import t from 'tap';
import { SlotStacks } from '../../src/engine/lora/slot-stacks.js';
import { moduleKey, type LoadedAdapter } from '../../src/engine/lora/peft-adapter.js';
import { projectionShape, type Projection } from '../../src/engine/model/graph-builder.js';
import { readModelSpec } from '../../src/engine/model/hf-config.js';
import { FIXTURE_MODEL } from '../helpers/engine.js';

const spec = readModelSpec(FIXTURE_MODEL);

/** An adapter of rank 2 with modules for the given (layer, projection) pairs only. */
function adapter(name: string, modules: Array<[number, Projection]>): LoadedAdapter {
  const map = new Map(
    modules.map(([layer, p]) => {
      const [inSize, outSize] = projectionShape(spec, p);
      return [moduleKey(layer, p), { rank: 2, a: new Float32Array(inSize * 2).fill(1), b: new Float32Array(2 * outSize).fill(1) }];
    }),
  );
  return { name, dir: `/adapters/${name}`, rank: 2, targets: [...new Set(modules.map(([, p]) => p))], modules: map, bytes: 0 };
}

t.test('targets: the projections a slot changes in any layer, forgotten when the slot is cleared or rewritten', async (t) => {
  const stacks = new SlotStacks(spec, 3);
  t.same([...stacks.targets(1)], [], 'an empty slot changes nothing');
  stacks.write(
    1,
    adapter('qv', [
      [0, 'q_proj'],
      [spec.numLayers - 1, 'v_proj'],
    ]),
  );
  stacks.write(
    2,
    adapter('mlp', [
      [0, 'gate_proj'],
      [0, 'down_proj'],
    ]),
  );
  t.same([...stacks.targets(1)].sort(), ['q_proj', 'v_proj']);
  t.same([...stacks.targets(2)].sort(), ['down_proj', 'gate_proj']);
  stacks.write(1, adapter('o', [[1, 'o_proj']]));
  t.same([...stacks.targets(1)], ['o_proj'], 'rewritten: only the new adapter counts');
  stacks.clear(2);
  t.same([...stacks.targets(2)], [], 'cleared');
  t.same([...stacks.targets(1)], ['o_proj'], 'other slots unchanged');
});
