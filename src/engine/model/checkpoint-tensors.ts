/**
 * Every tensor of a checkpoint must be accounted for: one that the graph does not read means the checkpoint is
 * not what config.json says (a Qwen3 checkpoint labelled Qwen2ForCausalLM would lose its q_norm/k_norm and answer
 * garbage), so the start is refused naming it. A few tensors are known to be harmless to skip, listed here with
 * the reason. A missing tensor is refused by CheckpointWeights.read.
 */
import type { ModelSpec } from './hf-config.js';
import { ModelConfigError } from './hf-config.js';
import type { CheckpointWeights } from './weights.js';

/** The tensors skipped on purpose, and why (as transformers skips them). */
export function harmlessReason(spec: ModelSpec, name: string): string | null {
  if (/(^|\.)rotary_emb\.inv_freq$/.test(name)) return 'rotary frequencies, recomputed from config.json';
  if (name === 'lm_head.weight' && spec.tieWordEmbeddings) return 'tie_word_embeddings is true: the output projection is the embedding matrix';
  return null;
}

/** Tensors that some architecture reads, to tell the user which architecture the checkpoint may really be. */
const ARCHITECTURE_HINTS: Array<{ pattern: RegExp; hint: string; usedBy: (spec: ModelSpec) => boolean }> = [
  { pattern: /\.self_attn\.(q_norm|k_norm)\.weight$/, hint: 'q_norm/k_norm belong to Qwen3ForCausalLM', usedBy: (spec) => spec.qkNorm },
  { pattern: /\.self_attn\.[qkv]_proj\.bias$/, hint: 'q/k/v biases belong to Qwen2ForCausalLM', usedBy: (spec) => spec.qkvBias },
];

/**
 * Before the graph build (headers only, so a mislabelled checkpoint is refused in a second, not after a build of
 * minutes): tensors of the kinds above that this architecture does not use. checkEveryTensorUsed catches the rest.
 */
export function checkNoForeignTensors(spec: ModelSpec, weights: CheckpointWeights): void {
  for (const h of ARCHITECTURE_HINTS) {
    if (h.usedBy(spec)) continue;
    const foreign = weights.names().filter((n) => h.pattern.test(n));
    if (foreign.length) {
      throw new ModelConfigError(
        weights.modelDir,
        `the checkpoint holds ${foreign.length} tensor(s) that ${spec.architecture} does not use: ${foreign.slice(0, 4).join(', ')}${foreign.length > 4 ? ` and ${foreign.length - 4} more` : ''}. Serving without them would not compute what the model's authors trained; check "architectures" in config.json (${h.hint})`,
      );
    }
  }
}

/**
 * After the graph build: throws ModelConfigError naming the tensors nothing read (other than harmless ones);
 * returns the harmless ones that were skipped, with their reason, for the start-up log.
 */
export function checkEveryTensorUsed(spec: ModelSpec, weights: CheckpointWeights): Array<{ tensor: string; reason: string }> {
  const skipped: Array<{ tensor: string; reason: string }> = [];
  const unused: string[] = [];
  for (const name of weights.unusedTensors()) {
    const reason = harmlessReason(spec, name);
    if (reason) skipped.push({ tensor: name, reason });
    else unused.push(name);
  }
  if (unused.length) {
    const shown = unused.slice(0, 4).join(', ') + (unused.length > 4 ? ` and ${unused.length - 4} more` : '');
    const hints = ARCHITECTURE_HINTS.filter((h) => unused.some((n) => h.pattern.test(n))).map((h) => h.hint);
    throw new ModelConfigError(
      weights.modelDir,
      `the checkpoint holds ${unused.length} tensor(s) that ${spec.architecture} does not use: ${shown}. ` +
        `Serving without them would not compute what the model's authors trained; check "architectures" in config.json` +
        (hints.length ? ` (${hints.join('; ')})` : ''),
    );
  }
  return skipped;
}
