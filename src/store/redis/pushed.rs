//! Pushed authorization requests in Redis: one key per request (its own
//! hash slot, so the same commands run on Redis Cluster), expiring by
//! itself; taken with `GETDEL`, which only one caller can win.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::keys::pushed_key;
use super::{RedisStore, corrupt};
use crate::clock::UnixTime;
use crate::crypto::secret::TokenHash;
use crate::store::pushed::Params;
use crate::store::{PushedRequest, PushedRequestStore, StoreError};

/// The stored value: the request as JSON.
#[derive(Serialize, Deserialize)]
struct Stored {
    client_id: String,
    params: Params,
    expires_at: UnixTime,
}

fn encode(request: &PushedRequest) -> Result<String, StoreError> {
    serde_json::to_string(&Stored {
        client_id: request.client_id.clone(),
        params: request.params.clone(),
        expires_at: request.expires_at,
    })
    .map_err(|_| corrupt("pushed request"))
}

/// The request in a stored value, if it is still unexpired at `now` (the
/// key's TTL rounds to whole seconds; the stored expiry decides).
fn decode(value: Option<String>, now: UnixTime) -> Result<Option<PushedRequest>, StoreError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let stored: Stored = serde_json::from_str(&value).map_err(|_| corrupt("pushed request"))?;
    Ok((stored.expires_at > now).then_some(PushedRequest {
        client_id: stored.client_id,
        params: stored.params,
        expires_at: stored.expires_at,
    }))
}

#[async_trait]
impl PushedRequestStore for RedisStore {
    async fn put_pushed(
        &self,
        handle: &TokenHash,
        request: &PushedRequest,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let (key, value) = (pushed_key(handle), encode(request)?);
        let expires_at = request.expires_at;
        self.run(async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("EXAT")
                .arg(expires_at)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn pushed(
        &self,
        handle: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PushedRequest>, StoreError> {
        self.read_pushed("GET", handle, now).await
    }

    async fn take_pushed(
        &self,
        handle: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PushedRequest>, StoreError> {
        self.read_pushed("GETDEL", handle, now).await
    }
}

impl RedisStore {
    /// The pushed request under `handle`, read with `command`: `GET` to
    /// peek, `GETDEL` to take it (one command, so at most one taker).
    async fn read_pushed(
        &self,
        command: &'static str,
        handle: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PushedRequest>, StoreError> {
        let mut conn = self.conn.clone();
        let key = pushed_key(handle);
        let value: Option<String> = self
            .run(async move { redis::cmd(command).arg(key).query_async(&mut conn).await })
            .await?;
        decode(value, now)
    }
}
