/**
 * A quantized base fuses the projections that read one input (q, k, v; gate, up) into one MatMulNBits each,
 * split after; a float base keeps one Gemm per projection (its weights stay in place in the checkpoint). The
 * fused graph's answers are checked against HF and float32 in reference-quantized.test.ts; this checks the shape
 * of the graph and that each split part is exactly its own projection's output.
 */
import t from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDecoderGraph } from '../../src/engine/model/graph-builder.js';
import { readModelSpec } from '../../src/engine/model/hf-config.js';
import { encodeSafetensors } from '../../src/engine/model/safetensors.js';
import { CheckpointWeights } from '../../src/engine/model/weights.js';
import { FIXTURE_MODEL } from '../helpers/engine.js';
import { writePrequantizedCheckpoint } from '../helpers/prequantized-checkpoint.js';
import { allNodes, branch } from '../helpers/graph-nodes.js';

const spec = readModelSpec(FIXTURE_MODEL);
const build = (quantize: 'none' | 'int8' | 'int4', lora: boolean) =>
  buildDecoderGraph(spec, new CheckpointWeights(FIXTURE_MODEL), { maxSequenceLength: 64, lora, attention: 'packed', quantize }, () => {});
const count = (nodes: Array<{ opType: string }>, op: string) => nodes.filter((n) => n.opType === op).length;

for (const quantize of ['int8', 'int4'] as const) {
  for (const lora of [false, true]) {
    t.test(`${quantize}${lora ? ' with LoRA' : ''}: q/k/v and gate/up are one MatMulNBits each`, async (t) => {
      const model = build(quantize, lora);
      const L = spec.numLayers;
      t.equal(count(model.nodes, 'MatMulNBits'), 4 * L + 1, 'per layer qkv, o, gate+up, down; and the LM head');
      const matmuls = model.nodes.filter((n) => n.opType === 'MatMulNBits');
      const qkv = matmuls.find((n) => n.inputs[1].startsWith('model.layers.0.self_attn.q_proj.weight+'))!;
      t.ok(qkv, 'layer 0 stacks q, k and v');
      const D = spec.headDim;
      t.equal(qkv.attributes!.N, (spec.numHeads + 2 * spec.numKvHeads) * D, 'N = q rows + k rows + v rows');
      const nodes = allNodes(model.nodes);
      const split = nodes.find((n) => n.opType === 'Split' && n.inputs[0] === qkv.outputs[0])!;
      t.equal(split.outputs.length, 3, 'split into q, k and v');
      const sizes = model.inlineInitializers.find((i) => i.name === split.inputs[1])!;
      t.same([...new BigInt64Array(sizes.raw.slice().buffer)].map(Number), [spec.numHeads * D, spec.numKvHeads * D, spec.numKvHeads * D]);
      const gateUp = matmuls.find((n) => n.inputs[1].startsWith('model.layers.0.mlp.gate_proj.weight+'))!;
      t.equal(gateUp.attributes!.N, 2 * spec.intermediateSize, 'gate and up stacked');
      if (!lora) {
        t.ok(model.nodes.includes(split), 'without LoRA the split is in the main graph');
        t.equal(nodes.filter((n) => n.opType === 'Add' && split.outputs.includes(n.inputs[0])).length, 0, 'no LoRA delta');
        return;
      }
      // With LoRA: an If on whether the step's adapters change q, k or v; both branches split, the one with
      // adapters adds each part's own delta.
      const ifNode = model.nodes.find(
        (n) => n.opType === 'If' && branch(n, 'then_branch').nodes.some((m) => m.opType === 'Split' && m.inputs[0] === qkv.outputs[0]),
      )!;
      t.equal(ifNode.inputs[0], 'lora.active.q_proj+k_proj+v_proj', 'switched by the qkv group');
      for (const [name, deltas] of [
        ['then_branch', 3],
        ['else_branch', 0],
      ] as const) {
        const body = branch(ifNode, name).nodes;
        const parts = body.find((n) => n.opType === 'Split' && n.inputs[0] === qkv.outputs[0])!;
        t.ok(parts, `${name}: splits q, k and v`);
        t.equal(body.filter((n) => n.opType === 'Add' && parts.outputs.includes(n.inputs[0])).length, deltas, `${name}: ${deltas} LoRA deltas`);
      }
    });
  }
}

t.test('float32: one Gemm per projection, nothing fused', async (t) => {
  const model = build('none', true);
  t.equal(count(model.nodes, 'Gemm'), 7 * spec.numLayers + 1);
  t.equal(count(model.nodes, 'MatMulNBits'), 0);
});

/** llama-tiny relabelled Qwen2ForCausalLM, with q/k/v biases (Qwen2's attention_bias). */
function withQkvBias(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qkv-bias-'));
  for (const f of readdirSync(FIXTURE_MODEL)) if (f !== 'model.safetensors' && f !== 'config.json') copyFileSync(join(FIXTURE_MODEL, f), join(dir, f));
  const config = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, architectures: ['Qwen2ForCausalLM'], attention_bias: true }));
  const weights = new CheckpointWeights(FIXTURE_MODEL);
  const tensors = weights
    .names()
    .map((name) => ({ name, dtype: 'F32' as const, shape: weights.info(name).shape, data: weights.read(name, weights.info(name).shape) }));
  for (let layer = 0; layer < spec.numLayers; layer++) {
    for (const [p, rows] of [
      ['q_proj', spec.numHeads * spec.headDim],
      ['k_proj', spec.numKvHeads * spec.headDim],
      ['v_proj', spec.numKvHeads * spec.headDim],
    ] as const)
      tensors.push({ name: `model.layers.${layer}.self_attn.${p}.bias`, dtype: 'F32', shape: [rows], data: new Float32Array(rows).fill(0.5) });
  }
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  return dir;
}

t.test("int8 with q/k/v biases (Qwen2): each split part gets its own projection's bias, in order", async (t) => {
  const dir = withQkvBias();
  const biased = readModelSpec(dir);
  t.ok(biased.qkvBias, 'the variant has q/k/v biases');
  const model = buildDecoderGraph(biased, new CheckpointWeights(dir), { maxSequenceLength: 64, lora: false, attention: 'packed', quantize: 'int8' }, () => {});
  for (let layer = 0; layer < biased.numLayers; layer++) {
    const qkv = model.nodes.find((n) => n.opType === 'MatMulNBits' && n.inputs[1].startsWith(`model.layers.${layer}.self_attn.q_proj.weight+`))!;
    const split = model.nodes.find((n) => n.opType === 'Split' && n.inputs[0] === qkv.outputs[0])!;
    const biasOf = split.outputs.map((part) => model.nodes.find((n) => n.opType === 'Add' && n.inputs[0] === part)?.inputs[1]);
    t.same(
      biasOf,
      ['q_proj', 'k_proj', 'v_proj'].map((p) => `model.layers.${layer}.self_attn.${p}.bias`),
      `layer ${layer}`,
    );
  }
});

t.test('a GPTQ checkpoint with k_proj left in float: q and v get a MatMulNBits each, k its Gemm (no fusion)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gptq-float-k-'));
  writePrequantizedCheckpoint(FIXTURE_MODEL, dir, { method: 'gptq', bits: 4, version: 'gptq', gIdx: 'trivial' }, 32, (name) => name.endsWith('k_proj.weight'));
  const model = buildDecoderGraph(
    readModelSpec(dir),
    new CheckpointWeights(dir),
    { maxSequenceLength: 64, lora: false, attention: 'packed', quantize: 'none' },
    () => {},
  );
  const matmuls = model.nodes.filter((n) => n.opType === 'MatMulNBits').map((n) => n.inputs[1]);
  const gemms = model.nodes.filter((n) => n.opType === 'Gemm').map((n) => n.inputs[1]);
  t.ok(matmuls.includes('model.layers.0.self_attn.q_proj.weight.quantized'), 'q alone');
  t.ok(matmuls.includes('model.layers.0.self_attn.v_proj.weight.quantized'), 'v alone');
  t.ok(gemms.includes('model.layers.0.self_attn.k_proj.weight'), 'k in float');
  t.ok(matmuls.includes('model.layers.0.mlp.gate_proj.weight+model.layers.0.mlp.up_proj.weight.quantized'), 'gate and up, both packed, still fused');
  const packedOutputs = new Set(model.nodes.filter((n) => n.opType === 'MatMulNBits').flatMap((n) => n.outputs));
  t.equal(
    model.nodes.filter((n) => n.opType === 'Split' && packedOutputs.has(n.inputs[0])).length,
    spec.numLayers,
    'one split of packed rows per layer (gate/up)',
  );
});
