/**
 * Process entry: configuration -> app -> listen -> start the engine in its worker thread (readyz shows its
 * start-up phase, and turns 200 when it is ready) -> drain on SIGTERM (in-flight requests finish, then the
 * worker releases the model and is terminated).
 */
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import closeWithGrace from 'close-with-grace';
import pino from 'pino';
import { attachEngine, buildApp } from './app.js';
import { ConfigError, helpText, loadConfig, resolvePaths, type Config } from './config.js';
import { EngineClient, StartupError } from './engine/worker/engine-client.js';
import { TextTokenizer } from './engine/model/tokenizer.js';
import { exposureProblem } from './security/keys.js';

const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DRAIN_DEADLINE_MS = Number(process.env.DRAIN_DEADLINE_MS ?? 30_000);
/** Tries to load the model when the cause of a failure may pass (EMFILE, EAGAIN, EIO...), before exiting. */
const START_ATTEMPTS = 3;

export function engineOptionsFrom(config: Config) {
  const e = config.engine;
  return {
    modelDir: config.model.dir,
    adaptersDir: config.model.adaptersDir,
    adapterCacheDir: config.model.adapterCacheDir,
    adapterCacheBytes: config.model.adapterCacheMb * 1024 * 1024,
    adapterMaxBytes: config.model.adapterMaxMb * 1024 * 1024,
    adapterCheckIntervalMs: config.model.adapterCheckIntervalS * 1000,
    cacheDir: config.model.cacheDir,
    graphCacheMaxBytes: config.model.cacheMaxMb * 1024 * 1024,
    executionProviders: config.model.executionProviders,
    stateResidency: config.model.stateResidency,
    dtype: config.model.dtype,
    quantize: config.model.quantize,
    ...(config.model.quantizeBlockSize !== 'auto' ? { quantizeBlockSize: Number(config.model.quantizeBlockSize) } : {}),
    intraOpThreads: config.model.intraOpThreads,
    maxBatch: e.maxBatch,
    maxBatchTokens: e.maxBatchTokens,
    maxQueue: e.maxQueue,
    adapterSlots: e.adapterSlots,
    maxLoraRank: e.maxLoraRank,
    hostCacheBytes: e.hostCacheMb * 1024 * 1024,
    maxSequenceLength: e.maxSequenceLength,
    prefillChunk: e.prefillChunk,
    kvCacheBudgetBytes: e.kvCacheMb * 1024 * 1024,
    requestTimeoutMs: e.requestTimeoutMs,
    generationConfig: e.generationConfig,
  };
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(helpText());
    return;
  }
  let config: Config;
  try {
    config = resolvePaths(loadConfig({ defaultConfigFile: join(PROJECT_ROOT, 'config', 'default.json') }), PROJECT_ROOT);
    const exposed = exposureProblem(config);
    if (exposed) throw new ConfigError([exposed]);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const logger = pino({
    level: config.server.logLevel,
    redact: { paths: ['req.headers.authorization', 'headers.authorization', 'apiKey', '*.apiKey'], censor: '[redacted]' },
  });
  const app = await buildApp({ config, logger });
  // The HTTP thread tokenizes prompts with its own copy of the tokenizer. Building it blocks this thread
  // (tenths of a second for a large vocabulary), so it happens before listening; the engine's worker reports
  // a tokenizer that cannot be loaded as a start-up failure.
  let tokenizer: TextTokenizer | undefined;
  try {
    tokenizer = new TextTokenizer(config.model.dir);
  } catch (e) {
    logger.warn({ err: e }, 'the tokenizer could not be loaded');
  }
  await app.listen({ host: config.server.host, port: config.server.port });

  const spawnEngine = () =>
    EngineClient.spawn(engineOptionsFrom(config), {
      log: logger,
      tokenizer,
      onPhase: (phase, detail) => {
        if (phase === 'ready') return;
        if (phase === 'failed') {
          // The worker died after it was ready (a failed start is handled below): not ready any more.
          if (app.engineState.engine) {
            app.engineState.engine = null;
            app.engineState.phase = phase;
            app.engineState.error = detail ?? 'the engine failed';
          }
          return;
        }
        app.engineState.phase = phase;
        app.engineState.phaseDetail = detail;
        logger.info({ phase, ...(detail ? { detail } : {}) }, 'engine start-up');
      },
    });
  let engine = spawnEngine();

  // The drain deadline is kept here rather than by close-with-grace (whose own delay is only a backstop), so
  // that past it the engine's worker is terminated before the process exits, never torn down mid-step.
  closeWithGrace({ delay: DRAIN_DEADLINE_MS + 10_000 }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'closing after an error');
    logger.info({ signal }, 'draining: refusing new requests, finishing those in flight');
    app.engineState.draining = true;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), DRAIN_DEADLINE_MS)));
    const drained = (async () => {
      await app.close();
      await engine.close();
      return 'drained' as const;
    })();
    if ((await Promise.race([drained, deadline])) === 'timeout') {
      logger.error(`killed by timeout (${DRAIN_DEADLINE_MS}ms)`);
      await engine.kill();
      process.exit(1);
    }
    clearTimeout(timer);
    logger.info('drained');
  });

  // A model that cannot load ends the process (exit code 1, the reason on stderr and in the log) so that an
  // orchestrator restarts it or a person sees why; a transient cause (see engine-worker.ts) is retried first.
  const startEngine = async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        await engine.ready;
        attachEngine(app, engine);
        logger.info({ model: engine.modelName, provider: engine.provider, adapters: engine.adapters.names(), generationDefaults: engine.generation }, 'ready');
        break;
      } catch (e) {
        await engine.close();
        const transient = e instanceof StartupError && e.transient;
        if (transient && attempt < START_ATTEMPTS && !app.engineState.draining) {
          const delayMs = 1000 * 2 ** (attempt - 1);
          logger.warn({ err: e, attempt, retryInMs: delayMs }, 'the model failed to load for a cause that may pass; retrying');
          await new Promise((resolve) => setTimeout(resolve, delayMs));
          engine = spawnEngine();
          continue;
        }
        app.engineState.phase = 'failed';
        app.engineState.error = (e as Error).message;
        logger.error({ err: e, attempts: attempt }, 'the model failed to load; exiting');
        process.stderr.write(`error: the model could not be loaded${attempt > 1 ? ` (${attempt} attempts)` : ''}: ${(e as Error).message}\n`);
        await app.close().catch(() => undefined);
        process.exit(1);
      }
    }
  };
  await startEngine();
}

await main();
