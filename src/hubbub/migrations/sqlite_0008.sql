-- The full-text index no longer merges its segments inside the commit that
-- crosses its work unit (FTS5's automerge: every 64th one-message commit
-- spent 15-20 ms merging on a 10M-message store, and every send in its group
-- waited). The writer merges in small steps of its own between groups
-- instead (store/sqlite.py, merge_index). The setting is kept in the index's
-- own config table.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 0);
