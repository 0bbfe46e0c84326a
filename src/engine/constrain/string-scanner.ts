/**
 * The inside of a JSON string as a byte-level DFA: escapes, \u hex digits and UTF-8
 * well-formedness (no overlongs, no surrogates encoded in UTF-8, nothing above U+10FFFF).
 * Transitions are flat tables indexed by `state * 256 + byte`.
 */

/** A complete character boundary: the string may close here. */
export const STRING_CHAR = 0;
const AFTER_BACKSLASH = 1;
const HEX_NEEDED_4 = 2;
const HEX_NEEDED_3 = 3;
const HEX_NEEDED_2 = 4;
const HEX_NEEDED_1 = 5;
const CONT_NEEDED_1 = 6;
const CONT_NEEDED_2 = 7;
const CONT_NEEDED_2_AFTER_E0 = 8;
const CONT_NEEDED_2_AFTER_ED = 9;
const CONT_NEEDED_3 = 10;
const CONT_NEEDED_3_AFTER_F0 = 11;
const CONT_NEEDED_3_AFTER_F4 = 12;
export const STRING_STATE_COUNT = 13;

export const STRING_REJECT = -1;
/** The unescaped quote that ends the string. */
export const STRING_CLOSE = -2;

function isHex(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

function buildTable(escapeBytes: string): Int8Array {
  const table = new Int8Array(STRING_STATE_COUNT * 256).fill(STRING_REJECT);
  const set = (state: number, from: number, to: number, next: number) => {
    for (let byte = from; byte <= to; byte++) table[state * 256 + byte] = next;
  };

  set(STRING_CHAR, 0x20, 0x7f, STRING_CHAR);
  set(STRING_CHAR, 0x22, 0x22, STRING_CLOSE);
  set(STRING_CHAR, 0x5c, 0x5c, AFTER_BACKSLASH);
  set(STRING_CHAR, 0xc2, 0xdf, CONT_NEEDED_1);
  set(STRING_CHAR, 0xe0, 0xe0, CONT_NEEDED_2_AFTER_E0);
  set(STRING_CHAR, 0xe1, 0xec, CONT_NEEDED_2);
  set(STRING_CHAR, 0xed, 0xed, CONT_NEEDED_2_AFTER_ED);
  set(STRING_CHAR, 0xee, 0xef, CONT_NEEDED_2);
  set(STRING_CHAR, 0xf0, 0xf0, CONT_NEEDED_3_AFTER_F0);
  set(STRING_CHAR, 0xf1, 0xf3, CONT_NEEDED_3);
  set(STRING_CHAR, 0xf4, 0xf4, CONT_NEEDED_3_AFTER_F4);

  for (const ch of escapeBytes) {
    const byte = ch.charCodeAt(0);
    table[AFTER_BACKSLASH * 256 + byte] = byte === 0x75 /* u */ ? HEX_NEEDED_4 : STRING_CHAR;
  }
  for (let byte = 0; byte < 256; byte++) {
    if (!isHex(byte)) continue;
    table[HEX_NEEDED_4 * 256 + byte] = HEX_NEEDED_3;
    table[HEX_NEEDED_3 * 256 + byte] = HEX_NEEDED_2;
    table[HEX_NEEDED_2 * 256 + byte] = HEX_NEEDED_1;
    table[HEX_NEEDED_1 * 256 + byte] = STRING_CHAR;
  }

  set(CONT_NEEDED_1, 0x80, 0xbf, STRING_CHAR);
  set(CONT_NEEDED_2, 0x80, 0xbf, CONT_NEEDED_1);
  set(CONT_NEEDED_2_AFTER_E0, 0xa0, 0xbf, CONT_NEEDED_1);
  set(CONT_NEEDED_2_AFTER_ED, 0x80, 0x9f, CONT_NEEDED_1);
  set(CONT_NEEDED_3, 0x80, 0xbf, CONT_NEEDED_2);
  set(CONT_NEEDED_3_AFTER_F0, 0x90, 0xbf, CONT_NEEDED_2);
  set(CONT_NEEDED_3_AFTER_F4, 0x80, 0x8f, CONT_NEEDED_2);
  return table;
}

/** Any JSON string: all of JSON's escapes. */
export const VALUE_STRING_TABLE = buildTable('"\\/bfnrtu');

/**
 * Object keys that must not collide with declared property names: `\/` and `\u` are
 * refused so that every key has exactly one spelling (the one JSON.stringify writes),
 * which lets raw bytes be compared with the declared names.
 */
export const CANONICAL_KEY_TABLE = buildTable('"\\bfnrt');

/** The two string syntaxes, indexing STRING_TABLES. */
export const StringSyntax = { ANY: 0, CANONICAL_KEY: 1 } as const;
export const STRING_TABLES: readonly Int8Array[] = [VALUE_STRING_TABLE, CANONICAL_KEY_TABLE];
