/** Domain limits from the public contract, in one place for REST schemas, MQTT and docs. */
export const MAX_GROUP_MEMBERS = 100;
export const USERNAME_PATTERN = '^[A-Za-z0-9_.-]{3,32}$';
export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 128;
export const DISPLAY_NAME_MAX = 64;
export const CHAT_NAME_MAX = 100;
export const SEARCH_QUERY_MAX = 64;
/** Message search: q in code points (docs/chat-features.md), and its default page. */
export const MESSAGE_SEARCH_MIN = 2;
export const MESSAGE_SEARCH_MAX = 64;
export const MESSAGE_SEARCH_PAGE_DEFAULT = 20;
export const PAGE_MAX = 100;
export const PAGE_DEFAULT = 50;

/** Control characters (C0, DEL, C1) are refused in names; they break terminals and logs. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;

/** A display or chat name: trimmed, not empty, no control characters, at most `max` code points. */
export function cleanName(raw: string, max: number): string | null {
  const name = raw.trim();
  if (name.length === 0 || CONTROL.test(name) || [...name].length > max) return null;
  return name;
}

// Credential limits (docs/operations.md): the defaults of the variables in core/config.ts.
/** Failed logins per username and client IP: a burst, then one more every 30 s (guessing). */
export const LOGIN_FAILURE_BURST = 10;
export const LOGIN_FAILURE_PER_SECOND = 1 / 30;
/** Registrations per client IP: a burst, then one every 10 s. */
export const REGISTER_BURST_PER_IP = 20;
export const REGISTER_PER_SECOND_PER_IP = 0.1;
/** Login attempts per client IP (many users may share one address behind a NAT). */
export const LOGIN_BURST_PER_IP = 50;
export const LOGIN_PER_SECOND_PER_IP = 2;
/** scrypt hashes at once: each takes a core for tens of milliseconds and 32 MiB. */
export const PASSWORD_HASHES_IN_FLIGHT = 2;
/** Message searches per user: a burst, then a rate per second. */
export const SEARCH_BURST = 10;
export const SEARCH_PER_SECOND = 2;
/** Open HTTP and WebSocket sockets per client IP address, per node. */
export const HTTP_SOCKETS_PER_IP = 256;
/** A request's headers must arrive within this time. */
export const HTTP_HEADERS_TIMEOUT_MS = 10_000;

// MQTT protection limits (see docs/mqtt.md): the defaults of the variables in core/config.ts.
/** Largest MQTT packet accepted on TCP and WebSocket; a larger one closes the connection. */
export const MAX_PACKET_BYTES = 16 * 1024;
export const MAX_CONNECTIONS_PER_USER = 10;
/** Subscriptions per MQTT connection and per user: a chat followed in full takes three
 * (messages, typing, receipts), so a connection follows up to 1,000 chats; each costs the
 * broker about 1 KB (npm run abuse). */
export const MAX_SUBSCRIPTIONS_PER_CONNECTION = 3000;
export const MAX_SUBSCRIPTIONS_PER_USER = 10_000;
/** Chat messages per user: a burst, then a steady rate (per second). */
export const SEND_BURST = 30;
export const SEND_PER_SECOND = 10;
/** Typing events per user and chat. */
export const TYPING_BURST = 3;
export const TYPING_PER_SECOND = 1;
/** New MQTT connections per client IP address. */
export const CONNECT_BURST = 200;
export const CONNECT_PER_SECOND = 50;
/**
 * A connection's outgoing queue (bytes and packets the client has not read yet, beyond what
 * the kernel holds): past either bound for longer than the grace time, or past twice a bound
 * at any moment, the connection is closed; its user catches up from history on reconnecting.
 */
export const OUTGOING_QUEUE_BYTES = 1024 * 1024;
export const OUTGOING_QUEUE_PACKETS = 1000;
export const OUTGOING_QUEUE_GRACE_MS = 5000;
/** Chat sends being validated, sequenced and made durable in one process at once; more wait. */
export const MAX_SENDS_IN_FLIGHT = 500;
/** Chats whose members a node keeps in memory (core/membership.ts); chats with a member
 * connected to the node are kept besides. */
export const MEMBERSHIP_CACHE_CHATS = 20_000;
/** A connection that sends no CONNECT within this time is closed. */
export const CONNECT_TIMEOUT_MS = 10_000;
