-- hubbub schema, version 1 (SQLite).
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    title            TEXT,
    direct_key       TEXT UNIQUE,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_activity_at INTEGER NOT NULL
);

CREATE TABLE members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at       INTEGER NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id, conversation_id);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    sender_id       TEXT NOT NULL,
    kind            TEXT NOT NULL DEFAULT 'text',
    body            TEXT NOT NULL,
    client_msg_id   TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, conversation_id, client_msg_id)
);
