-- Rotation: a token's current secret (secret_hash, secret_version) and
-- the one it replaced (prev_*), live until prev_valid_until. Only the two
-- are kept; a third rotation forgets the oldest.
ALTER TABLE tokens
	ADD COLUMN secret_version     integer     NOT NULL DEFAULT 1,
	ADD COLUMN prev_secret_hash   bytea,
	ADD COLUMN prev_version       integer,
	ADD COLUMN prev_rotated_at    timestamptz,
	ADD COLUMN prev_valid_until   timestamptz,
	ADD COLUMN prev_expired_noted boolean     NOT NULL DEFAULT false,
	ADD COLUMN prev_last_used_at  timestamptz,
	ADD COLUMN prev_last_used_ip  text        NOT NULL DEFAULT '',
	ADD COLUMN prev_last_used_ua  text        NOT NULL DEFAULT '',
	ADD CONSTRAINT tokens_prev_secret_hash_key UNIQUE (prev_secret_hash);

-- The sweeps: grace ends not yet noted, expiries coming.
CREATE INDEX tokens_prev_valid_until_idx ON tokens (prev_valid_until)
	WHERE prev_valid_until IS NOT NULL AND NOT prev_expired_noted;
CREATE INDEX tokens_expires_at_idx ON tokens (expires_at)
	WHERE expires_at IS NOT NULL AND revoked_at IS NULL;

-- The notification outbox: events, written in the transaction of the
-- change they describe (dedupe_key, when set, makes one once-only), and their
-- deliveries, one per destination, claimed by deliverers with a lease
-- (FOR UPDATE SKIP LOCKED).
CREATE TABLE events (
	id         text        NOT NULL,
	account_id text        NOT NULL,
	type       text        NOT NULL,
	dedupe_key text,
	payload    text        NOT NULL, -- the exact bytes that are signed
	created_at timestamptz NOT NULL,
	CONSTRAINT events_pkey PRIMARY KEY (id),
	CONSTRAINT events_dedupe_key_key UNIQUE (dedupe_key)
);

CREATE TABLE webhooks (
	id            text        NOT NULL,
	account_id    text        NOT NULL,
	url           text        NOT NULL,
	events        jsonb       NOT NULL DEFAULT '[]', -- empty: all
	format        text        NOT NULL,
	secret_sealed bytea       NOT NULL,
	created_at    timestamptz NOT NULL,
	CONSTRAINT webhooks_pkey PRIMARY KEY (id),
	CONSTRAINT webhooks_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id)
);

CREATE INDEX webhooks_account_id_idx ON webhooks (account_id, created_at);

CREATE TABLE deliveries (
	id              bigint      GENERATED ALWAYS AS IDENTITY,
	event_id        text        NOT NULL,
	account_id      text        NOT NULL,
	channel         text        NOT NULL,
	target          text        NOT NULL,
	status          text        NOT NULL,
	attempts        integer     NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL,
	leased_until    timestamptz,
	last_code       integer     NOT NULL DEFAULT 0,
	last_error      text        NOT NULL DEFAULT '',
	created_at      timestamptz NOT NULL,
	delivered_at    timestamptz,
	CONSTRAINT deliveries_pkey PRIMARY KEY (id),
	CONSTRAINT deliveries_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id)
);

CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_account_id_idx ON deliveries (account_id, id);
