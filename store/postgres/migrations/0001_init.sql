-- Tables are created unqualified, in the first schema of search_path, so
-- that one database can hold several tollgate installations (or tests).

CREATE TABLE accounts (
	id             text        NOT NULL,
	name           text        NOT NULL,
	status         text        NOT NULL,
	package_access text        NOT NULL,
	sub_images     jsonb       NOT NULL DEFAULT '[]', -- array of patterns
	sub_packages   jsonb       NOT NULL DEFAULT '[]', -- array of patterns
	api_key_hash   bytea,
	created_at     timestamptz NOT NULL,
	updated_at     timestamptz NOT NULL,
	CONSTRAINT accounts_pkey PRIMARY KEY (id),
	CONSTRAINT accounts_name_key UNIQUE (name),
	CONSTRAINT accounts_api_key_hash_key UNIQUE (api_key_hash)
);

CREATE TABLE tokens (
	id            text        NOT NULL,
	-- seq orders tokens created in the same microsecond by insertion.
	seq           bigint      GENERATED ALWAYS AS IDENTITY,
	account_id    text        NOT NULL,
	name          text        NOT NULL,
	description   text        NOT NULL DEFAULT '',
	scope         integer     NOT NULL,
	expires_at    timestamptz,
	created_at    timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL,
	last_used_at  timestamptz,
	last_used_ip  text        NOT NULL DEFAULT '',
	last_used_ua  text        NOT NULL DEFAULT '',
	pulls         bigint      NOT NULL DEFAULT 0,
	revoked_at    timestamptz,
	secret_hash   bytea       NOT NULL,
	secret_sealed bytea,
	CONSTRAINT tokens_pkey PRIMARY KEY (id),
	CONSTRAINT tokens_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id),
	CONSTRAINT tokens_secret_hash_key UNIQUE (secret_hash)
);

-- ListTokens and CountActiveTokens go by account, oldest first.
CREATE INDEX tokens_account_id_idx ON tokens (account_id, created_at, seq);

-- No foreign key on account_id: the audit log outlives what it describes.
CREATE TABLE audit (
	id         bigserial   NOT NULL,
	account_id text        NOT NULL,
	time       timestamptz NOT NULL,
	actor      text        NOT NULL,
	action     text        NOT NULL,
	target     text        NOT NULL,
	changes    jsonb       NOT NULL DEFAULT '{}', -- field -> {from, to}
	CONSTRAINT audit_pkey PRIMARY KEY (id)
);

CREATE INDEX audit_account_id_idx ON audit (account_id, id);
