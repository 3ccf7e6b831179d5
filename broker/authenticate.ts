import type { AuthenticateError, Client, ConnectPacket } from 'aedes';
import type { BrokerContext } from './context.js';

/** CONNACK return codes of MQTT 3.1.1 used here. */
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

const DEVICE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Clients that sent an empty client id (the server then assigned one). */
const assignedId = new WeakSet<Client>();

/**
 * mqtt-packet's parser keeps the CONNECT packet for as long as the connection lives (as its
 * `settings`, for the protocol version of later packets), and the password in it is a view of the
 * socket's first chunk: it kept that chunk's memory (the CONNECT's bytes, about 300 B with a
 * login token) per connection. Nothing reads the password after this call.
 */
function forgetPassword(client: Client, password: Buffer) {
  const settings = (client as unknown as { _parser?: { settings?: { password?: Buffer | undefined } } })._parser?.settings;
  if (settings?.password === password) settings.password = undefined;
}

export function preConnect(client: Client, packet: ConnectPacket, done: (err: Error | null, ok: boolean) => void) {
  if (!packet.clientId) assignedId.add(client);
  done(null, true);
}

/**
 * CONNECT: username = account username, password = a login token. The client id must be empty
 * (clean session only), the user's id, or `<userId>/<device>`. Any will the client sent is
 * discarded.
 */
export function authenticate(ctx: BrokerContext) {
  return (client: Client, username: string | undefined, password: Buffer | undefined, done: (err: AuthenticateError | null, ok: boolean | null) => void) => {
    const refuse = (code: number, message: string) => done(Object.assign(new Error(message), { returnCode: code }) as AuthenticateError, null);
    if (!username || !password || password.length > 4096) return refuse(BAD_USERNAME_OR_PASSWORD, 'username and token required');
    const token = password.toString('utf8');
    forgetPassword(client, password);

    ctx.accounts.authenticate(token).then(
      ({ user, session }) => {
        if (user.username !== username.toLowerCase()) return refuse(BAD_USERNAME_OR_PASSWORD, 'token does not belong to this username');
        const id = client.id;
        const idOk = assignedId.has(client) ? client.clean : id === user.id || (id.startsWith(`${user.id}/`) && DEVICE.test(id.slice(user.id.length + 1)));
        if (!idOk) return refuse(IDENTIFIER_REJECTED, 'client id must be empty (clean session), <userId> or <userId>/<device>');
        const max = ctx.limits.maxConnectionsPerUser;
        const tooMany = () => ctx.connections.count(user.id, id) >= max;
        if (tooMany()) return refuse(NOT_AUTHORIZED, `at most ${max} connections per user`);

        // Known before any SUBSCRIBE: the user's chats (presence goes to co-members only).
        void ctx.sharedChats.open(client, user.id).then(
          () => {
            // Gone meanwhile: Aedes goes no further with it (and emits no 'clientDisconnect').
            if (client.closed || (client.conn as unknown as { destroyed: boolean }).destroyed) {
              ctx.sharedChats.close(client);
              return refuse(NOT_AUTHORIZED, 'connection closed during authentication');
            }
            if (tooMany()) {
              // Asked again: others of the user's connections may have got through meanwhile.
              ctx.sharedChats.close(client);
              return refuse(NOT_AUTHORIZED, `at most ${max} connections per user`);
            }
            ctx.connections.attach(client, {
              user: { id: user.id, username: user.username, displayName: user.displayName },
              sessionId: session.id,
              expiresAt: session.expiresAt,
            });
            ctx.subscriptions.open(client, user.id);
            // Client wills are discarded (Aedes keeps the one being set up in `_will`, not in its
            // types): offline presence comes from the connection registry, which knows about the
            // user's other devices and, in a cluster, about dead nodes.
            (client as unknown as { _will: unknown })._will = null;
            done(null, true);
          },
          (err: unknown) => {
            ctx.log.error({ err, userId: user.id }, 'could not read the chats of a connecting user');
            refuse(SERVER_UNAVAILABLE, 'server unavailable, try again');
          },
        );
      },
      (err: Error) => refuse(BAD_USERNAME_OR_PASSWORD, err.message),
    );
  };
}
