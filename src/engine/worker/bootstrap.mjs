// The engine worker's entry, plain JavaScript so that Node runs it without a loader: a module hook
// registered on the main thread with --import tsx does not reach worker threads (Node 20), so when the
// real entry (workerData.entry) is TypeScript, tsx is registered here first. From the build (dist/) the
// entry is .js and tsx is not needed. tsconfig.build.json (allowJs) copies this file into dist/.
import { workerData } from 'node:worker_threads';

const entry = workerData.entry;
if (entry.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(entry);
