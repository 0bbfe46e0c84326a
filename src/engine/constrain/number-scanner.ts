/**
 * JSON number grammar as a DFA over (phase, digit count). Digit counts are bounded so that
 * every generated number parses to a finite double and integers stay exact:
 * at most 15 integer-part digits (|n| < 10^15) and at most 2 exponent digits.
 */
import { DIGIT_0, DOT, isDigit, LOWER_E, MINUS, PLUS, UPPER_E } from './json-bytes.js';

export const MAX_INTEGER_DIGITS = 15;
export const MAX_EXPONENT_DIGITS = 2;

const AFTER_MINUS = 0;
const AFTER_LEADING_ZERO = 1;
const INTEGER_DIGITS = 2;
const AFTER_DOT = 3;
const FRACTION_DIGITS = 4;
const AFTER_E = 5;
const AFTER_EXPONENT_SIGN = 6;
const EXPONENT_DIGITS = 7;

export interface NumberPosition {
  phase: number;
  digits: number;
}

const REJECTED: NumberPosition = { phase: -1, digits: 0 };

/** Where the first byte of a number leads, or phase -1. */
export function startNumber(byte: number): NumberPosition {
  if (byte === MINUS) return { phase: AFTER_MINUS, digits: 0 };
  if (byte === DIGIT_0) return { phase: AFTER_LEADING_ZERO, digits: 1 };
  if (isDigit(byte)) return { phase: INTEGER_DIGITS, digits: 1 };
  return REJECTED;
}

/** The next position, or phase -1 when `byte` cannot continue the number. */
export function continueNumber(phase: number, digits: number, byte: number, integer: boolean): NumberPosition {
  const digit = isDigit(byte);
  const exponentMark = byte === LOWER_E || byte === UPPER_E;
  switch (phase) {
    case AFTER_MINUS:
      if (byte === DIGIT_0) return { phase: AFTER_LEADING_ZERO, digits: 1 };
      return digit ? { phase: INTEGER_DIGITS, digits: 1 } : REJECTED;
    case AFTER_LEADING_ZERO:
    case INTEGER_DIGITS:
      if (digit) return phase === INTEGER_DIGITS && digits < MAX_INTEGER_DIGITS ? { phase, digits: digits + 1 } : REJECTED;
      if (integer) return REJECTED;
      if (byte === DOT) return { phase: AFTER_DOT, digits: 0 };
      return exponentMark ? { phase: AFTER_E, digits: 0 } : REJECTED;
    case AFTER_DOT:
      return digit ? { phase: FRACTION_DIGITS, digits: 0 } : REJECTED;
    case FRACTION_DIGITS:
      if (digit) return { phase, digits: 0 };
      return exponentMark ? { phase: AFTER_E, digits: 0 } : REJECTED;
    case AFTER_E:
      if (byte === PLUS || byte === MINUS) return { phase: AFTER_EXPONENT_SIGN, digits: 0 };
      return digit ? { phase: EXPONENT_DIGITS, digits: 1 } : REJECTED;
    case AFTER_EXPONENT_SIGN:
      return digit ? { phase: EXPONENT_DIGITS, digits: 1 } : REJECTED;
    case EXPONENT_DIGITS:
      return digit && digits < MAX_EXPONENT_DIGITS ? { phase, digits: digits + 1 } : REJECTED;
    default:
      return REJECTED;
  }
}

/** The bytes so far form a complete number. */
export function isNumberComplete(phase: number): boolean {
  return phase === AFTER_LEADING_ZERO || phase === INTEGER_DIGITS || phase === FRACTION_DIGITS || phase === EXPONENT_DIGITS;
}
