-- Self-service: when each family was last used (its last rotation; NULL:
-- never rotated, so its creation), when each consent was granted (NULL for
-- consents from before this migration: the domain estimates it from the
-- expiry), and one-time codes per purpose (password reset, email
-- verification), so a code of one purpose can never be used for another.
ALTER TABLE refresh_families ADD COLUMN last_used_at INTEGER;
ALTER TABLE consents ADD COLUMN granted_at INTEGER;
CREATE TABLE otps_by_purpose (
    user_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    digest TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (user_id, purpose)
);
INSERT INTO otps_by_purpose (user_id, purpose, digest, expires_at, attempts)
    SELECT user_id, 'password_reset', digest, expires_at, attempts FROM otps;
DROP TABLE otps;
ALTER TABLE otps_by_purpose RENAME TO otps;
-- Listing and forgetting a user's codes go by user.
CREATE INDEX auth_codes_user ON auth_codes(user_id);
