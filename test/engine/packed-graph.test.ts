/**
 * The shape of the packed (host path) graph that keeps its per-step kernel count down: a step without prompt
 * chunks takes an If branch that runs only the decoding rows (no gathers, transposes or dummy prompt row), the
 * step's new keys and values are written by the nodes that compute them (no Identity copies), and projections
 * that read one input share one LoRA down product. Answers of both branches are checked against HF in
 * packed-step.test.ts and reference*.test.ts; this checks that the cheap branch stays cheap.
 */
import t from 'tap';
import { buildDecoderGraph } from '../../src/engine/model/graph-builder.js';
import { readModelSpec } from '../../src/engine/model/hf-config.js';
import { CheckpointWeights } from '../../src/engine/model/weights.js';
import { PRE_HAS_ROWS, loraActiveName, usedLoraAName } from '../../src/engine/model/packed-attention.js';
import type { OnnxNode } from '../../src/engine/model/onnx-proto.js';
import { Graph } from '../../src/engine/model/graph.js';
import { FIXTURE_MODEL } from '../helpers/engine.js';
import { allNodes, branch } from '../helpers/graph-nodes.js';

const spec = readModelSpec(FIXTURE_MODEL);
const L = spec.numLayers;
const ops = (nodes: OnnxNode[]) => nodes.map((n) => n.opType);

for (const quantize of ['none', 'int4'] as const) {
  t.test(`${quantize}: one If per layer; the decode-only branch gathers, transposes and copies nothing`, async (t) => {
    const model = buildDecoderGraph(spec, new CheckpointWeights(FIXTURE_MODEL), { maxSequenceLength: 64, lora: true, attention: 'packed', quantize }, () => {});
    const ifs = model.nodes.filter((n) => n.opType === 'If' && n.inputs[0] === PRE_HAS_ROWS);
    t.equal(ifs.length, L, 'one per layer on pre.has_rows');
    t.ok(
      model.inputs.some((i) => i.name === PRE_HAS_ROWS),
      'a graph input',
    );
    for (const node of ifs) {
      const decodeOnly = ops(branch(node, 'else_branch').nodes);
      t.same(
        decodeOnly.filter((op) => ['Gather', 'Transpose', 'Identity'].includes(op)),
        [],
        'decode-only branch: no Gather, Transpose or Identity',
      );
      t.equal(decodeOnly.filter((op) => op === 'Concat').length, 1, 'decode-only branch: only the [cached | new] scores concatenated');
      const withPrompts = ops(branch(node, 'then_branch').nodes);
      t.ok(withPrompts.includes('Transpose') && withPrompts.includes('Gather'), 'the branch with prompts pads and unpads');
    }
    t.equal(ops(model.nodes).filter((op) => op === 'Identity').length, 0, 'no Identity copies in the main graph');
    for (let layer = 0; layer < L; layer++) {
      for (const kv of ['key', 'value'])
        t.ok(
          model.nodes.some((n) => n.outputs.includes(`new.${layer}.${kv}`)),
          `layer ${layer} ${kv}: written by a node`,
        );
    }
  });
}

t.test('LoRA: per group of projections that read the same input, one down product, skipped unless an adapter changes them', async (t) => {
  const model = buildDecoderGraph(
    spec,
    new CheckpointWeights(FIXTURE_MODEL),
    { maxSequenceLength: 64, lora: true, attention: 'packed', quantize: 'int8' },
    () => {},
  );
  const groups = [['q_proj', 'k_proj', 'v_proj'], ['o_proj'], ['gate_proj', 'up_proj'], ['down_proj']];
  for (const group of groups) {
    const a = usedLoraAName(0, group);
    const downs = allNodes(model.nodes).filter((n) => n.opType === 'MatMul' && n.inputs.includes(a));
    t.equal(downs.length, 1, `${group.join('+')}: one MatMul reads its A`);
    const switches = model.nodes.filter((n) => n.opType === 'If' && n.inputs[0] === loraActiveName(group));
    t.equal(switches.length, L, `${group.join('+')}: an If per layer on ${loraActiveName(group)}`);
    t.ok(
      switches.every((n) => !allNodes(branch(n, 'else_branch').nodes).some((m) => m.opType === 'MatMul' || m.opType === 'Identity')),
      'the branch without adapters multiplies and copies nothing',
    );
    t.ok(
      branch(switches[0], 'then_branch').nodes.some((m) => m.inputs.includes(a)),
      'the branch with adapters reads A',
    );
    t.ok(
      model.inputs.some((i) => i.name === a && i.shape[1] === (group.length === 1 ? 'used_width' : `used_width_x${group.length}`)),
      `${a} is an input`,
    );
  }
  t.notOk(
    model.inputs.some((i) => i.name === 'lora_used.0.q_proj.a'),
    'no per-projection A for a grouped projection',
  );
});

t.test('Graph.subgraph takes the nodes a builder adds; Graph.rename refuses an output already read', async (t) => {
  const g = new Graph();
  const x = g.one('Relu', ['input']);
  const sub = g.subgraph([{ dataType: 1, shape: ['n'] }], () => [g.one('Neg', [x])]);
  t.same(ops(g.nodes), ['Relu'], 'the builder nodes left the outer graph');
  t.same(ops(sub.nodes), ['Neg']);
  t.equal(sub.outputs[0].name, sub.nodes[0].outputs[0], "the subgraph's output is what the builder returned");
  const y = g.one('Abs', [x]);
  t.throws(() => g.rename(x, 'renamed'), /already read/);
  t.equal(g.rename(y, 'renamed'), 'renamed');
  t.same(g.nodes[1].outputs, ['renamed']);
});
