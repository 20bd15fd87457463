//! Authorization codes, counters, consents and one-time codes in the
//! embedded store.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Cached, SqliteStore, map_sqlite};
use crate::clock::UnixTime;
use crate::crypto::secret::{TokenHash, constant_time_eq};
use crate::store::{
    CodeGrant, CodeRedemption, CodeStore, ConsentRecord, ConsentStore, CounterStore, OtpCheck,
    OtpPurpose, OtpStore, StoreError,
};

const CODE_SELECT: &str = "SELECT client_id, user_id, redirect_uri, scope, pkce, expires_at, \
     family_id, epoch, used_at, nonce, session_id, auth_time, dpop_jkt FROM auth_codes";

/// A code's grant and when it was used, if it was.
fn code_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(CodeGrant, Option<i64>)> {
    Ok((
        CodeGrant {
            client_id: r.get(0)?,
            user_id: r.get(1)?,
            redirect_uri: r.get(2)?,
            scope: r.get(3)?,
            pkce: r.get(4)?,
            expires_at: r.get(5)?,
            family_id: r.get(6)?,
            epoch: r.get::<_, i64>(7)?.max(0) as u64,
            nonce: r.get(9)?,
            session_id: r.get(10)?,
            auth_time: r.get(11)?,
            dpop_jkt: r.get(12)?,
        },
        r.get(8)?,
    ))
}

#[async_trait]
impl CodeStore for SqliteStore {
    async fn put_code(&self, code: &TokenHash, grant: &CodeGrant) -> Result<(), StoreError> {
        let (code, g) = (code.as_str().to_owned(), grant.clone());
        self.with_conn(move |c| {
            c.cached_execute(
                "INSERT INTO auth_codes (hash, client_id, user_id, redirect_uri, scope, pkce, \
                 expires_at, family_id, epoch, nonce, session_id, auth_time, dpop_jkt) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    code,
                    g.client_id,
                    g.user_id,
                    g.redirect_uri,
                    g.scope,
                    g.pkce,
                    g.expires_at,
                    g.family_id,
                    i64::try_from(g.epoch).unwrap_or(i64::MAX),
                    g.nonce,
                    g.session_id,
                    g.auth_time,
                    g.dpop_jkt
                ],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn peek_code(
        &self,
        code: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<CodeGrant>, StoreError> {
        let code = code.as_str().to_owned();
        self.with_reader(move |c| {
            c.cached_row(
                &format!("{CODE_SELECT} WHERE hash = ?1"),
                [&code],
                code_from_row,
            )
            .optional()
            .map_err(map_sqlite)
            .map(|found| match found {
                Some((grant, None)) if grant.expires_at > now => Some(grant),
                _ => None,
            })
        })
        .await
    }

    async fn redeem_code(
        &self,
        code: &TokenHash,
        now: UnixTime,
    ) -> Result<CodeRedemption, StoreError> {
        let code = code.as_str().to_owned();
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let found = tx
                .cached_row(
                    &format!("{CODE_SELECT} WHERE hash = ?1"),
                    [&code],
                    code_from_row,
                )
                .optional()
                .map_err(map_sqlite)?;
            let outcome = match found {
                None => CodeRedemption::Unknown,
                Some((grant, Some(_))) => CodeRedemption::Replayed {
                    family_id: grant.family_id,
                    client_id: grant.client_id,
                },
                Some((grant, None)) if grant.expires_at <= now => CodeRedemption::Unknown,
                Some((grant, None)) => {
                    tx.cached_execute(
                        "UPDATE auth_codes SET used_at = ?2 WHERE hash = ?1",
                        params![code, now],
                    )
                    .map_err(map_sqlite)?;
                    CodeRedemption::Fresh(grant)
                }
            };
            tx.commit().map_err(map_sqlite)?;
            Ok(outcome)
        })
        .await
    }
}

#[async_trait]
impl CounterStore for SqliteStore {
    async fn hit(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError> {
        let window = window.max(1) as i64;
        let bucket = now.div_euclid(window);
        let key = format!("{key}:{bucket}");
        let expires_at = (bucket + 1) * window;
        self.with_conn(move |c| {
            c.cached_row(
                "INSERT INTO counters (key, count, expires_at) VALUES (?1, 1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET count = count + 1 RETURNING count",
                params![key, expires_at],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(map_sqlite)
        })
        .await
    }

    async fn count(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError> {
        let window = window.max(1) as i64;
        let key = format!("{key}:{}", now.div_euclid(window));
        self.with_reader(move |c| {
            c.cached_row("SELECT count FROM counters WHERE key = ?1", [&key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|n| n.unwrap_or(0).max(0) as u64)
            .map_err(map_sqlite)
        })
        .await
    }

    async fn release(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError> {
        let window = window.max(1) as i64;
        let key = format!("{key}:{}", now.div_euclid(window));
        self.with_conn(move |c| {
            // No row (nothing counted) or a count already at zero: nothing
            // to undo, and no row is created.
            c.cached_row(
                "UPDATE counters SET count = count - 1 WHERE key = ?1 AND count > 0 \
                 RETURNING count",
                [&key],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|n| n.unwrap_or(0).max(0) as u64)
            .map_err(map_sqlite)
        })
        .await
    }
}

#[async_trait]
impl ConsentStore for SqliteStore {
    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        granted_at: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        let (u, c, s) = (user_id.to_owned(), client_id.to_owned(), scope.to_owned());
        self.with_conn(move |conn| {
            conn.cached_execute(
                "INSERT INTO consents (user_id, client_id, scope, expires_at, granted_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(user_id, client_id, scope) \
                 DO UPDATE SET expires_at = excluded.expires_at, granted_at = excluded.granted_at",
                params![u, c, s, expires_at, granted_at],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn consents(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        let user_id = user_id.to_owned();
        self.with_reader(move |conn| {
            // The primary key (user_id, client_id, scope) serves this.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT client_id, scope, granted_at, expires_at FROM consents \
                     WHERE user_id = ?1 AND expires_at > ?2",
                )
                .map_err(map_sqlite)?;
            stmt.query_map(params![user_id, now], |r| {
                Ok(ConsentRecord {
                    client_id: r.get(0)?,
                    scope: r.get(1)?,
                    granted_at: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            })
            .map_err(map_sqlite)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_sqlite)
        })
        .await
    }

    async fn revoke_consent(&self, user_id: &str, client_id: &str) -> Result<bool, StoreError> {
        let (u, c) = (user_id.to_owned(), client_id.to_owned());
        self.with_conn(move |conn| {
            conn.cached_execute(
                "DELETE FROM consents WHERE user_id = ?1 AND client_id = ?2",
                params![u, c],
            )
            .map(|deleted| deleted > 0)
            .map_err(map_sqlite)
        })
        .await
    }

    async fn has_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (u, c, s) = (user_id.to_owned(), client_id.to_owned(), scope.to_owned());
        self.with_reader(move |conn| {
            conn.cached_row(
                "SELECT EXISTS(SELECT 1 FROM consents WHERE user_id = ?1 AND client_id = ?2 \
                 AND scope = ?3 AND expires_at > ?4)",
                params![u, c, s, now],
                |r| r.get::<_, bool>(0),
            )
            .map_err(map_sqlite)
        })
        .await
    }
}

#[async_trait]
impl OtpStore for SqliteStore {
    async fn put_otp(
        &self,
        user_id: &str,
        purpose: OtpPurpose,
        digest: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        let (user_id, digest) = (user_id.to_owned(), digest.to_owned());
        self.with_conn(move |c| {
            c.cached_execute(
                "INSERT INTO otps (user_id, purpose, digest, expires_at, attempts) \
                 VALUES (?1, ?2, ?3, ?4, 0) \
                 ON CONFLICT(user_id, purpose) DO UPDATE SET digest = excluded.digest, \
                 expires_at = excluded.expires_at, attempts = 0",
                params![user_id, purpose.as_str(), digest, expires_at],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn check_otp(
        &self,
        user_id: &str,
        purpose: OtpPurpose,
        digest: &str,
        now: UnixTime,
        max_attempts: u32,
    ) -> Result<OtpCheck, StoreError> {
        let (user_id, digest) = (user_id.to_owned(), digest.to_owned());
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let stored = tx
                .cached_row(
                    "SELECT digest, expires_at, attempts FROM otps \
                     WHERE user_id = ?1 AND purpose = ?2",
                    params![user_id, purpose.as_str()],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()
                .map_err(map_sqlite)?;
            let burn = |tx: &rusqlite::Transaction<'_>| {
                tx.cached_execute(
                    "DELETE FROM otps WHERE user_id = ?1 AND purpose = ?2",
                    params![user_id, purpose.as_str()],
                )
                .map_err(map_sqlite)
            };
            let outcome = match stored {
                None => OtpCheck::NoCode,
                Some((_, expires_at, _)) if expires_at <= now => {
                    burn(&tx)?;
                    OtpCheck::NoCode
                }
                Some((stored, _, _)) if constant_time_eq(stored.as_bytes(), digest.as_bytes()) => {
                    burn(&tx)?;
                    OtpCheck::Match
                }
                Some((_, _, attempts)) => {
                    if attempts + 1 >= i64::from(max_attempts) {
                        burn(&tx)?;
                    } else {
                        tx.cached_execute(
                            "UPDATE otps SET attempts = attempts + 1 \
                             WHERE user_id = ?1 AND purpose = ?2",
                            params![user_id, purpose.as_str()],
                        )
                        .map_err(map_sqlite)?;
                    }
                    OtpCheck::Mismatch
                }
            };
            tx.commit().map_err(map_sqlite)?;
            Ok(outcome)
        })
        .await
    }
}
