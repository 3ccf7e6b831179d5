import type { RejectReason } from './errors.js';

/**
 * What a client may publish to `chats/{chatId}/messages`: the JSON object
 * `{"text": "...", "clientMsgId": "...", "replyTo": <seq>}` (clientMsgId and replyTo optional)
 * and nothing else. Pure functions, no I/O: whether replyTo names a message of the chat is the
 * sender's to check (core/sender.ts).
 */
export const MAX_TEXT_CODE_POINTS = 1000;
export const MAX_CLIENT_MSG_ID = 64;

/** On refusal, `clientMsgId` is the sender's key when that part was valid, so the client can
 * tell which of its pending sends failed. */
export type SendInput = { ok: true; text: string; clientMsgId: string | null; replyTo: number | null } | { ok: false; reason: RejectReason; clientMsgId: string | null };

const FIELDS = new Set(['text', 'clientMsgId', 'replyTo']);

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** C0 controls except \t \n \r, DEL, C1 controls, and lone UTF-16 surrogates (from JSON
 * escapes such as "\ud800", which no UTF-8 encoder can carry). */
const FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\p{Cs}]/u;
const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

export function parseSend(payload: Uint8Array): SendInput {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(payload));
  } catch {
    return { ok: false, reason: 'invalid_payload', clientMsgId: null }; // binary, bad UTF-8, or not JSON
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: 'invalid_payload', clientMsgId: null };
  const fields = value as Record<string, unknown>;
  const { text, clientMsgId: rawId } = fields;
  const idOk = rawId === undefined || (typeof rawId === 'string' && rawId.length <= MAX_CLIENT_MSG_ID && PRINTABLE_ASCII.test(rawId));
  const clientMsgId = idOk && typeof rawId === 'string' ? rawId : null;
  const refuse = (reason: RejectReason): SendInput => ({ ok: false, reason, clientMsgId });

  if (!idOk) return refuse('invalid_payload');
  for (const key of Object.keys(fields)) if (!FIELDS.has(key)) return refuse('invalid_payload');
  // Left out, or a positive integer; not null (as clientMsgId).
  const { replyTo } = fields;
  if (replyTo !== undefined && !(Number.isSafeInteger(replyTo) && (replyTo as number) >= 1)) return refuse('invalid_payload');
  const problem = textProblem(text);
  if (problem) return refuse(problem);
  return { ok: true, text: text as string, clientMsgId, replyTo: (replyTo as number | undefined) ?? null };
}

/** What is wrong with a message text (a send's or an edit's), or null: a string of 1-1,000 code
 * points, not only whitespace, without control characters but \t \n \r. */
export function textProblem(text: unknown): 'invalid_payload' | 'empty' | 'too_long' | null {
  if (typeof text !== 'string' || FORBIDDEN.test(text)) return 'invalid_payload';
  if (text.trim() === '') return 'empty';
  let codePoints = 0;
  for (const _ of text) if (++codePoints > MAX_TEXT_CODE_POINTS) return 'too_long';
  return null;
}

/** A read receipt: `{"readSeq": <integer >= 0>}` and nothing else; null otherwise. */
export function parseReceipt(payload: Uint8Array): number | null {
  try {
    const v = JSON.parse(utf8.decode(payload)) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1) {
      const { readSeq } = v as { readSeq?: unknown };
      if (Number.isSafeInteger(readSeq) && (readSeq as number) >= 0) return readSeq as number;
    }
  } catch {
    /* fall through */
  }
  return null;
}

/** Typing indicators: `{"typing": true|false}`. */
export function parseTyping(payload: Uint8Array): boolean | null {
  try {
    const v = JSON.parse(utf8.decode(payload)) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && typeof (v as { typing?: unknown }).typing === 'boolean') {
      return (v as { typing: boolean }).typing;
    }
  } catch {
    /* fall through */
  }
  return null;
}
