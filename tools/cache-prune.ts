/**
 * Cleans the ONNX graph cache by hand: `npm run cache:prune` evicts least recently used entries until the cache
 * fits its bound (--cache-max-mb, CACHE_MAX_MB or the config file; the server does the same at start), and
 * removes leftovers of interrupted builds. `--all` removes every entry. The cache folder is the server's
 * (--cache-dir / CACHE_DIR / config). Run it while no server is starting from that folder.
 *
 *   npm run cache:prune                        # down to the configured bound
 *   npm run cache:prune -- --cache-max-mb 4096 # down to 4 GiB
 *   npm run cache:prune -- --all --cache-dir /var/cache/lora-server
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, resolvePaths } from '../src/config.js';
import { listEntries, pruneCache } from '../src/engine/model/graph-cache.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write('Usage: npm run cache:prune -- [--all] [--cache-dir DIR] [--cache-max-mb N] [--config FILE]\n');
  process.exit(0);
}
const all = argv.includes('--all');
let config;
try {
  config = resolvePaths(loadConfig({ argv: argv.filter((a) => a !== '--all'), defaultConfigFile: join(ROOT, 'config', 'default.json') }), ROOT);
} catch (e) {
  if (e instanceof ConfigError) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  throw e;
}
const { cacheDir, cacheMaxMb } = config.model;
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const before = listEntries(cacheDir);
const { removed, keptBytes } = pruneCache(cacheDir, all ? 0 : cacheMaxMb * 2 ** 20);
for (const e of removed) process.stdout.write(`removed ${e.dir} (${mib(e.bytes)}, last used ${new Date(e.lastUsedMs).toISOString()})\n`);
process.stdout.write(
  `${cacheDir}: ${before.length - removed.length} of ${before.length} entries kept, ${mib(keptBytes)} (bound ${all ? 0 : cacheMaxMb} MiB)\n`,
);
