//! Refresh-token families and revoked access tokens in the embedded store.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Cached, SqliteStore, map_sqlite};
use crate::clock::UnixTime;
use crate::crypto::secret::TokenHash;
use crate::store::{
    AccessCheck, FamilyStore, FamilySummary, FamilyView, NewFamily, RotateRequest, Rotation,
    SessionFamily, StoreError, has_offline_access,
};

const FAMILY_COLUMNS: &str = "f.id, f.user_id, f.client_id, f.scope, f.created_at, \
     MIN(f.idle_expires_at, f.absolute_expires_at), f.epoch, f.session_id, f.auth_time, f.jkt";

fn family_from_row(row: &Row<'_>) -> rusqlite::Result<FamilyView> {
    Ok(FamilyView {
        id: row.get(0)?,
        user_id: row.get(1)?,
        client_id: row.get(2)?,
        scope: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        epoch: row.get::<_, i64>(6)?.max(0) as u64,
        session_id: row.get(7)?,
        auth_time: row.get(8)?,
        jkt: row.get(9)?,
    })
}

/// Epochs are stored as SQLite integers (milliseconds fit many times over).
fn epoch_sql(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

fn absolute_expiry(c: &Connection, family_id: &str) -> Result<i64, StoreError> {
    c.cached_row(
        "SELECT absolute_expires_at FROM refresh_families WHERE id = ?1",
        [family_id],
        |r| r.get(0),
    )
    .map_err(map_sqlite)
}

#[async_trait]
impl FamilyStore for SqliteStore {
    async fn create_family(&self, family: &NewFamily) -> Result<(), StoreError> {
        let f = family.clone();
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            tx.cached_execute(
                "INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, \
                 idle_expires_at, absolute_expires_at, current_hash, epoch, keep_until, \
                 session_id, auth_time, jkt) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    f.id,
                    f.user_id,
                    f.client_id,
                    f.scope,
                    f.created_at,
                    f.idle_expires_at,
                    f.absolute_expires_at,
                    f.first_token.as_str(),
                    epoch_sql(f.epoch),
                    f.keep_until,
                    f.session_id,
                    f.auth_time,
                    f.jkt
                ],
            )
            .map_err(map_sqlite)?;
            tx.cached_execute(
                "INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES (?1, ?2, ?3)",
                params![f.first_token.as_str(), f.id, f.created_at],
            )
            .map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)
        })
        .await
    }

    async fn rotate(&self, request: &RotateRequest<'_>) -> Result<Rotation, StoreError> {
        let family_id = request.family_id.to_owned();
        let client_id = request.client_id.to_owned();
        let presented = request.presented.as_str().to_owned();
        let successor = request.successor.as_str().to_owned();
        let (now, grace, idle_ttl) = (request.now, request.grace as i64, request.idle_ttl as i64);
        let jkt = request.jkt.map(str::to_owned);
        self.with_conn(move |c| {
            // IMMEDIATE takes the write lock up front: the read and the
            // write below are one step even against other processes.
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let found = tx
                .cached_row(
                    &format!(
                        "SELECT {FAMILY_COLUMNS}, f.revoked_at, f.current_hash, t.rotated_at \
                         FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
                         WHERE t.hash = ?1 AND f.id = ?2"
                    ),
                    params![presented, family_id],
                    |r| {
                        Ok((
                            family_from_row(r)?,
                            r.get::<_, Option<i64>>(10)?,
                            r.get::<_, String>(11)?,
                            r.get::<_, Option<i64>>(12)?,
                        ))
                    },
                )
                .optional()
                .map_err(map_sqlite)?;
            let Some((family, revoked_at, current, rotated_at)) = found else {
                return Ok(Rotation::Invalid);
            };
            if revoked_at.is_some() || family.expires_at <= now || family.client_id != client_id {
                return Ok(Rotation::Invalid);
            }
            // Before reuse detection: a proof failure must not burn the family.
            if family.jkt.is_some() && family.jkt != jkt {
                return Ok(Rotation::KeyMismatch);
            }
            let outcome = if current == presented {
                let absolute = absolute_expiry(&tx, &family.id)?;
                let expires_at = (now + idle_ttl).min(absolute);
                tx.cached_execute(
                    "UPDATE refresh_tokens SET rotated_at = ?2 WHERE hash = ?1",
                    params![presented, now],
                )
                .map_err(map_sqlite)?;
                tx.cached_execute(
                    "INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES (?1, ?2, ?3)",
                    params![successor, family.id, now],
                )
                .map_err(map_sqlite)?;
                tx.cached_execute(
                    "UPDATE refresh_families SET current_hash = ?2, idle_expires_at = ?3, \
                     last_used_at = ?4 WHERE id = ?1",
                    params![family.id, successor, now + idle_ttl, now],
                )
                .map_err(map_sqlite)?;
                Rotation::Rotated(FamilyView {
                    expires_at,
                    ..family
                })
            } else if grace > 0
                && current == successor
                && rotated_at.is_some_and(|at| now - at <= grace)
            {
                Rotation::GraceReplay(family)
            } else {
                // RFC 9700 §4.14.2: replay of a rotated token revokes the family.
                tx.cached_execute(
                    "UPDATE refresh_families SET revoked_at = ?2 WHERE id = ?1",
                    params![family.id, now],
                )
                .map_err(map_sqlite)?;
                Rotation::ReuseDetected
            };
            tx.commit().map_err(map_sqlite)?;
            Ok(outcome)
        })
        .await
    }

    async fn live_refresh(
        &self,
        family_id: &str,
        presented: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError> {
        let (family_id, presented) = (family_id.to_owned(), presented.as_str().to_owned());
        self.with_reader(move |c| {
            c.cached_row(
                &format!(
                    "SELECT {FAMILY_COLUMNS} FROM refresh_families f \
                     WHERE f.id = ?1 AND f.current_hash = ?2 AND f.revoked_at IS NULL"
                ),
                params![family_id, presented],
                family_from_row,
            )
            .optional()
            .map_err(map_sqlite)
            .map(|f| f.filter(|f| f.expires_at > now))
        })
        .await
    }

    async fn family(
        &self,
        family_id: &str,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError> {
        let family_id = family_id.to_owned();
        self.with_reader(move |c| {
            c.cached_row(
                &format!(
                    "SELECT {FAMILY_COLUMNS} FROM refresh_families f \
                     WHERE f.id = ?1 AND f.revoked_at IS NULL"
                ),
                params![family_id],
                family_from_row,
            )
            .optional()
            .map_err(map_sqlite)
            .map(|f| f.filter(|f| f.expires_at > now))
        })
        .await
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<(), StoreError> {
        let family_id = family_id.to_owned();
        self.with_conn(move |c| {
            c.cached_execute(
                "UPDATE refresh_families SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![family_id, now],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn revoke_client(&self, client_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        let client_id = client_id.to_owned();
        self.with_conn(move |c| {
            let revoked = c
                .cached_execute(
                    "UPDATE refresh_families SET revoked_at = ?2 \
                     WHERE client_id = ?1 AND revoked_at IS NULL",
                    params![client_id, now],
                )
                .map_err(map_sqlite)?;
            Ok(revoked as u64)
        })
        .await
    }

    async fn credential_epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        let user_id = user_id.to_owned();
        self.with_reader(move |c| {
            c.cached_row(
                "SELECT epoch FROM user_epochs WHERE user_id = ?1",
                [&user_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|e| e.unwrap_or(0).max(0) as u64)
            .map_err(map_sqlite)
        })
        .await
    }

    async fn revoke_user(
        &self,
        user_id: &str,
        now: UnixTime,
        floor: u64,
    ) -> Result<u64, StoreError> {
        let user_id = user_id.to_owned();
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let epoch = tx
                .cached_row(
                    "INSERT INTO user_epochs (user_id, epoch) VALUES (?1, ?2) \
                     ON CONFLICT(user_id) DO UPDATE SET epoch = MAX(epoch + 1, excluded.epoch) \
                     RETURNING epoch",
                    params![user_id, epoch_sql(floor)],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM consents WHERE user_id = ?1", [&user_id])
                .map_err(map_sqlite)?;
            tx.cached_execute(
                "UPDATE refresh_families SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
                params![user_id, now],
            )
            .map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)?;
            Ok(epoch.max(0) as u64)
        })
        .await
    }

    async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        now: UnixTime,
    ) -> Result<Vec<SessionFamily>, StoreError> {
        let (user_id, session_id) = (user_id.to_owned(), session_id.to_owned());
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let families = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {FAMILY_COLUMNS} FROM refresh_families f \
                         WHERE f.session_id = ?1 AND f.user_id = ?2 AND f.revoked_at IS NULL"
                    ))
                    .map_err(map_sqlite)?;
                stmt.query_map([&session_id, &user_id], family_from_row)
                    .map_err(map_sqlite)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(map_sqlite)?
            };
            let mut ended = Vec::new();
            for family in families.into_iter().filter(|f| f.expires_at > now) {
                let kept = has_offline_access(&family.scope);
                if !kept {
                    tx.cached_execute(
                        "UPDATE refresh_families SET revoked_at = ?2 WHERE id = ?1",
                        params![family.id, now],
                    )
                    .map_err(map_sqlite)?;
                }
                ended.push(SessionFamily {
                    family_id: family.id,
                    client_id: family.client_id,
                    user_id: family.user_id,
                    kept,
                });
            }
            tx.commit().map_err(map_sqlite)?;
            Ok(ended)
        })
        .await
    }

    async fn user_families(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> Result<Vec<FamilySummary>, StoreError> {
        let user_id = user_id.to_owned();
        self.with_reader(move |c| {
            // Through the index on refresh_families(user_id).
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, client_id, scope, session_id, created_at, \
                     COALESCE(last_used_at, created_at), epoch FROM refresh_families \
                     WHERE user_id = ?1 AND revoked_at IS NULL \
                     AND idle_expires_at > ?2 AND absolute_expires_at > ?2",
                )
                .map_err(map_sqlite)?;
            stmt.query_map(params![user_id, now], |r| {
                Ok(FamilySummary {
                    id: r.get(0)?,
                    client_id: r.get(1)?,
                    scope: r.get(2)?,
                    session_id: r.get(3)?,
                    created_at: r.get(4)?,
                    last_used_at: r.get(5)?,
                    epoch: r.get::<_, i64>(6)?.max(0) as u64,
                })
            })
            .map_err(map_sqlite)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_sqlite)
        })
        .await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.with_conn(move |c| {
            c.cached_execute(
                "INSERT OR IGNORE INTO revoked_access_tokens (jti, expires_at) VALUES (?1, ?2)",
                params![jti, expires_at],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn is_access_revoked(&self, check: &AccessCheck<'_>) -> Result<bool, StoreError> {
        let (jti, sub, family, epoch) = (
            check.jti.to_owned(),
            check.sub.to_owned(),
            check.family.map(str::to_owned),
            epoch_sql(check.epoch),
        );
        self.with_reader(move |c| {
            c.cached_row(
                "SELECT EXISTS(SELECT 1 FROM revoked_access_tokens WHERE jti = ?1) \
                 OR EXISTS(SELECT 1 FROM refresh_families WHERE id = ?3 AND revoked_at IS NOT NULL) \
                 OR EXISTS(SELECT 1 FROM user_epochs WHERE user_id = ?2 AND epoch > ?4)",
                params![jti, sub, family, epoch],
                |r| r.get::<_, bool>(0),
            )
            .map_err(map_sqlite)
        })
        .await
    }
}
