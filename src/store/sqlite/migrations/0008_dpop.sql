-- DPoP (RFC 9449): the key a refresh family is bound to, and the proofs
-- (by key and jti) already seen, until their iat leaves the window.
ALTER TABLE refresh_families ADD COLUMN jkt TEXT;
CREATE TABLE dpop_proofs (
    key TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dpop_proofs_expiry ON dpop_proofs(expires_at);
