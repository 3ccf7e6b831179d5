import { Type, type Static } from 'typebox';
import { ID_PATTERN } from '../core/ids.js';
import {
  CHAT_NAME_MAX, DISPLAY_NAME_MAX, PAGE_DEFAULT, PAGE_MAX, PASSWORD_MAX, PASSWORD_MIN, SEARCH_QUERY_MAX, USERNAME_PATTERN,
} from '../core/rules.js';
import { errorStatus } from '../core/errors.js';

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
  },
  { $id: 'Chat' },
);
export type ChatDto = Omit<Static<typeof Chat>, 'members'> & { members: UserDto[] };

/** Envelopes are stored as delivered; history returns them unchanged. */
export const Envelope = Type.Object(
  {
    type: Type.Union([Type.Literal('message'), Type.Literal('system')]),
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
