-- Pull insight: daily aggregates per token × repository × UTC day, and
-- their detail (client addresses, user agents), kept for fewer days.
-- day is the number of days since 1970-01-01 UTC. token_id and
-- account_id are '' for anonymous pulls. No foreign keys: usage outlives
-- nothing it refers to (tokens are revoked, never deleted) and must not
-- make a token write wait.

CREATE TABLE IF NOT EXISTS usage_days (
	day        INTEGER NOT NULL,
	token_id   TEXT    NOT NULL,
	account_id TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	repository TEXT    NOT NULL,
	pulls      INTEGER NOT NULL DEFAULT 0,
	manifests  INTEGER NOT NULL DEFAULT 0,
	bytes      INTEGER NOT NULL DEFAULT 0,
	addresses  INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (day, token_id, kind, repository)
) STRICT;

CREATE INDEX IF NOT EXISTS usage_days_account_idx ON usage_days (account_id, day);

CREATE TABLE IF NOT EXISTS usage_addresses (
	day        INTEGER NOT NULL,
	token_id   TEXT    NOT NULL,
	account_id TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	repository TEXT    NOT NULL,
	address    TEXT    NOT NULL,
	pulls      INTEGER NOT NULL DEFAULT 0,
	first_seen INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL,
	PRIMARY KEY (day, token_id, kind, repository, address)
) STRICT;

CREATE INDEX IF NOT EXISTS usage_addresses_account_idx ON usage_addresses (account_id, day);

CREATE TABLE IF NOT EXISTS usage_agents (
	day        INTEGER NOT NULL,
	token_id   TEXT    NOT NULL,
	account_id TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	repository TEXT    NOT NULL,
	user_agent TEXT    NOT NULL,
	pulls      INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (day, token_id, kind, repository, user_agent)
) STRICT;

CREATE INDEX IF NOT EXISTS usage_agents_account_idx ON usage_agents (account_id, day);

CREATE TABLE IF NOT EXISTS token_networks (
	token_id   TEXT    NOT NULL,
	network    TEXT    NOT NULL,
	first_seen INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL,
	PRIMARY KEY (token_id, network)
) STRICT;
