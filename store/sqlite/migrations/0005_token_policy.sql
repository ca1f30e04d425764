-- A token's own policy (restrictions, networks, valid-from, pause), as
-- JSON: {"images":[],"packages":[],"networks":[],"valid_from":…,"paused_at":…}.
-- '{}' limits nothing, which is what every existing token had.
ALTER TABLE tokens ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
