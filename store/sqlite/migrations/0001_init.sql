-- Times are INTEGER microseconds since the Unix epoch, UTC: exact at the
-- precision the rest of tollgate uses, and they sort as numbers.

CREATE TABLE accounts (
	id             TEXT    NOT NULL PRIMARY KEY,
	name           TEXT    NOT NULL,
	status         TEXT    NOT NULL,
	package_access TEXT    NOT NULL,
	sub_images     TEXT    NOT NULL DEFAULT '[]', -- JSON array of patterns
	sub_packages   TEXT    NOT NULL DEFAULT '[]', -- JSON array of patterns
	api_key_hash   BLOB,
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	CONSTRAINT accounts_name_key UNIQUE (name),
	CONSTRAINT accounts_api_key_hash_key UNIQUE (api_key_hash)
) STRICT;

CREATE TABLE tokens (
	id            TEXT    NOT NULL PRIMARY KEY,
	account_id    TEXT    NOT NULL REFERENCES accounts (id),
	name          TEXT    NOT NULL,
	description   TEXT    NOT NULL DEFAULT '',
	scope         INTEGER NOT NULL,
	expires_at    INTEGER,
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL,
	last_used_at  INTEGER,
	last_used_ip  TEXT    NOT NULL DEFAULT '',
	last_used_ua  TEXT    NOT NULL DEFAULT '',
	pulls         INTEGER NOT NULL DEFAULT 0,
	revoked_at    INTEGER,
	secret_hash   BLOB    NOT NULL,
	secret_sealed BLOB,
	CONSTRAINT tokens_secret_hash_key UNIQUE (secret_hash)
) STRICT;

-- ListTokens and CountActiveTokens go by account, oldest first.
CREATE INDEX tokens_account_id_idx ON tokens (account_id, created_at);

-- No foreign key on account_id: the audit log outlives what it describes.
CREATE TABLE audit (
	id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	account_id TEXT    NOT NULL,
	time       INTEGER NOT NULL,
	actor      TEXT    NOT NULL,
	action     TEXT    NOT NULL,
	target     TEXT    NOT NULL,
	changes    TEXT    NOT NULL DEFAULT '{}' -- JSON object of field -> {from, to}
) STRICT;

CREATE INDEX audit_account_id_idx ON audit (account_id, id);
