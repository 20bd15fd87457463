-- The credential epoch replaces the whole-second "not before" mark: a
-- version per user that every token, family, code and browser session
-- carries, moved by a password change or reset and by "sign out
-- everywhere". Old marks become epochs in milliseconds, so tokens issued
-- before them (which carry no epoch and are judged by iat * 1000) stay dead.
CREATE TABLE user_epochs (
    user_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL
);
INSERT INTO user_epochs (user_id, epoch) SELECT user_id, not_before * 1000 FROM user_not_before;
DROP TABLE user_not_before;
ALTER TABLE refresh_families ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
-- Families from before epochs are judged by their start, as old tokens are
-- by iat: one started after a user's last mark lives on.
UPDATE refresh_families SET epoch = created_at * 1000;
-- A family is kept (revoked or not) until every access token minted from
-- it has expired, so a revocation is never forgotten while it matters.
ALTER TABLE refresh_families ADD COLUMN keep_until INTEGER NOT NULL DEFAULT 0;
UPDATE refresh_families SET keep_until = absolute_expires_at + 86460;
CREATE INDEX refresh_families_keep ON refresh_families(keep_until);
ALTER TABLE auth_codes ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
