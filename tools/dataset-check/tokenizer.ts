/** Exact token counts with a Hugging Face tokenizer.json (through @huggingface/tokenizers, as the server uses). */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import type { TokenCounter } from './check.js';

/**
 * `path` is a tokenizer.json or a model directory holding one (tokenizer_config.json next to it is used
 * when present). Counts are without special tokens (no BOS/EOS): the text's own tokens.
 */
export function loadTokenCounter(path: string): TokenCounter {
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, 'tokenizer.json') : path;
  if (!existsSync(file)) throw new Error(`no tokenizer.json at ${file}`);
  const configFile = join(dirname(file), 'tokenizer_config.json');
  const config = existsSync(configFile) ? JSON.parse(readFileSync(configFile, 'utf8')) : {};
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(file, 'utf8')), config);
  return {
    description: `with ${file} (@huggingface/tokenizers, no special tokens)`,
    exact: true,
    count: (text: string) => tokenizer.encode(text, { add_special_tokens: false }).ids.length,
  };
}
