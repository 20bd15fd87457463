//! Pushed authorization requests in the embedded store: a row per request,
//! deleted when taken (so at most once) or, once expired, by the purge.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Cached, SqliteStore, internal, map_sqlite};
use crate::clock::UnixTime;
use crate::crypto::secret::TokenHash;
use crate::store::pushed::{params_from_json, params_to_json};
use crate::store::{PushedRequest, PushedRequestStore, StoreError};

const PUSHED_SELECT: &str = "SELECT client_id, params, expires_at FROM pushed_requests";

fn pushed_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PushedRequest> {
    let params: String = row.get(1)?;
    Ok(PushedRequest {
        client_id: row.get(0)?,
        params: params_from_json(&params).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        expires_at: row.get(2)?,
    })
}

#[async_trait]
impl PushedRequestStore for SqliteStore {
    async fn put_pushed(
        &self,
        handle: &TokenHash,
        request: &PushedRequest,
    ) -> Result<(), StoreError> {
        let handle = handle.as_str().to_owned();
        let params = params_to_json(&request.params).map_err(internal)?;
        let (client_id, expires_at) = (request.client_id.clone(), request.expires_at);
        self.with_conn(move |c| {
            c.cached_execute(
                "INSERT INTO pushed_requests (hash, client_id, params, expires_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![handle, client_id, params, expires_at],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn pushed(
        &self,
        handle: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PushedRequest>, StoreError> {
        let handle = handle.as_str().to_owned();
        self.with_reader(move |c| {
            c.cached_row(
                &format!("{PUSHED_SELECT} WHERE hash = ?1"),
                [&handle],
                pushed_from_row,
            )
            .optional()
            .map_err(map_sqlite)
            .map(|found| found.filter(|r| r.expires_at > now))
        })
        .await
    }

    async fn take_pushed(
        &self,
        handle: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PushedRequest>, StoreError> {
        let handle = handle.as_str().to_owned();
        // One writer and one transaction: of two takes, the second finds
        // no row.
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let found = tx
                .cached_row(
                    &format!("{PUSHED_SELECT} WHERE hash = ?1"),
                    [&handle],
                    pushed_from_row,
                )
                .optional()
                .map_err(map_sqlite)?;
            if found.is_some() {
                tx.cached_execute("DELETE FROM pushed_requests WHERE hash = ?1", [&handle])
                    .map_err(map_sqlite)?;
            }
            tx.commit().map_err(map_sqlite)?;
            Ok(found.filter(|r| r.expires_at > now))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CodeGrant, CodeRedemption, CodeStore, TokenStore};

    fn handle(name: &str) -> TokenHash {
        TokenHash::from_stored(crate::crypto::secret::sha256_hex(name.as_bytes()))
    }

    fn request(expires_at: UnixTime) -> PushedRequest {
        let params = [("client_id", "c1"), ("state", "s \"quoted\" é")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        PushedRequest {
            client_id: "c1".into(),
            params,
            expires_at,
        }
    }

    #[tokio::test]
    async fn a_pushed_request_is_peeked_often_taken_once_and_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (live, old) = (handle("live"), handle("old"));
        store.put_pushed(&live, &request(1_000)).await.unwrap();
        store.put_pushed(&old, &request(100)).await.unwrap();

        assert_eq!(
            store.pushed(&live, 500).await.unwrap(),
            Some(request(1_000))
        );
        assert_eq!(
            store.pushed(&live, 500).await.unwrap(),
            Some(request(1_000))
        );
        assert_eq!(store.pushed(&old, 500).await.unwrap(), None, "expired");
        assert_eq!(store.take_pushed(&old, 500).await.unwrap(), None);
        assert_eq!(store.pushed(&handle("never"), 500).await.unwrap(), None);

        assert_eq!(
            store.take_pushed(&live, 500).await.unwrap(),
            Some(request(1_000))
        );
        assert_eq!(store.take_pushed(&live, 500).await.unwrap(), None, "once");
        assert_eq!(store.pushed(&live, 500).await.unwrap(), None);

        store.purge_expired(500).await.unwrap();
        let left: i64 = store
            .with_reader(|c| {
                c.query_row("SELECT COUNT(*) FROM pushed_requests", [], |r| r.get(0))
                    .map_err(map_sqlite)
            })
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    /// The code store keeps a code's `dpop_jkt` (RFC 9449 §10) for the
    /// token endpoint to enforce.
    #[tokio::test]
    async fn a_code_keeps_its_dpop_jkt() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let grant = |jkt: Option<&str>| CodeGrant {
            client_id: "c1".into(),
            user_id: "u1".into(),
            redirect_uri: None,
            scope: "profile".into(),
            pkce: None,
            expires_at: 1_000,
            family_id: "f1".into(),
            epoch: 0,
            nonce: None,
            session_id: "s1".into(),
            auth_time: 1,
            dpop_jkt: jkt.map(str::to_owned),
        };
        let jkt = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
        store
            .put_code(&handle("bound"), &grant(Some(jkt)))
            .await
            .unwrap();
        store.put_code(&handle("free"), &grant(None)).await.unwrap();
        assert_eq!(
            store.peek_code(&handle("bound"), 500).await.unwrap(),
            Some(grant(Some(jkt)))
        );
        assert_eq!(
            store.redeem_code(&handle("bound"), 500).await.unwrap(),
            CodeRedemption::Fresh(grant(Some(jkt)))
        );
        assert_eq!(
            store.redeem_code(&handle("free"), 500).await.unwrap(),
            CodeRedemption::Fresh(grant(None))
        );
    }
}
