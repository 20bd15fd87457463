-- OpenID Connect: proven email addresses, RP-initiated and back-channel
-- logout registrations, and the sign-in session (browser session) every
-- family and code belongs to, with its sign-in time and the request nonce.
ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;
ALTER TABLE refresh_families ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
UPDATE refresh_families SET session_id = id;
ALTER TABLE refresh_families ADD COLUMN auth_time INTEGER NOT NULL DEFAULT 0;
UPDATE refresh_families SET auth_time = created_at;
CREATE INDEX refresh_families_session ON refresh_families(session_id);
ALTER TABLE auth_codes ADD COLUMN nonce TEXT;
ALTER TABLE auth_codes ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE auth_codes ADD COLUMN auth_time INTEGER NOT NULL DEFAULT 0;
