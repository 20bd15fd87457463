//! Registered clients in MongoDB (`clients`, keyed by the client id).

use async_trait::async_trait;
use mongodb::bson::{Document, doc};
use time::OffsetDateTime;

use super::{MongoStore, bounded, corrupt, from_bson_time, to_bson_time};
use crate::store::{ClientRecord, ClientStore, EventRecord, StoreError};

fn client_from(document: &Document) -> Result<ClientRecord, StoreError> {
    let list = |key: &str| -> Vec<String> {
        document
            .get_array(key)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let ttl = |key: &str| {
        document
            .get_i64(key)
            .ok()
            .and_then(|v| u64::try_from(v).ok())
    };
    let optional_text = |key: &str| document.get_str(key).ok().map(str::to_owned);
    Ok(ClientRecord {
        id: document.get_str("_id").map_err(corrupt)?.to_owned(),
        name: document.get_str("name").map_err(corrupt)?.to_owned(),
        secret_hash: optional_text("secret_hash"),
        previous_secret_hash: optional_text("previous_secret_hash"),
        previous_secret_expires_at: document
            .get("previous_secret_expires_at")
            .map(|v| from_bson_time(Some(v))),
        first_party: document.get_bool("first_party").unwrap_or(false),
        redirect_uris: list("redirect_uris"),
        grant_types: list("grant_types"),
        scopes: list("scopes"),
        access_token_ttl: ttl("access_token_ttl"),
        refresh_token_ttl: ttl("refresh_token_ttl"),
        post_logout_redirect_uris: list("post_logout_redirect_uris"),
        backchannel_logout_uri: optional_text("backchannel_logout_uri"),
        // Documents from before these settings existed read false.
        dpop_bound_access_tokens: document
            .get_bool("dpop_bound_access_tokens")
            .unwrap_or(false),
        require_pushed_authorization_requests: document
            .get_bool("require_pushed_authorization_requests")
            .unwrap_or(false),
        created_at: from_bson_time(document.get("createdAt")),
    })
}

fn ttl_value(ttl: u64) -> i64 {
    i64::try_from(ttl).unwrap_or(i64::MAX)
}

#[async_trait]
impl ClientStore for MongoStore {
    async fn create_client(
        &self,
        client: &ClientRecord,
        event: &EventRecord,
    ) -> Result<(), StoreError> {
        let mut document = doc! {
            "_id": &client.id,
            "name": &client.name,
            "first_party": client.first_party,
            "redirect_uris": &client.redirect_uris,
            "grant_types": &client.grant_types,
            "scopes": &client.scopes,
            "post_logout_redirect_uris": &client.post_logout_redirect_uris,
            "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
            "require_pushed_authorization_requests": client.require_pushed_authorization_requests,
            "createdAt": to_bson_time(client.created_at),
        };
        if let Some(hash) = &client.secret_hash {
            document.insert("secret_hash", hash);
        }
        if let Some(uri) = &client.backchannel_logout_uri {
            document.insert("backchannel_logout_uri", uri);
        }
        for (key, ttl) in [
            ("access_token_ttl", client.access_token_ttl),
            ("refresh_token_ttl", client.refresh_token_ttl),
        ] {
            if let Some(ttl) = ttl {
                document.insert(key, ttl_value(ttl));
            }
        }
        bounded(self.clients.insert_one(document)).await?;
        self.record_after_change(event).await;
        Ok(())
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let found = bounded(self.clients.find_one(doc! {"_id": id})).await?;
        found.as_ref().map(client_from).transpose()
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        use futures_util::TryStreamExt;
        // Clients are few (registered by operators); the limit keeps the scan bounded.
        let cursor = bounded(
            self.clients
                .find(doc! {})
                .sort(doc! {"createdAt": 1, "_id": 1})
                .limit(10_000),
        )
        .await?;
        let documents: Vec<Document> = bounded(cursor.try_collect()).await?;
        documents.iter().map(client_from).collect()
    }

    async fn update_client(
        &self,
        client: &ClientRecord,
        event: &EventRecord,
    ) -> Result<bool, StoreError> {
        let mut set = doc! {
            "name": &client.name,
            "redirect_uris": &client.redirect_uris,
            "grant_types": &client.grant_types,
            "scopes": &client.scopes,
            "post_logout_redirect_uris": &client.post_logout_redirect_uris,
            "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
            "require_pushed_authorization_requests": client.require_pushed_authorization_requests,
        };
        let mut unset = Document::new();
        match &client.backchannel_logout_uri {
            Some(uri) => set.insert("backchannel_logout_uri", uri),
            None => unset.insert("backchannel_logout_uri", ""),
        };
        match client.access_token_ttl {
            Some(ttl) => set.insert("access_token_ttl", ttl_value(ttl)),
            None => unset.insert("access_token_ttl", ""),
        };
        let mut update = doc! {"$set": set};
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        let result = bounded(self.clients.update_one(doc! {"_id": &client.id}, update)).await?;
        if result.matched_count != 1 {
            return Ok(false);
        }
        self.record_after_change(event).await;
        Ok(true)
    }

    async fn rotate_client_secret(
        &self,
        id: &str,
        expected: &str,
        new_hash: &str,
        keep_previous_until: Option<OffsetDateTime>,
        event: &EventRecord,
    ) -> Result<bool, StoreError> {
        let update = match keep_previous_until {
            Some(until) => doc! {"$set": {
                "secret_hash": new_hash,
                "previous_secret_hash": expected,
                "previous_secret_expires_at": to_bson_time(until),
            }},
            None => doc! {
                "$set": {"secret_hash": new_hash},
                "$unset": {"previous_secret_hash": "", "previous_secret_expires_at": ""},
            },
        };
        // Compare-and-set on the digest read: two rotations at once cannot
        // both keep "the previous" secret.
        let result = bounded(
            self.clients
                .update_one(doc! {"_id": id, "secret_hash": expected}, update),
        )
        .await?;
        if result.matched_count != 1 {
            return Ok(false);
        }
        self.record_after_change(event).await;
        Ok(true)
    }

    async fn delete_client(&self, id: &str, event: &EventRecord) -> Result<bool, StoreError> {
        let result = bounded(self.clients.delete_one(doc! {"_id": id})).await?;
        if result.deleted_count != 1 {
            return Ok(false);
        }
        self.record_after_change(event).await;
        Ok(true)
    }
}
