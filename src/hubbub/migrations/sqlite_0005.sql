-- A conversation's member count, kept by triggers, so that the conversation
-- list can say how many members a group has without counting them (it lists
-- only the first few of a large group's members).
ALTER TABLE conversations ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET member_count = (SELECT COUNT(*) FROM members WHERE members.conversation_id = conversations.id);
CREATE TRIGGER members_count_insert AFTER INSERT ON members BEGIN
    UPDATE conversations SET member_count = member_count + 1 WHERE id = new.conversation_id;
END;
CREATE TRIGGER members_count_delete AFTER DELETE ON members BEGIN
    UPDATE conversations SET member_count = member_count - 1 WHERE id = old.conversation_id;
END;
-- The first members of each conversation, read without reading them all.
CREATE INDEX members_by_join ON members (conversation_id, joined_at, user_id);
