-- A conversation's member count, kept by triggers, so that the conversation
-- list can say how many members a group has without counting them (it lists
-- only the first few of a large group's members).
ALTER TABLE conversations ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET member_count = (SELECT COUNT(*) FROM members WHERE members.conversation_id = conversations.id);
CREATE FUNCTION members_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE conversations SET member_count = member_count + 1 WHERE id = NEW.conversation_id;
    ELSE
        UPDATE conversations SET member_count = member_count - 1 WHERE id = OLD.conversation_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER members_count AFTER INSERT OR DELETE ON members
FOR EACH ROW EXECUTE FUNCTION members_count();
-- The first members of each conversation, read without reading them all.
CREATE INDEX members_by_join ON members (conversation_id, joined_at, user_id);
