-- Console users and their sessions.

CREATE TABLE users (
	id              TEXT    NOT NULL PRIMARY KEY,
	account_id      TEXT    NOT NULL REFERENCES accounts (id),
	email           TEXT    NOT NULL,
	role            TEXT    NOT NULL,
	password_hash   TEXT    NOT NULL DEFAULT '',
	link_hash       BLOB,
	link_expires_at INTEGER,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	CONSTRAINT users_email_key UNIQUE (email),
	CONSTRAINT users_link_hash_key UNIQUE (link_hash)
) STRICT;

CREATE INDEX users_account_id_idx ON users (account_id, email);

CREATE TABLE sessions (
	id           TEXT    NOT NULL PRIMARY KEY,
	user_id      TEXT    NOT NULL REFERENCES users (id),
	hash         BLOB    NOT NULL,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	last_seen_at INTEGER NOT NULL,
	CONSTRAINT sessions_hash_key UNIQUE (hash)
) STRICT;

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
