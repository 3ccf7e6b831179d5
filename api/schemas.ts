import { Type, type Static } from 'typebox';
import { ID_PATTERN } from '../core/ids.js';
import {
  CHAT_NAME_MAX, DISPLAY_NAME_MAX, MESSAGE_SEARCH_PAGE_DEFAULT, PAGE_DEFAULT, PAGE_MAX, PASSWORD_MAX, PASSWORD_MIN, SEARCH_QUERY_MAX, USERNAME_PATTERN,
} from '../core/rules.js';
import { errorStatus } from '../core/errors.js';
import type { StoredMessage } from '../core/envelope.js';

/** JSON schemas of the REST contract: they validate requests, serialise responses (dropping
 * any field not listed, e.g. password hashes) and generate the OpenAPI document at /docs. */

export const Id = Type.String({ pattern: ID_PATTERN, description: 'UUIDv7' });
const Timestamp = Type.String({ format: 'date-time' });

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.Union(Object.keys(errorStatus).map((c) => Type.Literal(c))),
      message: Type.String(),
    }),
  },
  { $id: 'Error', description: 'Every 4xx/5xx answer' },
);

export const User = Type.Object(
  {
    id: Id,
    username: Type.String(),
    displayName: Type.String(),
    online: Type.Boolean(),
    lastSeenAt: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'User' },
);
export type UserDto = Static<typeof User>;

export const Chat = Type.Object(
  {
    id: Id,
    number: Type.Integer({ minimum: 1 }),
    type: Type.Union([Type.Literal('direct'), Type.Literal('group')]),
    name: Type.Union([Type.String(), Type.Null()]),
    visibility: Type.Union([Type.Literal('public'), Type.Literal('private')]),
    ownerId: Type.Union([Id, Type.Null()]),
    members: Type.Array(Type.Ref('User')),
    memberCount: Type.Integer(),
    lastSeq: Type.Integer(),
    createdAt: Timestamp,
    readSeq: Type.Integer({ minimum: 0, description: "the caller's read pointer (0 for a non-member)" }),
    unread: Type.Integer({ minimum: 0, description: 'messages of other members after readSeq, not deleted (counted from the log)' }),
    lastMessage: Type.Union([Type.Ref('Envelope'), Type.Null()], { description: 'the newest message in its current state; null when none, or for a non-member' }),
    lastActivityAt: Type.String({ format: 'date-time', description: 'time of the newest envelope of any kind, or of the creation' }),
  },
  { $id: 'Chat' },
);
export type ChatDto = Omit<Static<typeof Chat>, 'members' | 'lastMessage'> & { members: UserDto[]; lastMessage: StoredMessage | null };

/** Envelopes are stored as delivered; history returns them as delivered, except that a message
 * shows its current state (after edits and a deletion). */
export const Envelope = Type.Object(
  {
    type: Type.Union([Type.Literal('message'), Type.Literal('system'), Type.Literal('edit'), Type.Literal('delete')]),
    id: Id,
    chatId: Id,
    seq: Type.Integer(),
    senderId: Type.Optional(Id),
    senderName: Type.Optional(Type.String()),
    text: Type.Optional(Type.String()),
    clientMsgId: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    event: Type.Optional(Type.String()),
    userId: Type.Optional(Id),
    actorId: Type.Optional(Id),
    replyTo: Type.Optional(Type.Integer({ minimum: 1, description: 'message: the seq of the message it answers' })),
    editedAt: Type.Optional(Timestamp),
    deleted: Type.Optional(Type.Literal(true)),
    targetSeq: Type.Optional(Type.Integer({ minimum: 1, description: 'edit, delete: the seq of the message changed' })),
    createdAt: Timestamp,
  },
  { $id: 'Envelope' },
);

export const Username = Type.String({ pattern: USERNAME_PATTERN, description: '3-32 of [a-z0-9_.-], case-insensitive' });
export const Password = Type.String({ minLength: PASSWORD_MIN, maxLength: PASSWORD_MAX });
export const DisplayName = Type.String({ minLength: 1, maxLength: DISPLAY_NAME_MAX });
export const ChatName = Type.String({ minLength: 1, maxLength: CHAT_NAME_MAX });

const Limit = Type.Integer({ minimum: 1, maximum: PAGE_MAX, default: PAGE_DEFAULT });
/** Keyset pagination by chat number. */
export const NumberPage = Type.Object({ after: Type.Optional(Type.Integer({ minimum: 0 })), limit: Limit }, { additionalProperties: false });
/** A member's own chat list: by number (after), or newest activity first (order=activity, cursor). */
export const ChatListQuery = Type.Object(
  {
    order: Type.Optional(Type.Union([Type.Literal('number'), Type.Literal('activity')], { default: 'number' })),
    after: Type.Optional(Type.Integer({ minimum: 0, description: 'order=number: the number of the last chat already seen' })),
    cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,16}\\.[0-9]{1,16}$', description: 'order=activity: nextCursor of the previous page' })),
    limit: Limit,
  },
  { additionalProperties: false },
);
export const MessageSearchQuery = Type.Object(
  {
    q: Type.String({ minLength: 1, maxLength: 256, description: 'literal text, 2-64 characters, matched case-insensitively as a substring' }),
    chatId: Type.Optional(Id),
    before: Type.Optional(Id),
    limit: Type.Integer({ minimum: 1, maximum: PAGE_MAX, default: MESSAGE_SEARCH_PAGE_DEFAULT }),
  },
  { additionalProperties: false },
);
export const SearchQuery = Type.Object(
  {
    q: Type.String({ minLength: 1, maxLength: SEARCH_QUERY_MAX, description: 'literal text, matched case-insensitively' }),
    after: Type.Optional(Type.String({ maxLength: 32, description: 'username of the last result already seen' })),
    limit: Limit,
  },
  { additionalProperties: false },
);
export const UserPage = Type.Object(
  { after: Type.Optional(Type.String({ maxLength: 32 })), limit: Limit },
  { additionalProperties: false },
);
export const MessageQuery = Type.Object(
  {
    after: Type.Optional(Type.Integer({ minimum: 0, description: 'return seqs greater than this' })),
    before: Type.Optional(Type.Integer({ minimum: 1, description: 'return seqs smaller than this' })),
    limit: Limit,
  },
  { additionalProperties: false },
);
export const ChatNumberParam = Type.Object({ number: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) });

export const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, Type.Ref('Error')]));
