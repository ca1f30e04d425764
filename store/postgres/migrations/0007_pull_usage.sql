-- Pull insight: daily aggregates per token × repository × UTC day, and
-- their detail (client addresses, user agents), kept for fewer days.
-- day is the number of days since 1970-01-01 UTC. token_id and
-- account_id are '' for anonymous pulls. No foreign keys: usage outlives
-- nothing it refers to (tokens are revoked, never deleted) and must not
-- make a token write wait.

CREATE TABLE IF NOT EXISTS usage_days (
	day        integer NOT NULL,
	token_id   text    NOT NULL,
	account_id text    NOT NULL,
	kind       text    NOT NULL,
	repository text    NOT NULL,
	pulls      bigint  NOT NULL DEFAULT 0,
	manifests  bigint  NOT NULL DEFAULT 0,
	bytes      bigint  NOT NULL DEFAULT 0,
	addresses  bigint  NOT NULL DEFAULT 0,
	CONSTRAINT usage_days_pkey PRIMARY KEY (day, token_id, kind, repository)
);

CREATE INDEX IF NOT EXISTS usage_days_account_idx ON usage_days (account_id, day);

CREATE TABLE IF NOT EXISTS usage_addresses (
	day        integer     NOT NULL,
	token_id   text        NOT NULL,
	account_id text        NOT NULL,
	kind       text        NOT NULL,
	repository text        NOT NULL,
	address    text        NOT NULL,
	pulls      bigint      NOT NULL DEFAULT 0,
	first_seen timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL,
	CONSTRAINT usage_addresses_pkey PRIMARY KEY (day, token_id, kind, repository, address)
);

CREATE INDEX IF NOT EXISTS usage_addresses_account_idx ON usage_addresses (account_id, day);

CREATE TABLE IF NOT EXISTS usage_agents (
	day        integer NOT NULL,
	token_id   text    NOT NULL,
	account_id text    NOT NULL,
	kind       text    NOT NULL,
	repository text    NOT NULL,
	user_agent text    NOT NULL,
	pulls      bigint  NOT NULL DEFAULT 0,
	CONSTRAINT usage_agents_pkey PRIMARY KEY (day, token_id, kind, repository, user_agent)
);

CREATE INDEX IF NOT EXISTS usage_agents_account_idx ON usage_agents (account_id, day);

CREATE TABLE IF NOT EXISTS token_networks (
	token_id   text        NOT NULL,
	network    text        NOT NULL,
	first_seen timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL,
	CONSTRAINT token_networks_pkey PRIMARY KEY (token_id, network)
);
