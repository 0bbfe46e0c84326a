/** A small trie over a fixed list of byte strings (enum literals, property names). */
export class ByteTrie {
  private readonly children: Map<number, number>[] = [new Map()];
  private readonly terminals: number[] = [-1];
  /** Bit i set: string i ends in this node's subtree. */
  private readonly subtrees: bigint[] = [0n];

  constructor(strings: readonly Uint8Array[]) {
    strings.forEach((bytes, index) => {
      const bit = 1n << BigInt(index);
      let node = 0;
      this.subtrees[0] |= bit;
      for (const byte of bytes) {
        let next = this.children[node].get(byte);
        if (next === undefined) {
          next = this.children.length;
          this.children.push(new Map());
          this.terminals.push(-1);
          this.subtrees.push(0n);
          this.children[node].set(byte, next);
        }
        node = next;
        this.subtrees[node] |= bit;
      }
      if (this.terminals[node] < 0) this.terminals[node] = index;
    });
  }

  static readonly ROOT = 0;

  /** The child reached by `byte`, or -1. */
  child(node: number, byte: number): number {
    return this.children[node].get(byte) ?? -1;
  }

  /** Index of the (first) string ending exactly here, or -1. */
  terminal(node: number): number {
    return this.terminals[node];
  }

  /** Bit mask of the strings that pass through this node. */
  subtree(node: number): bigint {
    return this.subtrees[node];
  }

  /** Every first byte of the strings. */
  firstBytes(): number[] {
    return [...this.children[0].keys()];
  }
}
