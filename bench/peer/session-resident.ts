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
 * The first session in a process also pays onnxruntime's own start (its environment, kernel registry and
 * allocators: ~9 MiB on a 2-layer graph), which a second base would not pay again. So the process then creates
 * a second session on the same graph, keeping the first, and measures its growth the same way:
 * `secondSessionBaseBytes`, the memory one more copy of the base takes once onnxruntime runs. Both sessions map
 * the graph's files separately, so the second's pages count in full (the process holds the base twice).
 *
 *   node --import tsx bench/peer/session-resident.ts PATH/model.onnx [threads]
 *   # prints {"residentBytes": N, "codeBytes": C, "mappedUnreadBytes": M, "baseBytes": N - C + M,
 *   #         "secondSessionBaseBytes": ..., ...}
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
const options = ModelRunner.sessionOptions(['cpu'], Number(threads));

/** Creates a session on the graph; the resident growth it caused, less code pages, and the mapped pages not read yet. */
async function measureSession(): Promise<{ session: ort.InferenceSession; residentBytes: number; codeBytes: number; mappedUnreadBytes: number }> {
  const mappedBefore = mappingBytes(graphDir);
  const before = process.memoryUsage.rss();
  const session = await ort.InferenceSession.create(onnxPath, options);
  const residentBytes = process.memoryUsage.rss() - before;
  const mappedAfter = mappingBytes(graphDir);
  return { session, residentBytes, codeBytes: mappedAfter.code - mappedBefore.code, mappedUnreadBytes: mappedAfter.mappedUnread - mappedBefore.mappedUnread };
}

const first = await measureSession();
const second = await measureSession();
const atCreationBytes = first.residentBytes - first.codeBytes;
process.stdout.write(
  JSON.stringify({
    onnxPath,
    residentBytes: first.residentBytes,
    codeBytes: first.codeBytes,
    atCreationBytes,
    mappedUnreadBytes: first.mappedUnreadBytes,
    baseBytes: atCreationBytes + first.mappedUnreadBytes,
    secondSessionBaseBytes: second.residentBytes - second.codeBytes + second.mappedUnreadBytes,
  }) + '\n',
);
await second.session.release();
await first.session.release();
