//! The embedded store as a whole [`TokenStore`]: its parts live in
//! `families.rs` and `state.rs`.

use async_trait::async_trait;

use super::{BACKEND, Cached, SqliteStore, map_sqlite};
use crate::clock::UnixTime;
use crate::store::{Directory, StoreError, TokenStore};

#[async_trait]
impl TokenStore for SqliteStore {
    async fn purge_expired(&self, now: UnixTime) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM counters WHERE expires_at < ?1", [now])
                .map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM otps WHERE expires_at < ?1", [now])
                .map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM consents WHERE expires_at < ?1", [now])
                .map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM dpop_proofs WHERE expires_at < ?1", [now])
                .map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM pushed_requests WHERE expires_at < ?1", [now])
                .map_err(map_sqlite)?;
            // Used codes are kept past expiry for a while so a late replay
            // still finds (and revokes) what they issued.
            tx.cached_execute("DELETE FROM auth_codes WHERE expires_at < ?1 - 600", [now])
                .map_err(map_sqlite)?;
            tx.cached_execute(
                "DELETE FROM revoked_access_tokens WHERE expires_at < ?1",
                [now],
            )
            .map_err(map_sqlite)?;
            // A family's revocation must outlive the access tokens minted
            // from it, so a family goes at `keep_until`, not at its expiry.
            tx.cached_execute("DELETE FROM refresh_families WHERE keep_until < ?1", [now])
                .map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)
        })
        .await
    }

    async fn forget_user(&self, user_id: &str) -> Result<(), StoreError> {
        let user_id = user_id.to_owned();
        self.with_conn(move |c| {
            // One transaction: all of it or none. `user_epochs` stays.
            let tx = c.transaction().map_err(map_sqlite)?;
            for sql in [
                "DELETE FROM refresh_tokens WHERE family_id IN \
                 (SELECT id FROM refresh_families WHERE user_id = ?1)",
                "DELETE FROM refresh_families WHERE user_id = ?1",
                "DELETE FROM consents WHERE user_id = ?1",
                "DELETE FROM otps WHERE user_id = ?1",
                "DELETE FROM auth_codes WHERE user_id = ?1",
            ] {
                tx.cached_execute(sql, [&user_id]).map_err(map_sqlite)?;
            }
            tx.commit().map_err(map_sqlite)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Directory::ping(self).await
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
