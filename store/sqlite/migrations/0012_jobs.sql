-- Background jobs that one replica runs per interval (tollgate.JobTx):
-- a caller runs a job only when its upsert moved next_run_at forward.
-- Times are microseconds since the Unix epoch.
CREATE TABLE IF NOT EXISTS jobs (
	name        TEXT    PRIMARY KEY,
	claimed_at  INTEGER NOT NULL,
	next_run_at INTEGER NOT NULL
) STRICT;
