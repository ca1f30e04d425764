-- Keyless pulls: an account's trust policies (the body as JSON text, see
-- store/internal/codec/trust.go), found by audience at each exchange.
CREATE TABLE trust_policies (
	id         text        NOT NULL,
	account_id text        NOT NULL,
	audience   text        NOT NULL,
	doc        text        NOT NULL,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	seq        bigserial   NOT NULL,
	CONSTRAINT trust_policies_pkey PRIMARY KEY (id),
	CONSTRAINT trust_policies_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id)
);
CREATE INDEX trust_policies_account_id_idx ON trust_policies (account_id, created_at, seq);
CREATE INDEX trust_policies_audience_idx ON trust_policies (audience);

-- Ephemeral credentials are token rows with the workload identity that
-- obtained them (JSON text) and the policy that issued them; '' and NULL
-- for registry tokens.
ALTER TABLE tokens
	ADD COLUMN identity        text NOT NULL DEFAULT '',
	ADD COLUMN trust_policy_id text;
CREATE INDEX tokens_trust_policy_id_idx ON tokens (trust_policy_id) WHERE trust_policy_id IS NOT NULL;
