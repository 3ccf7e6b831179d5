import { describe, expect, it } from 'vitest';
import { keyFilter } from '../core/store/key-filter.js';

const key = (chat: number, sender: number, k: string) => `0190a0a0-0000-7000-8000-${String(chat).padStart(12, '0')}\n0190b0b0-0000-7000-8000-${String(sender).padStart(12, '0')}\n${k}`;

/**
 * The Bloom filter of idempotency keys (core/store/key-filter.ts): never a false negative, about
 * 1 % false positives at capacity. Its use by the segment log: test/store.sqlite-segment-log.thread.test.ts.
 */
describe('key filter', () => {
  it('has every key added, and about 1 % of the others at capacity', () => {
    const filter = keyFilter(50_000);
    for (let i = 0; i < 50_000; i++) filter.add(key(i % 680, i % 7, `m${i}`));
    for (let i = 0; i < 50_000; i++) expect(filter.has(key(i % 680, i % 7, `m${i}`))).toBe(true);
    let wrong = 0;
    for (let i = 0; i < 50_000; i++) if (filter.has(key(i % 680, i % 7, `other${i}`))) wrong++;
    expect(wrong / 50_000).toBeLessThan(0.02);
    expect(filter.full()).toBe(false);
    filter.add('one more');
    expect(filter.full()).toBe(true);
  });

  it('tells keys apart that differ in one character anywhere, and the empty key', () => {
    const filter = keyFilter(1000);
    filter.add(key(1, 1, 'abc'));
    expect(filter.has(key(1, 1, 'abc'))).toBe(true);
    expect([key(1, 1, 'abd'), key(1, 2, 'abc'), key(2, 1, 'abc'), key(1, 1, 'ab'), ''].filter((k) => filter.has(k))).toEqual([]);
  });
});

