import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPeftAdapter } from '../../src/engine/lora/peft-adapter.js';
import { readModelSpec } from '../../src/engine/model/hf-config.js';
import { encodeSafetensors, readSafetensorsHeader, readTensorAsFloat32 } from '../../src/engine/model/safetensors.js';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL } from '../helpers/engine.js';

const spec = readModelSpec(FIXTURE_MODEL);

function variant(base: string, edit: (dir: string) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'adapter-'));
  cpSync(join(FIXTURE_ADAPTERS, base), dir, { recursive: true });
  edit(dir);
  return dir;
}
const editConfig = (patch: Record<string, unknown>) => (dir: string) => {
  const file = join(dir, 'adapter_config.json');
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...patch }));
};
const editTensors = (change: (tensors: Array<{ name: string; dtype: 'F32'; shape: number[]; data: Float32Array }>) => void) => (dir: string) => {
  const file = join(dir, 'adapter_model.safetensors');
  const header = readSafetensorsHeader(file);
  const tensors = [...header.tensors.values()].map((i) => ({ name: i.name, dtype: 'F32' as const, shape: i.shape, data: readTensorAsFloat32(header, i.name) }));
  change(tensors);
  writeFileSync(file, encodeSafetensors(tensors));
};

t.test('the fixture adapters load with the right ranks, targets and scales', async (t) => {
  const support = loadPeftAdapter('support', join(FIXTURE_ADAPTERS, 'support'), spec, 64);
  t.equal(support.rank, 4);
  t.same(support.targets, ['q_proj', 'v_proj']);
  const code = loadPeftAdapter('code', join(FIXTURE_ADAPTERS, 'code'), spec, 64);
  t.equal(code.targets.length, 7);
  // rsLoRA: B is scaled by alpha / sqrt(r) = 16 / 4
  const header = readSafetensorsHeader(join(FIXTURE_ADAPTERS, 'code', 'adapter_model.safetensors'));
  const b = readTensorAsFloat32(header, 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight');
  const m = code.modules.get('0.q_proj')!;
  t.equal(m.b[0], b[0] * 4, 'first element of B^T equals B[0,0] * 4');
});

t.test('invalid adapters are refused with a reason naming the file and the problem', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['DoRA', variant('support', editConfig({ use_dora: true })), /adapter_config\.json.*DoRA/],
    ['trained biases', variant('support', editConfig({ bias: 'all' })), /adapter_config\.json.*biases/],
    ['modules_to_save', variant('support', editConfig({ modules_to_save: ['lm_head'] })), /modules_to_save/],
    ['unknown target', variant('support', editConfig({ target_modules: ['q_proj', 'lm_head'] })), /target_modules.*lm_head/],
    ['rank above maximum', variant('code', editConfig({})), /above this server's maximum of 8/],
    ['missing weights', variant('support', (d) => rmSync(join(d, 'adapter_model.safetensors'))), /adapter_model\.safetensors: is missing/],
    [
      'corrupt weights',
      variant('support', (d) => writeFileSync(join(d, 'adapter_model.safetensors'), 'garbage!garbage!')),
      /adapter_model\.safetensors: header claims/,
    ],
    [
      'shape does not fit',
      variant(
        'support',
        editTensors((ts) => {
          const a = ts.find((x) => x.name.endsWith('q_proj.lora_A.weight'))!;
          a.shape = [4, 32];
          a.data = a.data.slice(0, 128);
        }),
      ),
      /needs \[r, 64\]/,
    ],
    [
      'NaN weights',
      variant(
        'support',
        editTensors((ts) => {
          ts[0].data[0] = NaN;
        }),
      ),
      /NaN or Inf/,
    ],
    [
      'bias tensor',
      variant(
        'support',
        editTensors((ts) => {
          ts.push({ name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias', dtype: 'F32', shape: [64], data: new Float32Array(64) });
        }),
      ),
      /biases/,
    ],
    [
      'layer out of range',
      variant(
        'support',
        editTensors((ts) => {
          ts[0].name = ts[0].name.replace('layers.0', 'layers.9');
        }),
      ),
      /layer 9 does not exist/,
    ],
  ];
  for (const [name, dir, message] of cases) {
    const maxRank = name === 'rank above maximum' ? 8 : 64;
    t.throws(() => loadPeftAdapter('x', dir, spec, maxRank), message, name);
  }
});

t.test('rank_pattern and alpha_pattern apply per module', async (t) => {
  const dir = variant('sales', editConfig({ alpha_pattern: { 'layers.0.self_attn.q_proj': 32 } }));
  const patterned = loadPeftAdapter('p', dir, spec, 64);
  const plain = loadPeftAdapter('s', join(FIXTURE_ADAPTERS, 'sales'), spec, 64);
  t.equal(patterned.modules.get('0.q_proj')!.b[0], plain.modules.get('0.q_proj')!.b[0] * 2, 'alpha 32 instead of 16 doubles the scale');
  t.equal(patterned.modules.get('1.q_proj')!.b[0], plain.modules.get('1.q_proj')!.b[0], 'other layers unchanged');
  const wrongRank = variant('sales', editConfig({ rank_pattern: { q_proj: 4 } }));
  t.throws(() => loadPeftAdapter('w', wrongRank, spec, 64), /rank 8, adapter_config\.json says 4/);
});
