import { describe, expect, it } from 'vitest';
import { Gate } from '../core/gate.js';

describe('Gate (the bound on sends in flight)', () => {
  it('lets `limit` holders in at once; the others wait and are let in in the order they came', async () => {
    const gate = new Gate(2);
    const order: number[] = [];
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 2000 }, async (_, i) => {
        const wait = gate.enter();
        if (wait) await wait;
        order.push(i);
        most = Math.max(most, ++inside);
        await new Promise((r) => setImmediate(r));
        inside--;
        gate.leave();
      }),
    );
    expect(most).toBe(2);
    expect(order).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    expect(gate.queued).toBe(0);
    // Room again at once, without waiting.
    expect(gate.enter()).toBeUndefined();
  });
});
