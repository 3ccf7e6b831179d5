import {
  type Context, type GenPlan, type TagResult, beginTag, collectTag, connectAll, failure, generators, inboxTopic, int, messagesTopic, ms, out, pad,
  problemLines, progress, ratio, requireAll, settleTag, stopAll, userSpec,
} from '../lib/common.js';
import { type ServerKind, tcpTable } from '../lib/servers.js';
import { type GeneratorCounters, wallNow } from '../lib/wire.js';

/** Kernel TCP state ESTABLISHED in /proc/net/tcp. */
const ESTABLISHED = 1;

interface SlowRun {
  probe: TagResult;
  /** with the slow reader: seconds after it stopped reading */
  closedAfter?: number | null;
  filledAfter?: number;
  /** most bytes seen queued in S's receive queue and in the server's send queue to S */
  readerKb?: number;
  serverKb?: number;
}

/**
 * Watches the slow reader's TCP connection from outside both processes (/proc/net/tcp): how
 * many bytes wait in its receive queue and in the server's send queue, when that stopped
 * growing (the kernel buffers are full), and when the server's end left ESTABLISHED (the
 * server closed it; a FIN behind unread data never reaches a reader that does not read, so the
 * client end cannot tell).
 */
function watchSocket(serverPort: number, client: { address: string; port: number }) {
  const serverEnd = `127.0.0.1:${serverPort}`;
  const clientEnd = `${client.address}:${client.port}`;
  const t0 = wallNow();
  let most = 0;
  let grewAt = t0;
  let readerMost = 0;
  let serverMost = 0;
  let closedAt: number | null = null;
  const look = () => {
    const table = tcpTable();
    const server = table.find((e) => e.local === serverEnd && e.remote === clientEnd);
    const reader = table.find((e) => e.local === clientEnd && e.remote === serverEnd);
    const queued = (server?.txQueue ?? 0) + (reader?.rxQueue ?? 0);
    readerMost = Math.max(readerMost, reader?.rxQueue ?? 0);
    serverMost = Math.max(serverMost, server?.txQueue ?? 0);
    const now = wallNow();
    if (queued > most + 1024) {
      most = queued;
      grewAt = now;
    }
    if (closedAt === null && (!server || server.state !== ESTABLISHED)) closedAt = now;
  };
  look();
  const timer = setInterval(look, 100);
  return {
    stop() {
      clearInterval(timer);
      look();
      return { closedAfter: closedAt === null ? null : (closedAt - t0) / 1000, filledAfter: (grewAt - t0) / 1000, readerKb: readerMost / 1024, serverKb: serverMost / 1024 };
    },
  };
}

/**
 * slow: user S subscribed to its 100 direct chats; 100 senders at 9 msg/s each in their chat
 * with S; a probe pair in a chat of its own (one sends 10 msg/s, the other receives). Run once
 * with S reading normally and once with S's socket paused right after SUBACK (it never reads
 * again). Probe delivery latency with and without; whether and when the server closed S.
 */
export async function slow(ctx: Context): Promise<void> {
  const runMs = ctx.opts.quick ? 12_000 : 20_000;
  const { reader, chats, probe } = ctx.seed.slow;
  const [probeSender, probeReceiver] = probe.members as [number, number];
  // The chat server's packet bound on a connection's outgoing queue (its default unless set).
  const queuePackets = Number(process.env.OUTGOING_QUEUE_PACKETS ?? 1000);
  out(`== slow: S subscribed to 100 chats, 100 senders at 9 msg/s each to S; probe pair sends 10 msg/s in its own chat; ${runMs / 1000} s per run`);
  out(`   probe latency from scheduled time to delivery; missing: probe messages acked but not delivered within 5 s (plus unacked and unsent ones)`);
  out(`   the chat server closes a connection past its outgoing-queue bound for longer than its grace time: ${ctx.graceMs} ms here`);
  const results = new Map<ServerKind, { without?: SlowRun; with?: SlowRun; error?: string }>();
  const notes: string[] = [];
  for (const kind of ctx.servers) {
    const result: { without?: SlowRun; with?: SlowRun; error?: string } = {};
    results.set(kind, result);
    progress(`slow on ${kind}`);
    const server = await ctx.start(kind);
    try {
      for (const mode of ['without', 'with'] as const) {
        if (server.exited()) throw new Error(`server ${server.exited()}`);
        progress(`${kind}: ${mode} the slow reader`);
        const gen = generators(1)[0]!;
        try {
          const specs = [
            userSpec(ctx.seed, reader, 0, [...chats.map((c) => messagesTopic(c.id)), inboxTopic(ctx.seed, reader)]),
            ...chats.map((c, i) => userSpec(ctx.seed, c.members[1]!, 1 + i, [inboxTopic(ctx.seed, c.members[1]!)])),
            userSpec(ctx.seed, probeSender, 101, [inboxTopic(ctx.seed, probeSender)]),
            userSpec(ctx.seed, probeReceiver, 102, [messagesTopic(probe.id), inboxTopic(ctx.seed, probeReceiver)]),
          ];
          const c = await connectAll(gen, server, specs, 50);
          requireAll([c], specs.length, 'slow-scenario clients');
          const watch = mode === 'with'
            ? watchSocket(server.mqttPort, await gen.call<{ address: string; port: number }>('stopReading', { conn: c.base }))
            : null;
          const load: GenPlan = {
            gen,
            senders: chats.map((chat, i) => ({ conn: c.base + 1 + i, topic: messagesTopic(chat.id), recipients: 1 })),
            meta: chats.map((chat) => ({ userId: ctx.seed.users[chat.members[1]!]!.id, chatId: chat.id })),
            rate: chats.length * 9,
          };
          const probePlan: GenPlan = {
            gen,
            senders: [{ conn: c.base + 101, topic: messagesTopic(probe.id), recipients: 1 }],
            meta: [{ userId: ctx.seed.users[probeSender]!.id, chatId: probe.id }],
            rate: 10,
          };
          const start = await beginTag([gen], 'l', [load], { durationMs: runMs, shuffle: false });
          await beginTag([gen], 'p', [probePlan], { durationMs: runMs, shuffle: false, start });
          await settleTag([gen], 'p', 5000, () => !server.exited());
          const probeResult = await collectTag([gen], 'p', [probePlan]);
          await collectTag([gen], 'l', [load]);
          result[mode] = { probe: probeResult, ...(watch ? watch.stop() : {}) };
          const counters = await gen.call<GeneratorCounters>('counters');
          if (counters.closed > 0) notes.push(`    ${kind}, ${mode} the slow reader: ${counters.closed} client connections closed during the run (${Object.entries(counters.closeReasons).map(([k, v]) => `${v}× ${k}`).join(', ')})`);
        } finally {
          await stopAll([gen]);
        }
      }
    } catch (err) {
      result.error = failure(err, server);
    } finally {
      const died = server.exited();
      await server.stop();
      if (died) notes.push(`    ${kind}: server ${died}`);
      if (server.problems.size) notes.push(`    ${kind} server reported:`, ...problemLines(server));
    }
  }
  const p99s = new Map<ServerKind, number | null>();
  const describe = (r: SlowRun | undefined) => {
    if (!r) return 'not measured';
    const p = r.probe;
    const missing = p.lost + (p.sent - p.acked) + p.unsent;
    return `p50 ${ms(p.hist.percentile(0.5))}, p99 ${ms(p.hist.percentile(0.99))}, max ${ms(p.hist.max)}, missing ${int(missing)} of ${int(p.offered)}`;
  };
  for (const [kind, r] of results) {
    p99s.set(kind, r.with ? r.with.probe.hist.percentile(0.99) : null);
    out(`  ${pad(kind, 10)} without the slow reader: ${describe(r.without)}`);
    out(`  ${pad('', 10)} with the slow reader:    ${describe(r.with)}`);
    if (r.with) {
      const w = r.with;
      const queued = (w.readerKb ?? 0) + (w.serverKb ?? 0);
      const filled = queued < 1
        ? 'nothing piled up in the kernel buffers: the server held the messages back'
        : `kernel buffers: up to ${int(w.readerKb ?? 0)} KB in S's receive queue and ${int(w.serverKb ?? 0)} KB in the server's send queue, growing until ${w.filledAfter?.toFixed(1)} s after S stopped reading`;
      if (w.closedAfter === null || w.closedAfter === undefined) out(`  ${pad('', 10)} S's connection not closed by the server during the run; ${filled}`);
      else {
        // The server counts its queue beyond what the kernel holds: it starts filling when the
        // kernel buffers are full, and passes its packet bound after bound / rate seconds.
        const boundFill = queuePackets / (chats.length * 9);
        const limit = (w.filledAfter ?? 0) + boundFill + ctx.graceMs / 1000 + 0.5;
        out(`  ${pad('', 10)} S's connection closed by the server ${w.closedAfter.toFixed(1)} s after S stopped reading: ${w.closedAfter <= limit ? 'within' : 'later than'} fill + grace`
          + ` (${w.filledAfter?.toFixed(1)} s kernel buffers + ${boundFill.toFixed(1)} s for ${int(queuePackets)} packets at ${chats.length * 9}/s + ${ctx.graceMs / 1000} s grace + 0.5 s sampling = ${limit.toFixed(1)} s)`);
        out(`  ${pad('', 10)} ${filled}`);
      }
    }
    if (r.error) out(`  ${pad('', 10)} error: ${r.error}`);
  }
  const rs = (['aedes', 'mosquitto'] as const).filter((b) => p99s.has(b) && p99s.has('chat')).map((b) => `chat/${b} ${ratio(p99s.get('chat'), p99s.get(b))}`);
  if (rs.length) out(`  probe p99 with the slow reader ${rs.join('   ')}`);
  for (const n of notes) out(n);
  for (const [kind, why] of ctx.unavailable) out(`  ${kind}: not run (${why})`);
  out();
}
