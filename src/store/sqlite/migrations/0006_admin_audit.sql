-- Administration and audit: disabled accounts, the previous client secret
-- during a rotation's grace, the audit trail, and the indexes the admin
-- listings need (email prefix ranges use the unique email index).
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
CREATE INDEX users_role ON users(role);
ALTER TABLE clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at INTEGER;
CREATE INDEX refresh_families_client ON refresh_families(client_id);
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    type TEXT NOT NULL,
    user_id TEXT,
    client_id TEXT,
    ip TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX events_at ON events(at);
CREATE INDEX events_user ON events(user_id, id);
CREATE INDEX events_client ON events(client_id, id);
CREATE INDEX events_type ON events(type, id);
