-- Refused attempts of known tokens (paused, outside their networks, over
-- their cap, …), the most recent few per token (tollgate.RefusalsKept),
-- shown on the token's card. at is in microseconds since the Unix epoch.
-- No secret is ever stored: the token's public id only.
CREATE TABLE IF NOT EXISTS token_refusals (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	token_id   TEXT    NOT NULL,
	at         INTEGER NOT NULL,
	address    TEXT    NOT NULL,
	user_agent TEXT    NOT NULL,
	reason     TEXT    NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS token_refusals_token_idx ON token_refusals (token_id, at DESC, id DESC);
