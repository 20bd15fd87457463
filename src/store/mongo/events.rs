//! The audit trail in MongoDB (`events`): `_id` is the time-ordered event
//! id, so keyset pages sort on `_id`; every filter has an index.

use async_trait::async_trait;
use mongodb::IndexModel;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;
use time::OffsetDateTime;

use super::{MongoStore, bounded, corrupt, from_bson_time, to_bson_time};
use crate::store::{EventQuery, EventRecord, EventStore, StoreError};

fn event_from(document: &Document) -> Result<EventRecord, StoreError> {
    let optional = |key: &str| document.get_str(key).ok().map(str::to_owned);
    let detail = document.get("detail").map_or_else(
        || serde_json::json!({}),
        |v| v.clone().into_relaxed_extjson(),
    );
    Ok(EventRecord {
        id: document.get_str("_id").map_err(corrupt)?.to_owned(),
        at: from_bson_time(document.get("at")),
        kind: document.get_str("type").map_err(corrupt)?.to_owned(),
        user_id: optional("user_id"),
        client_id: optional("client_id"),
        ip: optional("ip"),
        detail,
    })
}

fn filter(query: &EventQuery) -> Document {
    let mut filter = Document::new();
    for (key, value) in [
        ("user_id", &query.user_id),
        ("client_id", &query.client_id),
        ("type", &query.kind),
    ] {
        if let Some(value) = value {
            filter.insert(key, value);
        }
    }
    if let Some(before) = &query.before_id {
        filter.insert("_id", doc! {"$lt": before});
    }
    if let Some(since) = query.since {
        filter.insert("at", doc! {"$gte": to_bson_time(since)});
    }
    filter
}

impl MongoStore {
    pub(super) async fn ensure_event_indexes(&self) -> Result<(), StoreError> {
        for (name, keys) in [
            ("at", doc! {"at": 1}),
            ("user_id", doc! {"user_id": 1, "_id": -1}),
            ("client_id", doc! {"client_id": 1, "_id": -1}),
            ("type", doc! {"type": 1, "_id": -1}),
        ] {
            let index = IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(format!("events_{name}"))
                        .build(),
                )
                .build();
            bounded(self.events.create_index(index)).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for MongoStore {
    async fn append_event(&self, event: &EventRecord) -> Result<(), StoreError> {
        let document = event_document(event)?;
        bounded(self.events.insert_one(document)).await.map(|_| ())
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
        use futures_util::TryStreamExt;
        let cursor = bounded(
            self.events
                .find(filter(query))
                .sort(doc! {"_id": -1})
                .limit(i64::try_from(query.limit).unwrap_or(i64::MAX)),
        )
        .await?;
        let documents: Vec<Document> = bounded(cursor.try_collect()).await?;
        documents.iter().map(event_from).collect()
    }

    async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let result = bounded(
            self.events
                .delete_many(doc! {"at": {"$lt": to_bson_time(before)}}),
        )
        .await?;
        Ok(result.deleted_count)
    }
}

/// The stored document of an event.
pub(super) fn event_document(event: &EventRecord) -> Result<Document, StoreError> {
    let detail = Bson::try_from(event.detail.clone()).map_err(corrupt)?;
    let mut document = doc! {
        "_id": &event.id,
        "at": to_bson_time(event.at),
        "type": &event.kind,
        "detail": detail,
    };
    for (key, value) in [
        ("user_id", &event.user_id),
        ("client_id", &event.client_id),
        ("ip", &event.ip),
    ] {
        if let Some(value) = value {
            document.insert(key, value);
        }
    }
    Ok(document)
}
