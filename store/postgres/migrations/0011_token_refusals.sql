-- Refused attempts of known tokens (paused, outside their networks, over
-- their cap, …), the most recent few per token (tollgate.RefusalsKept),
-- shown on the token's card. No secret is ever stored: the token's
-- public id only.
CREATE TABLE IF NOT EXISTS token_refusals (
	id         bigserial   PRIMARY KEY,
	token_id   text        NOT NULL,
	at         timestamptz NOT NULL,
	address    text        NOT NULL,
	user_agent text        NOT NULL,
	reason     text        NOT NULL
);

CREATE INDEX IF NOT EXISTS token_refusals_token_idx ON token_refusals (token_id, at DESC, id DESC);
