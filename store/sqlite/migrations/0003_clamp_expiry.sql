-- Expiries past 9999-12-31T23:59:59Z (253402300799000000 µs) could be
-- stored before tollgate refused them; no JSON or RFC 3339 answer can
-- carry one. Clamp them to that last second: the token stays valid for
-- as long as it was meant to, in practice.
UPDATE tokens SET expires_at = 253402300799000000 WHERE expires_at > 253402300799000000;
