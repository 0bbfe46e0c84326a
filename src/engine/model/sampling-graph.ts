/**
 * Token selection inside the graph, so that a device-resident loop reads back one id (and its log-probability)
 * per row instead of a row of logits. It follows `sampleToken` in ../sampling.ts step for step: greedy when
 * the temperature is 0; otherwise candidates within 40 temperatures of the best logit, sorted, cut to top-k,
 * then to the smallest prefix whose probability reaches top-p, and one draw. The uniform draw comes from the
 * host (the request's seeded generator), so a seed reproduces the same tokens on either path.
 *
 * Inputs, one value per logits row: sample_temperature (float, 0 = greedy), sample_top_k (int64, 0 = no cut),
 * sample_top_p (float, 1 = no cut), sample_uniform (float in [0, 1)); and sample_candidates (int64 [1]), the
 * number of sorted candidates to consider: the largest top-k of the sampled rows, or the vocabulary size when
 * one of them has no top-k. Outputs: next_token (int64 [rows]) and next_logprob (float [rows], the chosen
 * token's log-probability under the unmodified logits).
 */
import { ort } from './ort.js';
import { DataType, encodeModel, type OnnxModel } from './onnx-proto.js';
import { Graph } from './graph.js';
import type { RowSampling } from './batch-runner.js';

export const SAMPLING_INPUTS = ['sample_temperature', 'sample_top_k', 'sample_top_p', 'sample_uniform', 'sample_candidates'] as const;

/** Same constant as NEGLIGIBLE_LOGIT_GAP in ../sampling.ts: candidates further below the best carry no float32 mass. */
const NEGLIGIBLE_LOGIT_GAP = 40;

function floatConst(g: Graph, name: string, value: number): string {
  g.inline.push({ name, dataType: DataType.FLOAT, dims: [], raw: new Uint8Array(Float32Array.of(value).buffer) });
  return name;
}

/** Appends the selection nodes after `logits` [rows, vocab] (float32) and names their results. */
export function addSamplingNodes(g: Graph, logits: string): { token: string; logprob: string } {
  const zero = floatConst(g, 'sample.const.zero', 0);
  const one = floatConst(g, 'sample.const.one', 1);
  const minTemperature = floatConst(g, 'sample.const.min_temperature', 1e-6);
  const gap = floatConst(g, 'sample.const.gap', -NEGLIGIBLE_LOGIT_GAP);
  const lastAxis = g.int64('sample.const.last_axis', [-1]);
  const column = (x: string) => g.one('Unsqueeze', [x, lastAxis]);
  const sumLast = (x: string) => g.one('ReduceSum', [x, lastAxis], { keepdims: 1 });

  const greedy = g.one('ArgMax', [logits], { axis: -1, keepdims: 1 });
  const logSumExp = g.one('ReduceLogSumExp', [logits], { axes: [-1], keepdims: 1 });

  const temperature = column('sample_temperature');
  const scaled = g.one('Div', [logits, g.one('Max', [temperature, minTemperature])]);
  const [sorted, sortedIds] = g.node('TopK', [scaled, 'sample_candidates'], { axis: -1, largest: 1, sorted: 1 }, 2);
  const best = g.one('ReduceMax', [sorted], { axes: [-1], keepdims: 1 });
  const shifted = g.one('Sub', [sorted, best]);
  const weights = g.one('Exp', [shifted]);

  // Keep position j when it is within the logit gap and j < top-k (top-k 0 = every candidate).
  const positions = g.one('Range', [g.int64('sample.const.start', [0], []), g.one('Squeeze', ['sample_candidates']), g.int64('sample.const.step', [1], [])]);
  const topK = column('sample_top_k');
  const noTopK = g.one('Equal', [topK, g.int64('sample.const.int_zero', [0], [])]);
  const limit = g.one('Where', [noTopK, 'sample_candidates', topK]);
  const inTopK = g.one('Less', [positions, limit]);
  const nearBest = g.one('GreaterOrEqual', [shifted, gap]);
  const kept = g.one('Where', [g.one('And', [inTopK, nearBest]), weights, zero]);

  // Top-p: keep j while the probability before it is below top_p (the first candidate always stays).
  const total = sumLast(kept);
  const before = g.one('Sub', [g.one('CumSum', [kept, lastAxis]), kept]);
  const topP = column('sample_top_p');
  const underTopP = g.one('Less', [before, g.one('Mul', [topP, total])]);
  const inTopP = g.one('Or', [underTopP, g.one('GreaterOrEqual', [topP, one])]);
  const final = g.one('Where', [inTopP, kept, zero]);

  // The draw: the first candidate whose cumulative weight reaches uniform * total.
  const cumulative = g.one('CumSum', [final, lastAxis]);
  const target = g.one('Mul', [column('sample_uniform'), sumLast(final)]);
  const passed = sumLast(g.one('Cast', [g.one('Less', [cumulative, target])], { to: DataType.INT64 }));
  const lastKept = g.one('Sub', [sumLast(g.one('Cast', [g.one('Greater', [final, zero])], { to: DataType.INT64 })), g.int64('sample.const.int_one', [1], [])]);
  const sampled = g.one('GatherElements', [sortedIds, g.one('Min', [passed, lastKept])], { axis: -1 });

  const chosen = g.one('Where', [g.one('Greater', [temperature, zero]), sampled, greedy]);
  const token = g.one('Squeeze', [chosen, lastAxis]);
  const logprob = g.one('Squeeze', [g.one('Sub', [g.one('GatherElements', [logits, chosen], { axis: -1 }), logSumExp]), lastAxis]);
  return { token, logprob };
}

export function samplingInputs(): OnnxModel['inputs'] {
  return [
    { name: 'sample_temperature', dataType: DataType.FLOAT, shape: ['rows'] },
    { name: 'sample_top_k', dataType: DataType.INT64, shape: ['rows'] },
    { name: 'sample_top_p', dataType: DataType.FLOAT, shape: ['rows'] },
    { name: 'sample_uniform', dataType: DataType.FLOAT, shape: ['rows'] },
    { name: 'sample_candidates', dataType: DataType.INT64, shape: [1] },
  ];
}

/** The selection alone, as a model whose input is `logits` [rows, vocab]: for tests and benchmarks. */
export function encodeSamplingModel(vocabSize: number): Uint8Array {
  const g = new Graph();
  const { token, logprob } = addSamplingNodes(g, 'logits');
  return encodeModel({
    graphName: 'sampling',
    nodes: g.nodes,
    inputs: [{ name: 'logits', dataType: DataType.FLOAT, shape: ['rows', vocabSize] }, ...samplingInputs()],
    outputs: [
      { name: token, dataType: DataType.INT64, shape: ['rows'] },
      { name: logprob, dataType: DataType.FLOAT, shape: ['rows'] },
    ],
    externalInitializers: [],
    inlineInitializers: g.inline,
    opsets: [{ domain: '', version: 17 }],
  });
}

/** A greedy row: what a step feeds when it wants logits (the selection nodes still run, cheaply). */
export const GREEDY_ROW: RowSampling = { temperature: 0, topK: 0, topP: 1, uniform: 0 };

/** The selection inputs for one step, one row per logits row; sample_candidates covers every row's top-k. */
export function samplingFeeds(rows: readonly RowSampling[], vocabSize: number): Record<string, ort.Tensor> {
  const n = rows.length;
  const candidates = Math.max(1, ...rows.map((r) => (r.temperature > 0 ? (r.topK > 0 ? Math.min(r.topK, vocabSize) : vocabSize) : 1)));
  return {
    sample_temperature: new ort.Tensor(
      'float32',
      Float32Array.from(rows, (r) => r.temperature),
      [n],
    ),
    sample_top_k: new ort.Tensor(
      'int64',
      BigInt64Array.from(rows, (r) => BigInt(r.topK)),
      [n],
    ),
    sample_top_p: new ort.Tensor(
      'float32',
      Float32Array.from(rows, (r) => r.topP),
      [n],
    ),
    sample_uniform: new ort.Tensor(
      'float32',
      Float32Array.from(rows, (r) => r.uniform),
      [n],
    ),
    sample_candidates: new ort.Tensor('int64', BigInt64Array.of(BigInt(candidates)), [1]),
  };
}
