-- Who manages a webhook: 'customer' (the account's own people, through
-- the console or an account key) or 'operator' (the registry's operator;
-- customers see it but cannot delete it). Existing webhooks were created
-- by whoever could, and customers could not: they are the operator's.
ALTER TABLE webhooks ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'operator';
