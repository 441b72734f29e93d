-- Push notifications to offline users (docs/push.md).

-- A user's devices. A token belongs to one user: the latest to register it.
CREATE TABLE push_devices (
    id          TEXT PRIMARY KEY,
    token       TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    provider    TEXT NOT NULL CHECK (provider IN ('expo', 'webhook')),
    platform    TEXT NOT NULL,
    app_id      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX push_devices_by_user ON push_devices (user_id, updated_at);

-- push = 1: the member has a device (members_push finds them); push_seq: the
-- messages up to it have been decided on (pushed or not). notify: all,
-- mentions or none, until notify_until (then all again). A conversation's
-- push_members counts its members with push = 1 (kept by triggers): a send
-- reads it with its first statement and notes the message for push if any
-- other member has a device.
ALTER TABLE members ADD COLUMN push INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN push_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN notify TEXT NOT NULL DEFAULT 'all';
ALTER TABLE members ADD COLUMN notify_until BIGINT;
CREATE INDEX members_push ON members (conversation_id) WHERE push = 1;

ALTER TABLE conversations ADD COLUMN push_members INTEGER NOT NULL DEFAULT 0;
CREATE FUNCTION members_push_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.push = 1 THEN
            UPDATE conversations SET push_members = push_members + 1 WHERE id = NEW.conversation_id;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        IF OLD.push = 1 THEN
            UPDATE conversations SET push_members = push_members - 1 WHERE id = OLD.conversation_id;
        END IF;
    ELSIF NEW.push <> OLD.push THEN
        UPDATE conversations SET push_members = push_members + NEW.push - OLD.push
        WHERE id = NEW.conversation_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER members_push_count AFTER INSERT OR DELETE OR UPDATE OF push ON members
FOR EACH ROW EXECUTE FUNCTION members_push_count();
ALTER TABLE users ADD COLUMN dnd_until BIGINT;

-- Stored messages some other member may be told of, written by the send's
-- own transaction and turned into push_outbox rows by a worker.
CREATE TABLE push_events (
    conversation_id TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    sender_id       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX push_events_order ON push_events (created_at);

-- What a recipient is yet to be told of a conversation: its messages after
-- the member's push_seq up to last_seq, collapsed into one push at due_at.
CREATE TABLE push_outbox (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    last_seq        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    due_at          BIGINT NOT NULL,
    rechecked       INTEGER NOT NULL DEFAULT 0,
    lease_until     BIGINT NOT NULL DEFAULT 0,
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
    created_at  BIGINT NOT NULL,
    due_at      BIGINT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until BIGINT NOT NULL DEFAULT 0,
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
    created_at  BIGINT NOT NULL,
    attempts    INTEGER NOT NULL,
    sent_at     BIGINT NOT NULL,
    check_at    BIGINT NOT NULL
);
CREATE INDEX push_tickets_due ON push_tickets (check_at);
