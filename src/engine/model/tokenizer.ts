/** Tokenizer (tokenizer.json + tokenizer_config.json) and chat template (chat_template.jinja or tokenizer_config.json). */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  content: string;
}

export class TextTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly config: Record<string, unknown>;
  private readonly template: Template | null;
  readonly specialTokenIds: Set<number>;
  private byteTable: Uint8Array[] | null = null;

  constructor(modelDir: string) {
    const tokenizerJson = JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8'));
    const configPath = join(modelDir, 'tokenizer_config.json');
    this.config = existsSync(configPath) ? JSON.parse(readFileSync(configPath, 'utf8')) : {};
    this.tokenizer = new Tokenizer(tokenizerJson, this.config);
    this.specialTokenIds = new Set([...this.tokenizer.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    this.template = loadChatTemplate(modelDir, this.config);
  }

  get hasChatTemplate(): boolean {
    return this.template !== null;
  }

  /**
   * Token ids of the text. With `addSpecialTokens: false` the tokenizer's post-processor adds nothing (no
   * BOS/EOS): HF's add_special_tokens=False, for text whose special tokens a chat template already wrote.
   */
  encode(text: string, { addSpecialTokens = true }: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    // No clean-up of spaces before punctuation: it would make streamed text shrink as tokens arrive.
    return this.tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false });
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  get vocabSize(): number {
    return this.tokenizer.get_vocab(true).size;
  }

  /** Renders messages with the model's chat template (or the given one, e.g. an adapter's own). */
  renderChat(messages: ChatMessage[], addGenerationPrompt = true, template: Template | null = this.template): string {
    if (!template) throw new Error('this model has no chat template (chat_template.jinja or tokenizer_config.json chat_template)');
    const tokenName = (key: string): string | undefined => {
      const v = this.config[key];
      return typeof v === 'string' ? v : (v as { content?: string } | undefined)?.content;
    };
    return template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: tokenName('bos_token') ?? '',
      eos_token: tokenName('eos_token') ?? '',
      pad_token: tokenName('pad_token') ?? '',
    });
  }

  /**
   * The raw bytes each token stands for (empty for special tokens), for constrained decoding. Byte-level
   * BPE tokens map through the GPT-2 byte alphabet; other tokenizers fall back to decoding the token alone.
   */
  tokenBytes(): Uint8Array[] {
    if (this.byteTable) return this.byteTable;
    const unicodeToByte = byteLevelDecoderTable();
    const encoder = new TextEncoder();
    const table: Uint8Array[] = [];
    for (const [token, id] of this.tokenizer.get_vocab(true)) {
      if (this.specialTokenIds.has(id)) {
        table[id] = new Uint8Array(0);
        continue;
      }
      const chars = [...token];
      if (chars.every((c) => unicodeToByte.has(c))) table[id] = Uint8Array.from(chars.map((c) => unicodeToByte.get(c)!));
      else table[id] = encoder.encode(this.decode([id], false));
    }
    for (let i = 0; i < table.length; i++) table[i] ??= new Uint8Array(0);
    this.byteTable = table;
    return table;
  }
}

export function loadChatTemplate(dir: string, tokenizerConfig?: Record<string, unknown>): Template | null {
  const file = join(dir, 'chat_template.jinja');
  if (existsSync(file)) return new Template(readFileSync(file, 'utf8'));
  const inline = tokenizerConfig?.chat_template;
  if (typeof inline === 'string') return new Template(inline);
  if (Array.isArray(inline)) {
    const named = (inline as Array<{ name: string; template: string }>).find((t) => t.name === 'default');
    if (named) return new Template(named.template);
  }
  return null;
}

/** GPT-2's byte-to-unicode alphabet, inverted. */
function byteLevelDecoderTable(): Map<string, number> {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = [...bytes];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  return new Map(bytes.map((b, i) => [String.fromCodePoint(chars[i]), b]));
}
