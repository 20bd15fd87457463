//! One-time markers: DPoP proof `jti`s (RFC 9449 §11.1), shared by every
//! node through the token store.

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::store::StoreError;

#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Remembers `key` until `expires_at` if it is not remembered (or its
    /// marker expired by `now`):
    /// true the first time, false for every later call before it expires.
    /// One atomic step, so two nodes racing with the same key cannot
    /// both see true.
    async fn first_use(
        &self,
        key: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError>;
}
