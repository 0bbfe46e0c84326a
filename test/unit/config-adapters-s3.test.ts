/** The adapter source settings: an s3:// URL is kept as it is (not resolved as a path) and checked at start. */
import t from 'tap';
import { ConfigError, loadConfig, resolvePaths } from '../../src/config.js';

t.test('an S3 URL is the adapters source, with its cache settings', async (t) => {
  const config = resolvePaths(
    loadConfig({ argv: ['--adapters', 's3://my-bucket/team/', '--adapter-cache-mb', '512', '--adapter-check-interval-s', '60'], env: {} }),
    '/srv',
  );
  t.equal(config.model.adaptersDir, 's3://my-bucket/team/');
  t.equal(config.model.adapterCacheDir, '/srv/.cache/adapters');
  t.equal(config.model.adapterCacheMb, 512);
  t.equal(config.model.adapterCheckIntervalS, 60);
  t.equal(loadConfig({ argv: [], env: { ADAPTERS_DIR: 's3://b-1/x' } }).model.adaptersDir, 's3://b-1/x', 'from the environment');
});

t.test('a malformed S3 URL or a bad limit is refused at start with the setting named', async (t) => {
  let error: unknown;
  try {
    loadConfig({ argv: ['--adapters', 's3://Not_A_Bucket/x'], env: {} });
  } catch (e) {
    error = e;
  }
  t.ok(error instanceof ConfigError);
  t.match((error as Error).message, /model\.adaptersDir "s3:\/\/Not_A_Bucket\/x" does not name a valid S3 bucket/);
  t.throws(() => loadConfig({ argv: ['--adapter-max-mb', '0'], env: {} }), /model\.adapterMaxMb must be an integer from 1/);
});
