/**
 * The host memory a base model's weights take, measured in a fresh process: the resident set growth while
 * onnxruntime creates a session on the graph the server serves (weights read or mapped, prepacked copies, the
 * session's own buffers), with the engine's session options. A fresh process because inside a running server
 * the allocator reuses memory freed earlier (a graph build, a closed engine) and the growth would read low.
 *
 * The growth also holds the pages of onnxruntime's own code that creating a session first touches (~19 MiB,
 * the same for every graph): not the base's memory, so they are counted apart, from /proc/self/smaps (the growth
 * of the mappings of shared libraries and of the node executable).
 *
 * Initializers that no kernel prepacks stay mapped from the graph's files (its data file, or a checkpoint it
 * reads in place), and a page of them becomes resident only when read: the embedding matrix's gather reads only
 * the rows of the tokens it is given. A server that has run a while has read most of them, so `baseBytes`
 * counts every such page as resident (the mapped size of those mappings, not their resident part): the memory
 * the base takes once every row has been used. `atCreationBytes` is the growth at creation, without code pages.
 *
 *   node --import tsx bench/peer/session-resident.ts PATH/model.onnx [threads]
 *   # prints {"residentBytes": N, "codeBytes": C, "mappedUnreadBytes": M, "baseBytes": N - C + M, ...}
 */
import { readFileSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import { ort } from '../../src/engine/model/ort.js';
import { ModelRunner } from '../../src/engine/model/model-runner.js';

const [onnxPath, threads = '2'] = process.argv.slice(2);
if (!onnxPath) {
  process.stderr.write('usage: session-resident.ts PATH/model.onnx [threads]\n');
  process.exit(2);
}

interface MappingBytes {
  /** Resident bytes of code mappings (shared libraries, the node executable). */
  code: number;
  /** Bytes of mappings of the graph's files (its data file, a checkpoint it reads in place) that are mapped but not resident. */
  mappedUnread: number;
}

/** From /proc/self/smaps; zeros where there is none. */
function mappingBytes(graphDir: string): MappingBytes {
  let smaps: string;
  try {
    smaps = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return { code: 0, mappedUnread: 0 };
  }
  const out = { code: 0, mappedUnread: 0 };
  let kind: 'code' | 'data' | null = null;
  let size = 0;
  for (const line of smaps.split('\n')) {
    const mapping = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const path = mapping[3];
      kind = /\.so(\.|$)|\/node$/.test(path) ? 'code' : path.startsWith(graphDir) ? 'data' : null;
      size = parseInt(mapping[2], 16) - parseInt(mapping[1], 16);
    } else if (kind && line.startsWith('Rss:')) {
      const rss = Number(line.split(/\s+/)[1]) * 1024;
      if (kind === 'code') out.code += rss;
      else out.mappedUnread += size - rss;
    }
  }
  return out;
}

const graphDir = dirname(realpathSync(onnxPath)) + '/';
const codeBefore = mappingBytes(graphDir).code;
const before = process.memoryUsage.rss();
const session = await ort.InferenceSession.create(onnxPath, ModelRunner.sessionOptions(['cpu'], Number(threads)));
const after = process.memoryUsage.rss();
const mappings = mappingBytes(graphDir);
const codeBytes = mappings.code - codeBefore;
const residentBytes = after - before;
const atCreationBytes = residentBytes - codeBytes;
process.stdout.write(
  JSON.stringify({
    onnxPath,
    beforeBytes: before,
    afterBytes: after,
    residentBytes,
    codeBytes,
    atCreationBytes,
    mappedUnreadBytes: mappings.mappedUnread,
    baseBytes: atCreationBytes + mappings.mappedUnread,
  }) + '\n',
);
await session.release();
