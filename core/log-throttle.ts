/**
 * One log line per `everyMs` at most for an event that clients can cause at will (an oversize
 * packet, a socket that stops reading), so that nobody can fill the logs. The first event of a
 * quiet spell is logged at once; those after it in the same window are counted and reported in
 * one line at the window's end, with the fields of the last of them.
 */
export function throttledLog<F extends object>(write: (fields: F & { more?: number }, message: string) => void, message: string, everyMs = 10_000) {
  let windowEnds = 0;
  let suppressed = 0;
  let last: F | undefined;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    if (suppressed === 0) return;
    write({ ...last!, more: suppressed }, `${message} (${suppressed} more in the last ${everyMs / 1000} s, the last shown)`);
    suppressed = 0;
    windowEnds = Date.now() + everyMs; // the summary opens a window of its own
  };
  return (fields: F) => {
    const now = Date.now();
    if (now >= windowEnds) {
      windowEnds = now + everyMs;
      write(fields, message);
      return;
    }
    suppressed++;
    last = fields;
    timer ??= setTimeout(flush, windowEnds - now).unref();
  };
}
