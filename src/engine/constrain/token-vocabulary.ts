/**
 * A model's tokens as byte strings, stored as a byte trie in flat typed arrays so that a
 * token mask can be computed by walking the trie once and pruning rejected prefixes.
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
}

export interface TokenVocabulary {
  /** Number of token ids (the length of the tokenBytes array it was built from). */
  readonly size: number;
  readonly tokenBytes: readonly Uint8Array[];
  readonly eosTokenIds: Int32Array;
  /** Tokens with no bytes (special tokens) and the EOS tokens; none of them is in the trie. */
  readonly specialTokenIds: Int32Array;
  readonly isEos: Uint8Array;
  readonly trie: TokenTrie;
  /** For each byte value, a token consisting of exactly that byte, or -1. */
  readonly singleByteTokenIds: Int32Array;
  /** Some token ends inside a multi-byte UTF-8 character. */
  readonly hasPartialUtf8Tokens: boolean;
}

export function buildTokenVocabulary(tokenBytes: readonly Uint8Array[], eosTokenIds: readonly number[]): TokenVocabulary {
  const size = tokenBytes.length;
  const isEos = new Uint8Array(size);
  for (const id of eosTokenIds) {
    if (!Number.isInteger(id) || id < 0 || id >= size) throw new Error(`EOS token id ${id} is outside the vocabulary (size ${size})`);
    isEos[id] = 1;
  }

  const specialTokenIds: number[] = [];
  const textTokens: { id: number; key: string }[] = [];
  const singleByteTokenIds = new Int32Array(256).fill(-1);
  let hasPartialUtf8Tokens = false;
  for (let id = 0; id < size; id++) {
    const bytes = tokenBytes[id];
    if (bytes.length === 0 || isEos[id]) {
      specialTokenIds.push(id);
      continue;
    }
    if (bytes.length === 1 && singleByteTokenIds[bytes[0]] < 0) singleByteTokenIds[bytes[0]] = id;
    if (!hasPartialUtf8Tokens && endsInsideUtf8Character(bytes)) hasPartialUtf8Tokens = true;
    // Latin-1 maps each byte to one UTF-16 unit, so string order is byte order.
    textTokens.push({ id, key: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1') });
  }
  textTokens.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id - b.id));

  return {
    size,
    tokenBytes,
    eosTokenIds: Int32Array.from(new Set(eosTokenIds)),
    specialTokenIds: Int32Array.from(specialTokenIds),
    isEos,
    trie: buildTrie(textTokens.map((token) => token.id), tokenBytes),
    singleByteTokenIds,
    hasPartialUtf8Tokens,
  };
}

/** Builds the trie from tokens sorted by bytes, so node ids come out in preorder. */
function buildTrie(sortedIds: readonly number[], tokenBytes: readonly Uint8Array[]): TokenTrie {
  const parents: number[] = [];
  const bytesIn: number[] = [];
  const endNodeOfToken = new Int32Array(sortedIds.length);
  const path: number[] = [0];
  let nodeCount = 1;
  let previous: Uint8Array = new Uint8Array(0);

  sortedIds.forEach((id, rank) => {
    const bytes = tokenBytes[id];
    let common = 0;
    while (common < previous.length && common < bytes.length && previous[common] === bytes[common]) common++;
    for (let depth = common; depth < bytes.length; depth++) {
      const node = nodeCount++;
      parents.push(path[depth]);
      bytesIn.push(bytes[depth]);
      path[depth + 1] = node;
    }
    endNodeOfToken[rank] = path[bytes.length];
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
  for (const node of endNodeOfToken) tokenStart[node + 1]++;
  for (let node = 0; node < nodeCount; node++) tokenStart[node + 1] += tokenStart[node];
  // Sorted token order is already grouped by end node in ascending node order.
  return { nodeCount, edgeStart, edgeByte, edgeTarget, tokenStart, tokenIds: Int32Array.from(sortedIds) };
}

function endsInsideUtf8Character(bytes: Uint8Array): boolean {
  // Look back at most 3 bytes for the lead byte of the last character.
  for (let back = 1; back <= Math.min(4, bytes.length); back++) {
    const byte = bytes[bytes.length - back];
    if ((byte & 0xc0) === 0x80) continue;
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back;
  }
  return false;
}
