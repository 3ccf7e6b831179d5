// First, before anything loads mqtt-packet: see core/quiet-debug.ts.
import './core/quiet-debug.js';
import { ConfigError, StartupError, loadConfig } from './core/config.js';
import { type Running, startServer } from './server.js';

/** A configuration problem, or a service, port or DATA_DIR that cannot be used, is told in its
 * own words and exits 1; anything else is a bug, thrown with its stack. */
function exitIfExplained(err: unknown): never {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(1);
  }
  if (err instanceof StartupError) {
    console.error(`cannot start: ${err.message}`);
    process.exit(1);
  }
  throw err;
}

/** `npm start`: the embedded server in one process. Exits 1 with a clear message on bad config. */
async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    exitIfExplained(err);
  }

  // Signals are taken from the start: one that arrives while the server starts stops it
  // gracefully once it has started, instead of killing the process half-way.
  let signal: string | undefined;
  let running: Running | undefined;
  const stop = (server: Running) => {
    server.app.log.info(`${signal}: shutting down`);
    server.close().then(
      () => process.exit(0),
      (err) => {
        server.app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  const onSignal = (name: string) => {
    if (signal) return;
    signal = name;
    // A second signal, or a shutdown that hangs, ends the process anyway.
    setTimeout(() => process.exit(1), 10_000).unref();
    if (running) stop(running);
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));

  try {
    running = await startServer(config);
  } catch (err) {
    exitIfExplained(err);
  }
  if (signal) stop(running);
}

await main();
