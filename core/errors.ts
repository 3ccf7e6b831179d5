/**
 * The one error catalogue: the codes of REST answers and the reasons of MQTT rejections.
 * Every error a client can see has a stable snake_case code; the HTTP status belongs to the code.
 */
export const errorStatus = {
  invalid_input: 400,
  unauthorized: 401,
  forbidden: 403,
  not_member: 403,
  not_found: 404,
  username_taken: 409,
  message_deleted: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  group_full: 422,
  rate_limited: 429,
  internal_error: 500,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof errorStatus;

/**
 * Why a chat message sent over MQTT was refused: the `reason` of its `message.rejected` inbox
 * event (docs/mqtt.md). Where a reason means what a REST code means, it is that code.
 */
export type RejectReason = 'too_long' | 'empty' | 'invalid_payload' | Extract<ErrorCode, 'not_member' | 'rate_limited'>;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  /** Seconds after which the same request may succeed (sent as Retry-After): rate limits and
   * overload. */
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, message: string, opts: { retryAfter?: number } = {}) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.statusCode = errorStatus[code];
    this.retryAfter = opts.retryAfter === undefined ? undefined : Math.max(1, Math.ceil(opts.retryAfter));
  }
}

export const invalidInput = (message: string) => new AppError('invalid_input', message);
export const unauthorized = (message = 'missing or invalid token') => new AppError('unauthorized', message);
export const forbidden = (message: string) => new AppError('forbidden', message);
export const notFound = (message: string) => new AppError('not_found', message);
export const notMember = (message = 'you are not a member of this chat') => new AppError('not_member', message);
export const groupFull = (max: number) => new AppError('group_full', `a group has at most ${max} members`);
export const usernameTaken = () => new AppError('username_taken', 'this username is taken');
export const messageDeleted = () => new AppError('message_deleted', 'this message was deleted: it can no longer be edited');

export const isAppError = (err: unknown): err is AppError => err instanceof AppError;

/** A configured service, port or directory cannot be used (Redis unreachable, port taken,
 * DATA_DIR not writable, ...): the process says which variable to look at and exits 1. */
export class StartupError extends Error {
  override name = 'StartupError';
}

/** Raised by our own code when a backing service does not answer in time (answered 503). */
export class ServiceUnavailableError extends Error {
  override name = 'ServiceUnavailableError';
}

/** Names of the errors our clients raise when their service is unreachable. (Not the errors
 * of a client used after we closed it: those are our bugs.) */
const OUTAGES = new Set([
  'ServiceUnavailableError', // ours, below: a service did not answer in time
  'MaxRetriesPerRequestError', // ioredis: Redis did not answer
  'MongoNetworkError', 'MongoNetworkTimeoutError', 'MongoServerSelectionError',
]);

/**
 * Whether `err` means a service the server depends on (Redis, MongoDB, a SQLite file locked
 * past its busy timeout) is unreachable or overloaded right now, so that the same request may
 * well succeed shortly: answered 503 `unavailable`, not 500.
 */
export function isOutage(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (OUTAGES.has(err.name) || (err as { code?: unknown }).code === 'SQLITE_BUSY') return true;
  const labels = err as { hasErrorLabel?: (label: string) => boolean };
  return typeof labels.hasErrorLabel === 'function' && (labels.hasErrorLabel('RetryableWriteError') || labels.hasErrorLabel('TransientTransactionError'));
}
