-- Keyless pulls: an account's trust policies (the body as JSON text, see
-- store/internal/codec/trust.go), found by audience at each exchange.
CREATE TABLE trust_policies (
	id         TEXT    NOT NULL PRIMARY KEY,
	account_id TEXT    NOT NULL REFERENCES accounts (id),
	audience   TEXT    NOT NULL,
	doc        TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE INDEX trust_policies_account_id_idx ON trust_policies (account_id, created_at);
CREATE INDEX trust_policies_audience_idx ON trust_policies (audience);

-- Ephemeral credentials are token rows with the workload identity that
-- obtained them (JSON text) and the policy that issued them; '' and NULL
-- for registry tokens.
ALTER TABLE tokens ADD COLUMN identity TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN trust_policy_id TEXT;
CREATE INDEX tokens_trust_policy_id_idx ON tokens (trust_policy_id) WHERE trust_policy_id IS NOT NULL;
