import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MessageEnvelope } from '../core/envelope.js';
import { newId } from '../core/ids.js';
import { type Json, type TestServer, startTestServer } from './helpers/server.js';

describe('REST history: GET /api/messages/:chatId', () => {
  let srv: TestServer;
  let alice: { user: Json; token: string };
  let bob: { user: Json; token: string };
  let outsider: { user: Json; token: string };
  let chat: Json;

  beforeAll(async () => {
    srv = await startTestServer();
    [alice, bob, outsider] = await Promise.all([srv.signUp(), srv.signUp(), srv.signUp()]);
    chat = (await srv.http.post('/api/chats', { type: 'direct', memberIds: [bob.user.id] }, alice.token)).body.chat;
  });
  afterAll(() => srv.stop());

  // Bulk history is written through the store seam (the MQTT specs send through the broker).
  const log = (count: number, from: number) =>
    srv.store.appendMessages(
      Array.from({ length: count }, (_, i): MessageEnvelope => ({
        type: 'message', id: newId(), chatId: chat.id, seq: from + i, senderId: alice.user.id, senderName: alice.user.displayName,
        text: `message ${from + i}`, clientMsgId: null, createdAt: new Date().toISOString(),
      })),
    );
  const seqs = async (query: string, token = bob.token) => {
    const res = await srv.http.get(`/api/messages/${chat.id}${query}`, token);
    expect(res.status).toBe(200);
    return [res.body.messages.map((m: Json) => m.seq), res.body.hasMore];
  };

  it("starts a new chat's history with its chat.created system message", async () => {
    const res = await srv.http.get(`/api/messages/${chat.id}`, bob.token);
    expect(res.body).toEqual({
      messages: [{ type: 'system', id: expect.any(String), chatId: chat.id, seq: 1, event: 'chat.created', userId: alice.user.id, createdAt: expect.any(String) }],
      hasMore: false,
    });
  });

  it('returns the latest page ascending by default, catches up with after, pages back with before', async () => {
    await log(120, 2); // seqs 2..121
    expect(await seqs('?limit=3')).toEqual([[119, 120, 121], true]);
    const def = await srv.http.get(`/api/messages/${chat.id}`, bob.token);
    expect(def.body.messages).toHaveLength(50);
    expect(def.body.messages[0].seq).toBe(72);
    expect(await seqs('?after=116')).toEqual([[117, 118, 119, 120, 121], false]);
    expect(await seqs('?after=0&limit=2')).toEqual([[1, 2], true]);
    expect(await seqs('?before=3&limit=100')).toEqual([[1, 2], false]);
    expect(await seqs('?after=10&before=14')).toEqual([[11, 12, 13], false]);
  });

  it('returns envelopes as stored, and the chat reports lastSeq', async () => {
    const res = await srv.http.get(`/api/messages/${chat.id}?after=120`, alice.token);
    expect(res.body.messages).toEqual([
      { type: 'message', id: expect.any(String), chatId: chat.id, seq: 121, senderId: alice.user.id, senderName: alice.user.displayName, text: 'message 121', clientMsgId: null, createdAt: expect.any(String) },
    ]);
    expect((await srv.http.get(`/api/chats/${chat.number}`, alice.token)).body.chat.lastSeq).toBe(121);
  });

  it('is for members only: 403 not_member; unknown chat 404; after >= before 400', async () => {
    const foreign = await srv.http.get(`/api/messages/${chat.id}`, outsider.token);
    expect([foreign.status, foreign.body.error.code]).toEqual([403, 'not_member']);
    const unknown = await srv.http.get(`/api/messages/${newId()}`, bob.token);
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'not_found']);
    const crossed = await srv.http.get(`/api/messages/${chat.id}?after=5&before=5`, bob.token);
    expect([crossed.status, crossed.body.error.code]).toEqual([400, 'invalid_input']);
  });
});
