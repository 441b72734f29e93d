-- Unread counts without counting messages (store/records.py, unread):
-- a message's ordinal is its place among its conversation's messages (1, 2,
-- ...), and message_count the conversation's messages so far, both written
-- by the send. A member's unread count is then message_count less the
-- ordinal of the last message up to its read pointer, less the deleted
-- messages after it (found through messages_deleted): index lookups, however
-- long the conversation.
ALTER TABLE messages ADD COLUMN ordinal BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN message_count BIGINT NOT NULL DEFAULT 0;
UPDATE messages AS m SET ordinal = r.n FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY conversation_id ORDER BY seq) AS n FROM messages) AS r WHERE r.id = m.id;
UPDATE conversations SET message_count = (SELECT COUNT(*) FROM messages WHERE messages.conversation_id = conversations.id);
CREATE INDEX messages_deleted ON messages (conversation_id, seq) WHERE deleted_at IS NOT NULL;
-- Processes of the release before this one, still serving during a rolling
-- upgrade, insert messages without an ordinal (0) and do not count them: the
-- trigger numbers those. Its WHEN keeps it from running for this release's
-- sends, which number their messages themselves.
CREATE FUNCTION messages_ordinal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET message_count = message_count + 1
    WHERE id = NEW.conversation_id RETURNING message_count INTO NEW.ordinal;
    RETURN NEW;
END
$$;
CREATE TRIGGER messages_ordinal BEFORE INSERT ON messages
FOR EACH ROW WHEN (NEW.ordinal = 0) EXECUTE FUNCTION messages_ordinal();
