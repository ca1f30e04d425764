-- Background jobs that one replica runs per interval (tollgate.JobTx):
-- a replica runs a job only when its upsert moved next_run_at forward,
-- which exactly one of the replicas racing for a due run achieves.
CREATE TABLE IF NOT EXISTS jobs (
	name        text        PRIMARY KEY,
	claimed_at  timestamptz NOT NULL,
	next_run_at timestamptz NOT NULL
);
