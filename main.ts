import { ConfigError, loadConfig } from './core/config.js';
import { StartupError, startServer } from './server.js';

/** `npm start`: the embedded server in one process. Exits 1 with a clear message on bad config. */
async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }

  let running;
  try {
    running = await startServer(config);
  } catch (err) {
    if (err instanceof StartupError) {
      console.error(`cannot start: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }

  const stop = (signal: string) => {
    running.app.log.info(`${signal}: shutting down`);
    // A second signal, or a shutdown that hangs, ends the process anyway.
    setTimeout(() => process.exit(1), 10_000).unref();
    running.close().then(
      () => process.exit(0),
      (err) => {
        running.app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

await main();
