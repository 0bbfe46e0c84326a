// Checks that @huggingface/tokenizers (the library the server uses) encodes every training text to exactly
// the ids tools/train/bpe.py produced, and decodes them back to the text.
// Usage: node tools/train/verify_tokenizer.mjs MODEL_DIR CASES.jsonl   (each line: {"text": ..., "ids": [...]})
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

const [modelDir, casesFile] = process.argv.slice(2);
if (!modelDir || !casesFile) {
  console.error('usage: node tools/train/verify_tokenizer.mjs MODEL_DIR CASES.jsonl');
  process.exit(2);
}
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8')),
  JSON.parse(readFileSync(join(modelDir, 'tokenizer_config.json'), 'utf8')),
);
let checked = 0;
let bad = 0;
for (const line of readFileSync(casesFile, 'utf8').split('\n')) {
  if (!line) continue;
  const { text, ids } = JSON.parse(line);
  const got = tokenizer.encode(text).ids;
  const same = got.length === ids.length && got.every((v, i) => v === ids[i]);
  const back = tokenizer.decode(got, { skip_special_tokens: true });
  checked++;
  if (!same || back !== text) {
    bad++;
    if (bad <= 5) {
      console.error(`mismatch for ${JSON.stringify(text.slice(0, 120))}`);
      if (!same) console.error(`  python: ${ids.slice(0, 40).join(',')}\n  node:   ${got.slice(0, 40).join(',')}`);
      if (back !== text) console.error(`  decoded: ${JSON.stringify(back.slice(0, 120))}`);
    }
  }
}
console.log(`verify_tokenizer: ${checked} texts, ${bad} mismatches (vocab ${tokenizer.get_vocab(true).size})`);
process.exit(bad === 0 && checked > 0 ? 0 : 1);
