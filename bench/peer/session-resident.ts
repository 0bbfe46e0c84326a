/**
 * The host memory a base model's weights take, measured in a fresh process: the resident set growth while
 * onnxruntime creates a session on the graph the server serves (weights read or mapped, prepacked copies, the
 * session's own buffers), with the engine's session options. A fresh process because inside a running server
 * the allocator reuses memory freed earlier (a graph build, a closed engine) and the growth would read low.
 *
 * The growth also holds the pages of onnxruntime's own code that creating a session first touches (~19 MiB,
 * the same for every graph): not the base's memory, so they are counted apart, from /proc/self/smaps (the growth
 * of the mappings of shared libraries and of the node executable), and `baseBytes` is the growth without them.
 *
 *   node --import tsx bench/peer/session-resident.ts PATH/model.onnx [threads]
 *   # prints {"residentBytes": N, "codeBytes": C, "baseBytes": N - C, ...}
 */
import { readFileSync } from 'node:fs';
import { ort } from '../../src/engine/model/ort.js';
import { ModelRunner } from '../../src/engine/model/model-runner.js';

const [onnxPath, threads = '2'] = process.argv.slice(2);
if (!onnxPath) {
  process.stderr.write('usage: session-resident.ts PATH/model.onnx [threads]\n');
  process.exit(2);
}

/** Resident bytes of code mappings (shared libraries, the node executable), from /proc/self/smaps; 0 where there is none. */
function codeResidentBytes(): number {
  let smaps: string;
  try {
    smaps = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return 0;
  }
  let code = false;
  let bytes = 0;
  for (const line of smaps.split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) code = /\.so(\.|$)|\/node$/.test(mapping[1]);
    else if (code && line.startsWith('Rss:')) bytes += Number(line.split(/\s+/)[1]) * 1024;
  }
  return bytes;
}

const codeBefore = codeResidentBytes();
const before = process.memoryUsage.rss();
const session = await ort.InferenceSession.create(onnxPath, ModelRunner.sessionOptions(['cpu'], Number(threads)));
const after = process.memoryUsage.rss();
const codeBytes = codeResidentBytes() - codeBefore;
const residentBytes = after - before;
process.stdout.write(
  JSON.stringify({ onnxPath, beforeBytes: before, afterBytes: after, residentBytes, codeBytes, baseBytes: residentBytes - codeBytes }) + '\n',
);
await session.release();
