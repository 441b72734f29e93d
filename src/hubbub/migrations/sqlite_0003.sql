-- Push notifications to offline users (docs/push.md).

-- A user's devices. A token belongs to one user: the latest to register it.
CREATE TABLE push_devices (
    id          TEXT PRIMARY KEY,
    token       TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    provider    TEXT NOT NULL CHECK (provider IN ('expo', 'webhook')),
    platform    TEXT NOT NULL,
    app_id      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX push_devices_by_user ON push_devices (user_id, updated_at);

-- push = 1: the member has a device (members_push finds them); push_seq: the
-- messages up to it have been decided on (pushed or not). notify: all,
-- mentions or none, until notify_until (then all again). A conversation's
-- push_members counts its members with push = 1 (kept by triggers): a send
-- reads it with its first statement and notes the message for push if any
-- other member has a device.
ALTER TABLE members ADD COLUMN push INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN push_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN notify TEXT NOT NULL DEFAULT 'all';
ALTER TABLE members ADD COLUMN notify_until INTEGER;
CREATE INDEX members_push ON members (conversation_id) WHERE push = 1;

ALTER TABLE conversations ADD COLUMN push_members INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER members_push_insert AFTER INSERT ON members WHEN new.push = 1 BEGIN
    UPDATE conversations SET push_members = push_members + 1 WHERE id = new.conversation_id;
END;
CREATE TRIGGER members_push_delete AFTER DELETE ON members WHEN old.push = 1 BEGIN
    UPDATE conversations SET push_members = push_members - 1 WHERE id = old.conversation_id;
END;
CREATE TRIGGER members_push_update AFTER UPDATE OF push ON members
WHEN old.push <> new.push BEGIN
    UPDATE conversations SET push_members = push_members + new.push - old.push
    WHERE id = new.conversation_id;
END;
ALTER TABLE users ADD COLUMN dnd_until INTEGER;

-- Stored messages some other member may be told of, written by the send's
-- own transaction and turned into push_outbox rows by a worker.
CREATE TABLE push_events (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    sender_id       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE INDEX push_events_order ON push_events (created_at);

-- What a recipient is yet to be told of a conversation: its messages after
-- the member's push_seq up to last_seq, collapsed into one push at due_at.
CREATE TABLE push_outbox (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    last_seq        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,
    rechecked       INTEGER NOT NULL DEFAULT 0,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    lease           TEXT,
    UNIQUE (user_id, conversation_id)
);
CREATE INDEX push_outbox_due ON push_outbox (due_at);
CREATE INDEX push_outbox_age ON push_outbox (created_at);

-- Pushes composed for one device each, sent by its provider's module.
CREATE TABLE push_sends (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER NOT NULL DEFAULT 0,
    lease       TEXT
);
CREATE INDEX push_sends_due ON push_sends (due_at);
CREATE INDEX push_sends_age ON push_sends (created_at);
CREATE INDEX push_sends_by_device ON push_sends (device_id);

-- Expo's tickets, whose receipts are checked later; a receipt asking to slow
-- down sends the push again (its payload is kept until then).
CREATE TABLE push_tickets (
    id          TEXT PRIMARY KEY,
    push_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    sent_at     INTEGER NOT NULL,
    check_at    INTEGER NOT NULL
);
CREATE INDEX push_tickets_due ON push_tickets (check_at);
