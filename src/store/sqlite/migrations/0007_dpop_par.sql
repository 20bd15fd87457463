-- DPoP and pushed authorization requests: two client registration
-- settings (RFC 9449 §5.2, RFC 9126 §6), the `dpop_jkt` an authorization
-- code is bound to (RFC 9449 §10), and the pushed requests themselves,
-- keyed by the SHA-256 of their request_uri's random part (never the
-- value), deleted when taken (at most once) or by the purge once expired.
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN require_pushed_authorization_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE auth_codes ADD COLUMN dpop_jkt TEXT;
CREATE TABLE pushed_requests (
    hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    params TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX pushed_requests_expiry ON pushed_requests(expires_at);
