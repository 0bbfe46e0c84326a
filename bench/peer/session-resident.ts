/**
 * The host memory a base model's weights take, measured in a fresh process: the resident set growth while
 * onnxruntime creates a session on the graph the server serves (weights read or mapped, prepacked copies, the
 * session's own buffers), with the engine's session options. A fresh process because inside a running server
 * the allocator reuses memory freed earlier (a graph build, a closed engine) and the growth would read low.
 *
 *   node --import tsx bench/peer/session-resident.ts PATH/model.onnx [threads]   # prints {"residentBytes": N, ...}
 */
import { ort } from '../../src/engine/model/ort.js';
import { ModelRunner } from '../../src/engine/model/model-runner.js';

const [onnxPath, threads = '2'] = process.argv.slice(2);
if (!onnxPath) {
  process.stderr.write('usage: session-resident.ts PATH/model.onnx [threads]\n');
  process.exit(2);
}
const before = process.memoryUsage.rss();
const session = await ort.InferenceSession.create(onnxPath, ModelRunner.sessionOptions(['cpu'], Number(threads)));
const after = process.memoryUsage.rss();
process.stdout.write(JSON.stringify({ onnxPath, beforeBytes: before, afterBytes: after, residentBytes: after - before }) + '\n');
await session.release();
