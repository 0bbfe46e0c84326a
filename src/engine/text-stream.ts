/**
 * Turns generated token ids into text as it streams: holds back an incomplete UTF-8 character and any
 * tail that could still become a stop sequence, and cuts the text at the first stop sequence.
 */
export interface Detokenizer {
  decode(ids: number[], skipSpecialTokens?: boolean): string;
}

export class TextStream {
  private readonly ids: number[] = [];
  private emitted = 0;
  private text = '';
  private stoppedAt = -1;
  private readonly longestStop: number;

  constructor(private readonly tokenizer: Detokenizer, private readonly stops: string[]) {
    this.longestStop = Math.max(0, ...stops.map((s) => s.length));
  }

  get stopped(): boolean {
    return this.stoppedAt >= 0;
  }

  /** Adds a token; returns the text that is now safe to show. */
  push(tokenId: number): string {
    this.ids.push(tokenId);
    const previousLength = this.text.length;
    this.text = this.tokenizer.decode(this.ids);
    if (this.stops.length) {
      const searchFrom = Math.max(0, previousLength - this.longestStop);
      let cut = -1;
      for (const stop of this.stops) {
        const at = this.text.indexOf(stop, searchFrom);
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) {
        this.stoppedAt = cut;
        this.text = this.text.slice(0, cut);
        return this.take(this.text.length);
      }
    }
    let safeEnd = this.text.length;
    if (this.text.endsWith('\uFFFD')) safeEnd--;
    safeEnd -= this.pendingStopPrefix(safeEnd);
    return this.take(Math.max(safeEnd, this.emitted));
  }

  /** At the end of generation: whatever was held back. */
  flush(): string {
    return this.take(this.text.length);
  }

  get fullText(): string {
    return this.text;
  }

  private take(end: number): string {
    const out = this.text.slice(this.emitted, end);
    this.emitted = end;
    return out;
  }

  /** Length of the longest tail of text[0, end) that is a proper prefix of a stop sequence. */
  private pendingStopPrefix(end: number): number {
    let held = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, end - this.emitted); n > held; n--) {
        if (this.text.startsWith(stop.slice(0, n), end - n)) {
          held = n;
          break;
        }
      }
    }
    return held;
  }
}
