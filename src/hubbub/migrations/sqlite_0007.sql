-- New messages wait in messages_fts_pending and are written into the
-- full-text index once per transaction (store/sqlite.py, index_pending),
-- not by the insert: SQLite opens a statement savepoint for each insert
-- with a trigger, and FTS5 writes what it holds to disk at every savepoint,
-- which made the index cost a third of a send and one segment per message.
CREATE TABLE messages_fts_pending (message_rowid INTEGER PRIMARY KEY);
DROP TRIGGER messages_fts_insert;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts_pending (message_rowid) VALUES (new.rowid);
END;
-- A message still pending has no entry to take out (the pending insert
-- reads its body as it is then); FTS5 must never be told to delete a row it
-- does not hold.
DROP TRIGGER messages_fts_delete;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_rowid = old.rowid) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.rowid, old.body);
END;
CREATE TRIGGER messages_fts_unqueue AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts_pending WHERE message_rowid = old.rowid;
END;
DROP TRIGGER messages_fts_update;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages
WHEN NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_rowid = old.rowid) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.rowid, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body);
END;
