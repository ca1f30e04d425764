-- Rotation: a token's current secret (secret_hash, secret_version) and
-- the one it replaced (prev_*), live until prev_valid_until. Only the two
-- are kept; a third rotation forgets the oldest.
ALTER TABLE tokens ADD COLUMN secret_version     INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tokens ADD COLUMN prev_secret_hash   BLOB;
ALTER TABLE tokens ADD COLUMN prev_version       INTEGER;
ALTER TABLE tokens ADD COLUMN prev_rotated_at    INTEGER;
ALTER TABLE tokens ADD COLUMN prev_valid_until   INTEGER;
ALTER TABLE tokens ADD COLUMN prev_expired_noted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN prev_last_used_at  INTEGER;
ALTER TABLE tokens ADD COLUMN prev_last_used_ip  TEXT    NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN prev_last_used_ua  TEXT    NOT NULL DEFAULT '';

CREATE UNIQUE INDEX tokens_prev_secret_hash_key ON tokens (prev_secret_hash);
-- The sweeps: grace ends not yet noted, expiries coming.
CREATE INDEX tokens_prev_valid_until_idx ON tokens (prev_valid_until)
	WHERE prev_valid_until IS NOT NULL AND prev_expired_noted = 0;
CREATE INDEX tokens_expires_at_idx ON tokens (expires_at)
	WHERE expires_at IS NOT NULL AND revoked_at IS NULL;

-- The notification outbox: events, written in the transaction of the
-- change they describe (dedupe_key, when set, makes one once-only), and their
-- deliveries, one per destination, claimed by deliverers with a lease.
CREATE TABLE events (
	id         TEXT    NOT NULL PRIMARY KEY,
	account_id TEXT    NOT NULL,
	type       TEXT    NOT NULL,
	dedupe_key TEXT,
	payload    TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	CONSTRAINT events_dedupe_key_key UNIQUE (dedupe_key)
) STRICT;

CREATE TABLE webhooks (
	id            TEXT    NOT NULL PRIMARY KEY,
	account_id    TEXT    NOT NULL REFERENCES accounts (id),
	url           TEXT    NOT NULL,
	events        TEXT    NOT NULL DEFAULT '[]', -- JSON array; empty: all
	format        TEXT    NOT NULL,
	secret_sealed BLOB    NOT NULL,
	created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX webhooks_account_id_idx ON webhooks (account_id, created_at);

CREATE TABLE deliveries (
	id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	event_id        TEXT    NOT NULL REFERENCES events (id),
	account_id      TEXT    NOT NULL,
	channel         TEXT    NOT NULL,
	target          TEXT    NOT NULL,
	status          TEXT    NOT NULL,
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL,
	leased_until    INTEGER,
	last_code       INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT    NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL,
	delivered_at    INTEGER
) STRICT;

CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_account_id_idx ON deliveries (account_id, id);
