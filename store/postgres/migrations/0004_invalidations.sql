-- The invalidation log: one row per committed write that changed a token
-- or an account, appended in the write's own transaction. Caches read it
-- after the last seq they applied, so an invalidation that Redis never
-- delivered is still applied.
--
-- Appends take a transaction-scoped advisory lock keyed by this table's
-- oid before drawing a seq and hold it until commit (readers are not
-- blocked), so seq order is commit order: a reader that sees seq n never
-- later finds a smaller one.
CREATE TABLE invalidations (
	seq        bigint      GENERATED ALWAYS AS IDENTITY,
	time       timestamptz NOT NULL,
	account_id text        NOT NULL DEFAULT '',
	token_ids  jsonb       NOT NULL DEFAULT '[]', -- array of token ids
	CONSTRAINT invalidations_pkey PRIMARY KEY (seq)
);
