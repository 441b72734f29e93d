-- The conversations a user shows, from the index alone: the conversation
-- list chooses its page among all of a user's memberships, and reading each
-- membership's row for its hidden flag cost more than the rest of the page.
DROP INDEX members_by_user;
CREATE INDEX members_by_user ON members (user_id, conversation_id, hidden);
