/**
 * Byte strings (tokens, or the tails of tokens) under token ids, as a byte trie in flat typed
 * arrays, so that a token mask can be computed by one walk that prunes rejected prefixes.
 */

export interface TokenTrie {
  readonly nodeCount: number;
  /** Edges of node n are edgeByte/edgeTarget[edgeStart[n] .. edgeStart[n + 1]), bytes ascending. */
  readonly edgeStart: Int32Array;
  readonly edgeByte: Uint8Array;
  readonly edgeTarget: Int32Array;
  /** Tokens whose bytes end exactly at node n are tokenIds[tokenStart[n] .. tokenStart[n + 1]). */
  readonly tokenStart: Int32Array;
  readonly tokenIds: Int32Array;
  /** Node ids are in preorder: the subtree of n is the nodes n .. subtreeEnd[n] - 1, so its tokens are contiguous too. */
  readonly subtreeEnd: Int32Array;
}

/** A byte string to store in a trie under a token id. */
export interface TrieEntry {
  readonly id: number;
  readonly bytes: Uint8Array;
}

/** A trie of the entries (several ids may share one byte string). */
export function buildTokenTrie(entries: readonly TrieEntry[]): TokenTrie {
  // Latin-1 maps each byte to one UTF-16 unit, so string order is byte order.
  const keyed = entries.map((entry) => ({ entry, key: Buffer.from(entry.bytes.buffer, entry.bytes.byteOffset, entry.bytes.length).toString('latin1') }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.entry.id - b.entry.id));
  return buildTrie(keyed.map((item) => item.entry));
}

/** Builds the trie from entries sorted by bytes, so node ids come out in preorder. */
function buildTrie(sorted: readonly TrieEntry[]): TokenTrie {
  const parents: number[] = [];
  const bytesIn: number[] = [];
  const endNodeOfEntry = new Int32Array(sorted.length);
  const path: number[] = [0];
  let nodeCount = 1;
  let previous: Uint8Array = new Uint8Array(0);

  sorted.forEach(({ bytes }, rank) => {
    let common = 0;
    while (common < previous.length && common < bytes.length && previous[common] === bytes[common]) common++;
    for (let depth = common; depth < bytes.length; depth++) {
      const node = nodeCount++;
      parents.push(path[depth]);
      bytesIn.push(bytes[depth]);
      path[depth + 1] = node;
    }
    endNodeOfEntry[rank] = path[bytes.length];
    previous = bytes;
  });

  const edgeStart = new Int32Array(nodeCount + 1);
  for (const parent of parents) edgeStart[parent + 1]++;
  for (let node = 0; node < nodeCount; node++) edgeStart[node + 1] += edgeStart[node];
  const edgeByte = new Uint8Array(parents.length);
  const edgeTarget = new Int32Array(parents.length);
  const fill = edgeStart.slice(0, nodeCount);
  // Child node ids are parent-list index + 1, and children appear in ascending byte order.
  parents.forEach((parent, index) => {
    const edge = fill[parent]++;
    edgeByte[edge] = bytesIn[index];
    edgeTarget[edge] = index + 1;
  });

  const tokenStart = new Int32Array(nodeCount + 1);
  for (const node of endNodeOfEntry) tokenStart[node + 1]++;
  for (let node = 0; node < nodeCount; node++) tokenStart[node + 1] += tokenStart[node];

  const subtreeEnd = new Int32Array(nodeCount);
  for (let node = nodeCount - 1; node >= 0; node--) {
    const lastEdge = edgeStart[node + 1] - 1;
    subtreeEnd[node] = lastEdge >= edgeStart[node] ? subtreeEnd[edgeTarget[lastEdge]] : node + 1;
  }
  // Sorted entry order is already grouped by end node in ascending node order.
  return { nodeCount, edgeStart, edgeByte, edgeTarget, tokenStart, tokenIds: Int32Array.from(sorted, (entry) => entry.id), subtreeEnd };
}
