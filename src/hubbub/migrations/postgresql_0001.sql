-- hubbub schema, revision 0001 (PostgreSQL). Times are milliseconds since the epoch.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    updated_at  BIGINT NOT NULL,
    last_seen   BIGINT
);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('direct', 'group', 'room')),
    title            TEXT,
    direct_key       TEXT UNIQUE,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    last_seq         BIGINT NOT NULL DEFAULT 0,
    last_activity_at BIGINT NOT NULL
);
CREATE INDEX conversations_rooms ON conversations (kind, last_activity_at) WHERE kind = 'room';

CREATE TABLE members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at       BIGINT NOT NULL,
    read_seq        BIGINT NOT NULL DEFAULT 0,
    delivered_seq   BIGINT NOT NULL DEFAULT 0,
    hidden          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id, conversation_id);

CREATE TABLE events (
    conversation_id TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    type            TEXT NOT NULL,
    message_id      TEXT,
    data            TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq             BIGINT NOT NULL,
    sender_id       TEXT NOT NULL,
    kind            TEXT NOT NULL DEFAULT 'text',
    body            TEXT NOT NULL,
    client_msg_id   TEXT,
    reply_to        TEXT,
    created_at      BIGINT NOT NULL,
    edited_at       BIGINT,
    deleted_at      BIGINT,
    deleted_by      TEXT,
    body_tsv        TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, conversation_id, client_msg_id)
);
CREATE INDEX messages_search ON messages USING GIN (body_tsv);

CREATE TABLE message_versions (
    message_id TEXT NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT NOT NULL,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, version)
);

CREATE TABLE blocks (
    blocker    TEXT NOT NULL,
    blocked    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX blocks_by_blocked ON blocks (blocked, blocker);

CREATE TABLE reactions (
    message_id TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE message_attachments (
    message_id TEXT NOT NULL,
    upload_id  TEXT NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX attachments_by_upload ON message_attachments (upload_id);
