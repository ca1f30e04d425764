-- The invalidation log: one row per committed write that changed a token
-- or an account, appended in the write's own transaction. Caches read it
-- after the last seq they applied, so an invalidation that Redis never
-- delivered is still applied. AUTOINCREMENT never reuses a seq, and
-- SQLite's single writer makes seq order commit order.
CREATE TABLE invalidations (
	seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	time       INTEGER NOT NULL,
	account_id TEXT    NOT NULL DEFAULT '',
	token_ids  TEXT    NOT NULL DEFAULT '[]' -- JSON array of token ids
) STRICT;
