/**
 * Waiting in tests, in two kinds, named for what they wait for:
 *
 * - `waitFor…` waits for an event and rejects when it does not come in time: `conn.waitFor`
 *   (a count of messages), `waitForMessage` (a message matching a predicate, helpers/mqtt.ts),
 *   `raw.waitForBytes` (bytes on a raw socket, helpers/raw-mqtt.ts).
 * - `pollUntil` (below) reads state that no event announces (a REST view, the stored history,
 *   a counter, a process's output) again and again until it is the one waited for.
 */

export interface PollOptions<T> {
  /** Whether `value` is the one waited for (default: it is truthy). */
  done?: (value: T) => boolean;
  /** Stop reading after this many milliseconds (default 5000). */
  within?: number;
  /** Milliseconds between two reads (default 50). */
  every?: number;
}

/**
 * Calls `read` until `done(value)` holds, or `within` ms have passed, pausing `every` ms between
 * calls; resolves with the last value read, in both cases. It never throws on time-out: the
 * caller asserts on what it returns (so a failure shows the value and says what was expected),
 * or, as a fault run does, reports it.
 *
 *   const history = await pollUntil(() => http.history(chatId, token), { done: (h) => h.length >= 3, within: 20_000 });
 *   expect(history.map((m) => m.seq)).toEqual([1, 2, 3]);
 *   expect(await pollUntil(async () => (await view()).online === false), 'REST shows alice offline').toBe(true);
 */
export async function pollUntil<T>(read: () => T | Promise<T>, opts: PollOptions<T> = {}): Promise<T> {
  const { done = (value: T) => Boolean(value), within = 5000, every = 50 } = opts;
  const deadline = Date.now() + within;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() >= deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}
