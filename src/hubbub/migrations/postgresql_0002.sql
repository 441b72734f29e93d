-- Members who hid a conversation, found without reading every member of it:
-- each new message makes the conversation visible to them again.
CREATE INDEX members_hidden ON members (conversation_id) WHERE hidden = 1;
