/**
 * Property tests: sampling with random logits under the mask always yields text that
 * JSON.parse and validateJson accept, and no step ever has zero allowed tokens.
 */
import t from 'tap';
import fc from 'fast-check';
import { compileJsonConstraint, validateJson, type JsonConstraint, type JsonSchema } from '../../src/engine/constrain/index.js';
import { seededRandom, syntheticVocabulary } from './fixtures/synthetic-vocabulary.js';
import { TEST_SCHEMAS } from './fixtures/schemas.js';

const synthetic = syntheticVocabulary();
const { vocabulary, tokens, eosId } = synthetic;
const MAX_STEPS = 600;
const single = (text: string) => vocabulary.singleByteTokenIds[text.charCodeAt(0)];
/** After `finishAfter` steps these get large logit boosts, steering the sample towards an end. */
const FINISH_BIASES: [number, number][] = [
  [eosId, 40],
  [single('}'), 25],
  [single(']'), 25],
  [single('"'), 30],
  [single('0'), 8],
  [single(':'), 8],
  [single(','), -10],
];
/** Before that, structure-opening tokens are favoured and whitespace-only ones disfavoured, for deeper samples. */
const EXPLORE_BIASES = tokens.map((bytes) => {
  if (bytes.length === 0) return 0;
  if (bytes.every((byte) => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09)) return -4;
  return bytes.some((byte) => byte === 0x7b || byte === 0x5b || byte === 0x2c || byte === 0x3a) ? 3 : 0;
});
const utf8 = new TextDecoder('utf-8', { fatal: true });

interface SampleRun {
  seed: number;
  temperature: number;
  finishAfter: number;
  compareWithBruteForce: boolean;
}

function sample(constraint: JsonConstraint, run: SampleRun): { bytes: Uint8Array; finished: boolean; problems: string[] } {
  const random = seededRandom(run.seed);
  const state = constraint.start();
  const output: number[] = [];
  const problems: string[] = [];
  const logits = new Float32Array(vocabulary.size + 3);
  for (let step = 0; step < MAX_STEPS && !state.isFinished(); step++) {
    for (let id = 0; id < logits.length; id++) logits[id] = (random() + random() + random() - 1.5) * 4;
    if (step >= run.finishAfter) for (const [id, bias] of FINISH_BIASES) logits[id] += bias;
    else for (let id = 0; id < EXPLORE_BIASES.length; id++) logits[id] += EXPLORE_BIASES[id];
    state.maskLogits(logits);

    const allowed = state.allowedTokenCount();
    const finite = logits.reduce((count, value) => count + (value === -Infinity ? 0 : 1), 0);
    if (allowed === 0) problems.push(`step ${step}: no token allowed`);
    if (finite !== allowed) problems.push(`step ${step}: ${finite} finite logits but ${allowed} allowed tokens`);
    if (run.compareWithBruteForce) {
      const byMask = state.allowedTokenIds().join(',');
      const byAccept = Array.from({ length: vocabulary.size }, (_, id) => id)
        .filter((id) => state.allows(id))
        .join(',');
      if (byMask !== byAccept) problems.push(`step ${step}: mask and accept disagree`);
    }
    if (problems.length > 0) break;

    const token = pick(logits, run.temperature, random);
    state.accept(token);
    if (token !== eosId) output.push(...tokens[token]);
  }
  return { bytes: Uint8Array.from(output), finished: state.isFinished(), problems };
}

function pick(logits: Float32Array, temperature: number, random: () => number): number {
  let best = 0;
  for (let id = 1; id < logits.length; id++) if (logits[id] > logits[best]) best = id;
  if (temperature === 0) return best;
  let total = 0;
  const weights = new Float64Array(logits.length);
  for (let id = 0; id < logits.length; id++) total += weights[id] = Math.exp((logits[id] - logits[best]) / temperature);
  let threshold = random() * total;
  for (let id = 0; id < logits.length; id++) {
    threshold -= weights[id];
    if (threshold <= 0 && weights[id] > 0) return id;
  }
  return best;
}

const runArbitrary = fc.record({
  seed: fc.integer({ min: 1, max: 0x7fffffff }),
  temperature: fc.constantFrom(0, 0.3, 1, 2.5),
  finishAfter: fc.integer({ min: 0, max: 120 }),
  compareWithBruteForce: fc.boolean(),
});

for (const [name, schema] of Object.entries(TEST_SCHEMAS)) {
  t.test(`sampled outputs are valid: ${name}`, async (t) => {
    const constraint = compileJsonConstraint(schema, vocabulary);
    let nonTrivial = 0;
    let longest = '';
    fc.assert(
      fc.property(runArbitrary, (run) => {
        const result = sample(constraint, run);
        if (result.problems.length > 0) throw new Error(result.problems.join('; '));
        if (!result.finished) throw new Error(`no EOS within ${MAX_STEPS} steps`);
        const text = utf8.decode(result.bytes);
        const value: unknown = JSON.parse(text);
        const errors = validateJson(value, schema as JsonSchema | null);
        if (errors.length > 0) throw new Error(`${JSON.stringify(text)}: ${errors.join('; ')}`);
        if (text.length > 20) nonTrivial++;
        if (text.length > longest.length) longest = text;
      }),
      { seed: 20240611, numRuns: 40 },
    );
    t.ok(nonTrivial > 5, `most samples are not minimal (${nonTrivial} of 40 longer than 20 characters)`);
    t.comment(`longest sample: ${JSON.stringify(longest.slice(0, 300))}`);
  });
}
