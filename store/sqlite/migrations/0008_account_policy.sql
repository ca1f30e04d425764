-- An account's token policy, set by an operator, as JSON:
-- {"max_lifetime_s":…,"networks":[…],"auto_pause_after_s":…,"require_restrictions":…}.
-- '{}' limits nothing, which is what every existing account had.
ALTER TABLE accounts ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
