-- hubbub schema, revision 0001 (SQLite). Times are milliseconds since the epoch.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    updated_at  INTEGER NOT NULL,
    last_seen   INTEGER
);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('direct', 'group', 'room')),
    title            TEXT,
    direct_key       TEXT UNIQUE,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_activity_at INTEGER NOT NULL
);
CREATE INDEX conversations_rooms ON conversations (kind, last_activity_at) WHERE kind = 'room';

CREATE TABLE members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at       INTEGER NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    hidden          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id, conversation_id);

-- Every event of a conversation's stream, one seq each. Message events point
-- at the message (rendered from its current state on replay); the others
-- carry their fields as JSON.
CREATE TABLE events (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    type            TEXT NOT NULL,
    message_id      TEXT,
    data            TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    sender_id       TEXT NOT NULL,
    kind            TEXT NOT NULL DEFAULT 'text',
    body            TEXT NOT NULL,
    client_msg_id   TEXT,
    reply_to        TEXT,
    created_at      INTEGER NOT NULL,
    edited_at       INTEGER,
    deleted_at      INTEGER,
    deleted_by      TEXT,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, conversation_id, client_msg_id)
);

CREATE TABLE message_versions (
    message_id TEXT NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, version)
) WITHOUT ROWID;

CREATE TABLE blocks (
    blocker    TEXT NOT NULL,
    blocked    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;
CREATE INDEX blocks_by_blocked ON blocks (blocked, blocker);

CREATE TABLE reactions (
    message_id TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;

CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE message_attachments (
    message_id TEXT NOT NULL,
    upload_id  TEXT NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (message_id, position)
) WITHOUT ROWID;
CREATE INDEX attachments_by_upload ON message_attachments (upload_id);

-- Full-text search over message bodies; deleted messages have an empty body.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    body, content = 'messages', content_rowid = 'rowid', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.rowid, old.body);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.rowid, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body);
END;
