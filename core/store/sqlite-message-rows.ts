import type BetterSqlite3 from 'better-sqlite3';

/** One log row: chat_id, seq, id, type, sender_id (a message's or edit's sender, a deletion's
 * actor), client_msg_id, created_at, envelope; then, not stored as such, the text of a message
 * or edit (for the search index) and the target seq of an edit or delete. */
export type MessageRow = [string, number, string, string, string | null, string | null, number, string, string | null, number | null];

/**
 * Writes log rows into the messages table, on `db`, inside the caller's transaction: returns
 * `appendRow(row)`, which gives what became of the row (see `Store.appendMessages`) and throws
 * for a row whose id is stored already elsewhere (or whose chat does not exist). Used by the
 * writer thread (its source is run there: self-contained, no imports, no outer names) and by the
 * main thread when it replays the segment log at start (core/store/sqlite-segment-log.ts).
 * `checked`: the rows were checked as the segment log's are (seq, key and id), and the look-up
 * of the seq is left out.
 */
export function messageRowWriter(db: BetterSqlite3.Database, checked = false): (row: MessageRow) => 'stored' | 'present' | { seqHeldBy: string } | { keyHeldBy: { id: string; seq: number } } {
  const insert = db.prepare('INSERT OR IGNORE INTO messages (chat_id, seq, id, type, sender_id, client_msg_id, created_at, envelope, target_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const atSeq = db.prepare('SELECT id FROM messages WHERE chat_id = ? AND seq = ?');
  const byKey = db.prepare('SELECT id, seq FROM messages WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?');
  const target = db.prepare("SELECT rowid, envelope, deleted, edit_seq FROM messages WHERE chat_id = ? AND seq = ? AND type = 'message'");
  const setEdited = db.prepare('UPDATE messages SET envelope = ?, edit_seq = ? WHERE rowid = ?');
  const setDeleted = db.prepare('UPDATE messages SET envelope = ?, deleted = 1 WHERE rowid = ?');
  const forgetEdits = db.prepare("UPDATE messages SET envelope = json_remove(envelope, '$.text') WHERE chat_id = ? AND target_seq = ? AND type = 'edit'");
  // What a stored row does besides being there (Store.appendMessages): an edit or delete changes
  // its target's current state. (A message's sender's read pointer moves with it by its being
  // there: the store reads a member's newest own message as its pointer when that is later. The
  // search index follows in transactions of its own.)
  const apply = (row: MessageRow) => {
    const [chatId, seq, , type, , , createdAt, , text, targetSeq] = row;
    if (type !== 'edit' && type !== 'delete') return;
    const t = target.get(chatId, targetSeq) as { rowid: number; envelope: string; deleted: number; edit_seq: number } | undefined;
    if (!t) return;
    if (t.deleted) {
      if (type === 'edit') forgetEdits.run(chatId, targetSeq); // one that lost the race with the deletion
      return;
    }
    const state = JSON.parse(t.envelope);
    if (type === 'edit') {
      if (t.edit_seq > seq) return; // a later edit was applied already
      state.text = text;
      state.editedAt = new Date(createdAt).toISOString();
      setEdited.run(JSON.stringify(state), seq, t.rowid);
    } else {
      delete state.text;
      delete state.editedAt;
      state.deleted = true;
      setDeleted.run(JSON.stringify(state), t.rowid);
      // A deleted message's text is gone from history, also from its edits (they keep their place).
      forgetEdits.run(chatId, targetSeq);
    }
  };
  return (row) => {
    // (chat_id, seq) is looked up first: its index is not unique (it carries the columns unread
    // counts read). The write transaction holds the database's write lock, so nothing is
    // inserted between the look-up and the insert, by this process or another.
    // `checked`: the segment log's compaction, whose rows were checked against the database and
    // the log as they were appended (it is the database's only writer of messages): not again.
    const holder = checked ? undefined : (atSeq.get(row[0], row[1]) as { id: string } | undefined);
    if (holder) return holder.id === row[2] ? 'present' : { seqHeldBy: holder.id };
    if (insert.run(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[9]).changes === 1) {
      apply(row);
      return 'stored';
    }
    // Skipped: say why.
    const keyed = row[5] === null ? undefined : (byKey.get(row[0], row[4], row[5]) as { id: string; seq: number } | undefined);
    if (keyed) return { keyHeldBy: { id: keyed.id, seq: keyed.seq } };
    throw new Error('message id ' + row[2] + ' is stored already, at another chat or seq');
  };
}

/**
 * The segment log's records (core/store/sqlite-segment-log.ts): [u32 length][u32 crc32 of the
 * payload][payload], the payload being a row's fields as JSON, a newline, and its envelope as
 * stored (JSON never holds a raw newline). The text of an edit is a field; a message's is read
 * from its envelope where needed.
 */
export function encodeRecords(rows: readonly MessageRow[], crc32: (data: Uint8Array) => number): Buffer {
  const parts: Buffer[] = [];
  for (const row of rows) {
    const [chatId, seq, id, type, senderId, clientMsgId, createdAt, envelope, text, targetSeq] = row;
    const payload = Buffer.from(`${JSON.stringify([chatId, seq, id, type, senderId, clientMsgId, createdAt, targetSeq, type === 'edit' ? text : null])}\n${envelope}`);
    const header = Buffer.allocUnsafe(8);
    header.writeUInt32LE(payload.length, 0);
    header.writeUInt32LE(crc32(payload), 4);
    parts.push(header, payload);
  }
  return Buffer.concat(parts);
}

/**
 * The rows of a segment's bytes, up to the first record that is cut short or fails its checksum
 * (a write a crash interrupted: never acknowledged). Self-contained: the writer thread runs its
 * source.
 */
export function decodeRecords(data: Buffer, crc32: (data: Uint8Array) => number): MessageRow[] {
  const rows: MessageRow[] = [];
  for (let at = 0; at + 8 <= data.length; ) {
    const length = data.readUInt32LE(at);
    const end = at + 8 + length;
    if (length === 0 || end > data.length) break;
    const payload = data.subarray(at + 8, end);
    if (crc32(payload) !== data.readUInt32LE(at + 4)) break;
    const text = payload.toString('utf8');
    const cut = text.indexOf('\n');
    let fields;
    try {
      fields = JSON.parse(text.slice(0, cut));
    } catch {
      break;
    }
    const [chatId, seq, id, type, senderId, clientMsgId, createdAt, targetSeq, editText] = fields;
    rows.push([chatId, seq, id, type, senderId, clientMsgId, createdAt, text.slice(cut + 1), editText, targetSeq]);
    at = end;
  }
  return rows;
}
