-- New messages wait in messages_fts_pending and are written into the
-- full-text index once per transaction (store/sqlite.py, index_pending),
-- not by the insert: SQLite opens a statement savepoint for each insert
-- with a trigger, and FTS5 writes what it holds to disk at every savepoint,
-- which made the index cost a third of a send and one segment per message.
-- Each statement can run again (IF EXISTS, IF NOT EXISTS): SQLite commits
-- each one on its own, so a run that stopped half-way is finished by the next.
CREATE TABLE IF NOT EXISTS messages_fts_pending (message_rowid INTEGER PRIMARY KEY);
DROP TRIGGER IF EXISTS messages_fts_insert;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts_pending (message_rowid) VALUES (new.rowid);
END;
-- A message still pending has no entry to take out (the pending insert
-- reads its body as it is then); FTS5 must never be told to delete a row it
-- does not hold. One trigger for deletes: its two statements run in this
-- order (two triggers on one event would run newest first).
DROP TRIGGER IF EXISTS messages_fts_delete;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) SELECT 'delete', old.rowid, old.body
    WHERE NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_rowid = old.rowid);
    DELETE FROM messages_fts_pending WHERE message_rowid = old.rowid;
END;
DROP TRIGGER IF EXISTS messages_fts_update;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages
WHEN NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_rowid = old.rowid) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.rowid, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body);
END;
