import { describe, expect, it } from 'vitest';
import { matches } from '../broker/retained.js';

/** The embedded broker's retained-message lookup matches topics as MQTT 3.1.1 §4.7 says. */
describe('retained messages: topic patterns', () => {
  const match = (pattern: string, topic: string) => matches(pattern.split('/'), topic);

  it('+ matches exactly one level, an empty one included', () => {
    expect(match('users/+/presence', 'users/u1/presence')).toBe(true);
    expect(match('users/+/presence', 'users//presence')).toBe(true);
    expect(match('users/+/presence', 'users/u1/inbox')).toBe(false);
    expect(match('users/+/presence', 'users/u1/x/presence')).toBe(false);
    expect(match('users/+', 'users/u1/presence')).toBe(false);
  });

  it('# matches the parent level and every level below it', () => {
    expect(match('sport/#', 'sport')).toBe(true);
    expect(match('sport/#', 'sport/tennis/player1')).toBe(true);
    expect(match('sport/#', 'sports')).toBe(false);
    expect(match('#', 'users/u1/presence')).toBe(true);
  });

  it('a topic starting with $ matches no wildcard at its first level', () => {
    expect(match('#', '$SYS/broker')).toBe(false);
    expect(match('+/broker', '$SYS/broker')).toBe(false);
    expect(match('$SYS/#', '$SYS/broker')).toBe(true);
  });

  it('levels without wildcards match only themselves', () => {
    expect(match('users/u1/presence', 'users/u1/presence')).toBe(true);
    expect(match('users/u1/presence', 'users/u1/presence/')).toBe(false);
    expect(match('users/u1/presence', 'users/U1/presence')).toBe(false);
  });
});
