/** Fields of OpenAI responses: completion ids, creation times, text offsets in code points. */
import { randomBytes } from 'node:crypto';

export function completionId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Length in code points (OpenAI's text_offset counts characters as Python does). */
export function codePoints(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff || i + 1 >= text.length) n++;
    else {
      const d = text.charCodeAt(i + 1);
      n++;
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  return n;
}
