import { Module, createRequire } from 'node:module';

/**
 * Without DEBUG set, the `debug` package prints nothing, yet every call still costs: mqtt-packet
 * calls it about a dozen times for each packet it parses or writes, and each call collects its
 * arguments and reads a getter before finding it has nothing to do. In a CPU profile of the
 * fanout bench (100 deliveries a message) that was 3 % of the main thread's samples
 * (bench/README.md, "Issue 21, fourth sitting"). So, when DEBUG is not set, the copy of `debug`
 * that mqtt-packet (and ioredis) load is replaced, before they load it, by one whose loggers
 * are no-ops. With DEBUG set (`DEBUG=mqtt-packet:*`, say), nothing is replaced and the real
 * package prints as usual.
 *
 * Imported first by main.ts, so that it runs before anything imports Aedes.
 */
export function quietDebug(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.DEBUG) return false;
  const require = createRequire(import.meta.url);
  const path = createRequire(require.resolve('mqtt-packet')).resolve('debug');
  if (require.cache[path]) return false; // loaded already: too late to replace
  const noop = () => {};
  const create = (namespace: string): object =>
    Object.assign(() => {}, { namespace, enabled: false, useColors: false, color: 0, diff: 0, log: noop, destroy: () => false, extend: (sub: string, delimiter = ':') => create(namespace + delimiter + sub) });
  const factory = Object.assign(create, {
    enable: noop, disable: () => '', enabled: () => false, names: [], skips: [], formatters: {},
    selectColor: () => 0, coerce: (value: unknown) => value, humanize: (ms: number) => `${ms}ms`, log: noop,
  });
  const module = new Module(path);
  module.filename = path;
  module.loaded = true;
  module.exports = Object.assign(factory, { default: factory, debug: factory });
  require.cache[path] = module;
  return true;
}

quietDebug();
