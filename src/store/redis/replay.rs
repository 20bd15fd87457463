//! DPoP proofs already seen, in Redis: `SET NX EXAT`, one key each, so
//! every node of a deployment (and every shard of a cluster) agrees.

use async_trait::async_trait;

use super::RedisStore;
use super::keys::dpop_proof_key;
use crate::clock::UnixTime;
use crate::store::{ReplayStore, StoreError};

#[async_trait]
impl ReplayStore for RedisStore {
    async fn first_use(
        &self,
        key: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let key = dpop_proof_key(key);
        // Redis expires by its own clock; never ask for an expiry in the
        // past (it would refuse), keep the marker at least a second.
        let expires_at = expires_at.max(now + 1);
        let set: Option<String> = self
            .run(async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg("1")
                    .arg("NX")
                    .arg("EXAT")
                    .arg(expires_at)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }
}
