import { describe, expect, it } from 'vitest';
import { ID_PATTERN, newId } from '../core/ids.js';

describe('newId (UUIDv7)', () => {
  it('makes unique, well-formed version 7 ids whose order follows their time, across many blocks of random bytes', () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => newId(1_700_000_000_000 + i));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(new RegExp(ID_PATTERN));
      expect(id[14]).toBe('7');
      expect('89ab').toContain(id[19]!);
    }
    expect([...ids].sort()).toEqual(ids);
    expect(newId(0).startsWith('00000000-0000-7')).toBe(true);
  });
});
