//! DPoP proofs already seen, in the embedded store.

use async_trait::async_trait;
use rusqlite::params;

use super::{Cached, SqliteStore, map_sqlite};
use crate::clock::UnixTime;
use crate::store::{ReplayStore, StoreError};

#[async_trait]
impl ReplayStore for SqliteStore {
    async fn first_use(
        &self,
        key: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.with_conn(move |c| {
            // An expired marker counts as absent: it is replaced, not kept.
            let changed = c
                .cached_execute(
                    "INSERT INTO dpop_proofs (key, expires_at) VALUES (?1, ?2) \
                     ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE dpop_proofs.expires_at <= ?3",
                    params![key, expires_at, now],
                )
                .map_err(map_sqlite)?;
            Ok(changed == 1)
        })
        .await
    }
}
