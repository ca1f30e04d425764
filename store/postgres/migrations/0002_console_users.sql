-- Console users and their sessions.

CREATE TABLE users (
	id              text        NOT NULL,
	account_id      text        NOT NULL,
	email           text        NOT NULL,
	role            text        NOT NULL,
	password_hash   text        NOT NULL DEFAULT '',
	link_hash       bytea,
	link_expires_at timestamptz,
	created_at      timestamptz NOT NULL,
	updated_at      timestamptz NOT NULL,
	CONSTRAINT users_pkey PRIMARY KEY (id),
	CONSTRAINT users_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id),
	CONSTRAINT users_email_key UNIQUE (email),
	CONSTRAINT users_link_hash_key UNIQUE (link_hash)
);

CREATE INDEX users_account_id_idx ON users (account_id, email);

CREATE TABLE sessions (
	id           text        NOT NULL,
	user_id      text        NOT NULL,
	hash         bytea       NOT NULL,
	created_at   timestamptz NOT NULL,
	expires_at   timestamptz NOT NULL,
	last_seen_at timestamptz NOT NULL,
	CONSTRAINT sessions_pkey PRIMARY KEY (id),
	CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
	CONSTRAINT sessions_hash_key UNIQUE (hash)
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
