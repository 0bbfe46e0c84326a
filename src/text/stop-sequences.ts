/**
 * Stop sequences on streamed text, one implementation for both routes: the local engine's TextStream
 * (src/engine/text-stream.ts) and the Bedrock route, which applies them on our side (not every family takes
 * them, Llama does not, and those that do may or may not include the matched sequence in the text).
 *
 * Bounded work per piece: a piece is searched together with the text held back from earlier pieces, and at
 * most (longest stop - 1) characters are ever held back (a tail that is a proper prefix of some stop and so
 * could still become one). The cut is at the first match in the whole text: any earlier start would have
 * been held back, so the first match in (held + piece) is the first in the text.
 */
export class StopSequenceFilter {
  private readonly stops: string[];
  private held = '';
  private stoppedFlag = false;

  constructor(stops: string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  get stopped(): boolean {
    return this.stoppedFlag;
  }

  /** The text held back now (a tail that could still become a stop sequence); '' once stopped. */
  get pending(): string {
    return this.held;
  }

  /** Returns the text that can be released now; after a stop sequence is found it returns ''. */
  push(text: string): string {
    if (this.stoppedFlag) return '';
    const buffer = this.held + text;
    const cut = firstStopIndex(buffer, this.stops);
    if (cut !== -1) {
      this.stoppedFlag = true;
      this.held = '';
      return buffer.slice(0, cut);
    }
    const keep = longestPartialStop(buffer, this.stops);
    this.held = buffer.slice(buffer.length - keep);
    return buffer.slice(0, buffer.length - keep);
  }

  /** The text still held back when the stream ends without completing a stop sequence. */
  flush(): string {
    const rest = this.stoppedFlag ? '' : this.held;
    this.held = '';
    return rest;
  }
}

/** Cuts a complete text at its first stop sequence; `stopped` says whether one was found. */
export function truncateAtStop(text: string, stops: string[]): { text: string; stopped: boolean } {
  const cut = firstStopIndex(
    text,
    stops.filter((s) => s.length > 0),
  );
  return cut === -1 ? { text, stopped: false } : { text: text.slice(0, cut), stopped: true };
}

function firstStopIndex(text: string, stops: string[]): number {
  let first = -1;
  for (const stop of stops) {
    const at = text.indexOf(stop);
    if (at !== -1 && (first === -1 || at < first)) first = at;
  }
  return first;
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop sequence. */
function longestPartialStop(text: string, stops: string[]): number {
  let longest = 0;
  for (const stop of stops) {
    for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
      if (text.endsWith(stop.slice(0, n))) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}
