//! The MongoDB user store (production): collections `users`, `clients`
//! (`clients.rs`) and `events` (`events.rs`, the audit trail).
//!
//! Documents keep the field names of the original Node/Mongoose service
//! (`password`, `fname`, `lname`, `gender`, `mobile`, `role`, `createdAt`,
//! `updatedAt`), so its users log in unchanged (see docs/migration.md).
//! Writes use majority write concern and retryable writes; every operation
//! is bounded by a timeout; every query is by `_id`, the unique `email` (or
//! a range of it), or an indexed field of the events.
//!
//! A standalone MongoDB has no multi-document transactions: a change and
//! its audit event are two writes, the change first (an event is never
//! written for a change that did not happen; a failed event write is
//! logged and counted). Deleting a user is the exception: on a replica set
//! or sharded cluster the deletion and its event are one transaction, and
//! only a standalone server falls back to the two writes.

mod clients;
mod events;

use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use time::OffsetDateTime;

use crate::store::{
    AccountChange, Directory, EventRecord, EventStore, ProfileChange, StoreError, UserQuery,
    UserRecord, UserStore,
};

const BACKEND: &str = "mongodb";

/// Whether the driver refused a transaction because the deployment has
/// none (a standalone server).
fn no_transactions(e: &mongodb::error::Error) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::Transaction { message, .. }
        if message.starts_with("Transactions are not supported"))
}

/// Upper bound on any one operation, server selection included.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// MongoDB-backed [`UserStore`], `ClientStore` and [`EventStore`].
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    users: Collection<Document>,
    clients: Collection<Document>,
    events: Collection<Document>,
}

fn map_mongo(e: mongodb::error::Error) -> StoreError {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000 => StoreError::Duplicate,
        ErrorKind::Command(c) if c.code == 11000 => StoreError::Duplicate,
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::Write(WriteFailure::WriteConcernError(_))
        | ErrorKind::Shutdown => StoreError::Unavailable {
            backend: BACKEND,
            reason: e.to_string(),
        },
        _ if e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) => StoreError::Unavailable {
            backend: BACKEND,
            reason: e.to_string(),
        },
        _ => StoreError::Internal {
            backend: BACKEND,
            reason: e.to_string(),
        },
    }
}

/// Runs one operation within [`OP_TIMEOUT`], mapping its errors.
pub(super) async fn bounded<T>(
    work: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, work.into_future()).await {
        Ok(result) => result.map_err(map_mongo),
        Err(_) => Err(StoreError::Unavailable {
            backend: BACKEND,
            reason: "operation timed out".into(),
        }),
    }
}

pub(super) fn corrupt(why: impl std::fmt::Display) -> StoreError {
    StoreError::Internal {
        backend: BACKEND,
        reason: format!("unreadable document: {why}"),
    }
}

pub(super) fn to_bson_time(t: OffsetDateTime) -> DateTime {
    DateTime::from_millis((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub(super) fn from_bson_time(value: Option<&Bson>) -> OffsetDateTime {
    match value {
        Some(Bson::DateTime(d)) => {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(d.timestamp_millis()) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        }
        _ => OffsetDateTime::UNIX_EPOCH,
    }
}

/// Mongoose schemas often stored numbers (a mobile) as numbers: read any
/// scalar as text.
fn text(document: &Document, key: &str) -> Option<String> {
    match document.get(key)? {
        Bson::String(s) => Some(s.clone()),
        Bson::Int32(n) => Some(n.to_string()),
        Bson::Int64(n) => Some(n.to_string()),
        Bson::Double(n) if n.fract() == 0.0 => Some(format!("{n:.0}")),
        _ => None,
    }
}

fn user_from(document: &Document) -> Result<UserRecord, StoreError> {
    let id = document.get_object_id("_id").map_err(corrupt)?;
    let mobile = text(document, "mobile").map(|m| {
        if m.starts_with('+') {
            m
        } else {
            format!("+{m}")
        }
    });
    Ok(UserRecord {
        id: id.to_hex(),
        email: document.get_str("email").map_err(corrupt)?.to_owned(),
        password_hash: document.get_str("password").map_err(corrupt)?.to_owned(),
        fname: text(document, "fname").unwrap_or_default(),
        lname: text(document, "lname").unwrap_or_default(),
        gender: text(document, "gender"),
        mobile,
        role: text(document, "role").unwrap_or_else(|| "user".to_owned()),
        email_verified: document.get_bool("email_verified").unwrap_or(false),
        // Documents from before accounts could be disabled have no field.
        disabled: document.get_bool("disabled").unwrap_or(false),
        created_at: from_bson_time(document.get("createdAt")),
        updated_at: from_bson_time(document.get("updatedAt").or(document.get("createdAt"))),
    })
}

/// `_id` of a user id from the API; `None` if it cannot be one.
fn object_id(id: &str) -> Option<ObjectId> {
    ObjectId::parse_str(id).ok()
}

impl MongoStore {
    /// Connects to `uri`, selects `database` and creates the indexes
    /// (idempotently). Fails at start if the server cannot be reached.
    pub async fn connect(uri: &str, database: &str) -> Result<Self, StoreError> {
        let mut options = bounded(ClientOptions::parse(uri))
            .await
            .map_err(|e| match e {
                StoreError::Internal { .. } => StoreError::Internal {
                    backend: BACKEND,
                    reason: "TESSERA_MONGODB_URI is not a valid connection string".into(),
                },
                other => other,
            })?;
        options.app_name = Some("tessera".into());
        options.write_concern = Some(WriteConcern::majority());
        options.retry_writes = Some(true);
        options.retry_reads = Some(true);
        options.server_selection_timeout = Some(Duration::from_secs(2));
        options.connect_timeout = Some(Duration::from_secs(2));
        let client = Client::with_options(options).map_err(map_mongo)?;
        let db = client.database(database);
        let store = Self {
            users: db.collection("users"),
            clients: db.collection("clients"),
            events: db.collection("events"),
            db,
        };
        store.ensure_indexes().await?;
        Ok(store)
    }

    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let unique_email = IndexModel::builder()
            .keys(doc! {"email": 1})
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("email_unique".to_owned())
                    .build(),
            )
            .build();
        bounded(self.users.create_index(unique_email)).await?;
        let by_role = IndexModel::builder()
            .keys(doc! {"role": 1})
            .options(IndexOptions::builder().name("role".to_owned()).build())
            .build();
        bounded(self.users.create_index(by_role)).await?;
        self.ensure_event_indexes().await
    }

    /// Writes the audit event of a change that has happened. Best effort:
    /// the change stands whether or not its event could be written.
    async fn record_after_change(&self, event: &EventRecord) {
        if let Err(e) = self.append_event(event).await {
            metrics::counter!("tessera_audit_write_failures_total").increment(1);
            tracing::error!(event_type = %event.kind, error = %e, "audit event not written");
        }
    }

    /// Deletes a user and writes their events in one transaction (a
    /// replica set or sharded cluster). On a standalone server the driver
    /// refuses to start it, with an error the caller falls back on.
    async fn delete_in_transaction(
        &self,
        oid: ObjectId,
        events: &[EventRecord],
    ) -> mongodb::error::Result<bool> {
        let mut session = self.db.client().start_session().await?;
        session.start_transaction().await?;
        let result = self
            .users
            .delete_one(doc! {"_id": oid})
            .session(&mut session)
            .await?;
        let deleted = result.deleted_count == 1;
        if deleted {
            for event in events {
                let document = events::event_document(event)
                    .map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
                self.events
                    .insert_one(document)
                    .session(&mut session)
                    .await?;
            }
        }
        session.commit_transaction().await?;
        Ok(deleted)
    }

    async fn update_returning(
        &self,
        id: &str,
        set: Document,
    ) -> Result<Option<UserRecord>, StoreError> {
        let Some(oid) = object_id(id) else {
            return Ok(None);
        };
        let updated = bounded(
            self.users
                .find_one_and_update(doc! {"_id": oid}, doc! {"$set": set})
                .return_document(ReturnDocument::After),
        )
        .await?;
        updated.as_ref().map(user_from).transpose()
    }
}

#[async_trait]
impl UserStore for MongoStore {
    async fn create_user(&self, user: &UserRecord, event: &EventRecord) -> Result<(), StoreError> {
        let oid = object_id(&user.id).ok_or_else(|| corrupt("user id is not an ObjectId"))?;
        let mut document = doc! {
            "_id": oid,
            "email": &user.email,
            "password": &user.password_hash,
            "fname": &user.fname,
            "lname": &user.lname,
            "role": &user.role,
            "email_verified": user.email_verified,
            "disabled": user.disabled,
            "createdAt": to_bson_time(user.created_at),
            "updatedAt": to_bson_time(user.updated_at),
        };
        if let Some(gender) = &user.gender {
            document.insert("gender", gender);
        }
        if let Some(mobile) = &user.mobile {
            document.insert("mobile", mobile);
        }
        bounded(self.users.insert_one(document)).await?;
        self.record_after_change(event).await;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let found = bounded(self.users.find_one(doc! {"email": email})).await?;
        found.as_ref().map(user_from).transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let Some(oid) = object_id(id) else {
            return Ok(None);
        };
        let found = bounded(self.users.find_one(doc! {"_id": oid})).await?;
        found.as_ref().map(user_from).transpose()
    }

    async fn update_profile(
        &self,
        id: &str,
        change: &ProfileChange,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut set = doc! {"updatedAt": to_bson_time(now)};
        for (key, value) in [
            ("fname", &change.fname),
            ("lname", &change.lname),
            ("gender", &change.gender),
        ] {
            if let Some(value) = value {
                set.insert(key, value);
            }
        }
        self.update_returning(id, set).await
    }

    async fn replace_password_hash(
        &self,
        id: &str,
        expected: &str,
        new_hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let Some(oid) = object_id(id) else {
            return Ok(false);
        };
        let result = bounded(self.users.update_one(
            doc! {"_id": oid, "password": expected},
            doc! {"$set": {"password": new_hash, "updatedAt": to_bson_time(now)}},
        ))
        .await?;
        Ok(result.matched_count == 1)
    }

    async fn update_mobile(
        &self,
        id: &str,
        mobile: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.update_returning(id, doc! {"mobile": mobile, "updatedAt": to_bson_time(now)})
            .await
    }

    async fn mark_email_verified(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.update_returning(
            id,
            doc! {"email_verified": true, "updatedAt": to_bson_time(now)},
        )
        .await
    }

    async fn update_account(
        &self,
        id: &str,
        change: &AccountChange,
        now: OffsetDateTime,
        events: &[EventRecord],
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut set = doc! {"updatedAt": to_bson_time(now)};
        if let Some(role) = &change.role {
            set.insert("role", role);
        }
        if let Some(disabled) = change.disabled {
            set.insert("disabled", disabled);
        }
        let updated = self.update_returning(id, set).await?;
        if updated.is_some() {
            for event in events {
                self.record_after_change(event).await;
            }
        }
        Ok(updated)
    }

    async fn delete_user(&self, id: &str, events: &[EventRecord]) -> Result<bool, StoreError> {
        let Some(oid) = object_id(id) else {
            return Ok(false);
        };
        let attempt = tokio::time::timeout(OP_TIMEOUT, self.delete_in_transaction(oid, events));
        match attempt.await {
            Ok(Err(e)) if no_transactions(&e) => {
                // A standalone server: the user is one document, deleted
                // atomically; the event follows it.
                let result = bounded(self.users.delete_one(doc! {"_id": oid})).await?;
                let deleted = result.deleted_count == 1;
                if deleted {
                    for event in events {
                        self.record_after_change(event).await;
                    }
                }
                Ok(deleted)
            }
            Ok(outcome) => outcome.map_err(map_mongo),
            Err(_) => Err(StoreError::Unavailable {
                backend: BACKEND,
                reason: "operation timed out".into(),
            }),
        }
    }

    async fn list_users(&self, query: &UserQuery) -> Result<Vec<UserRecord>, StoreError> {
        use futures_util::TryStreamExt;
        // A range of the unique email index: `[prefix, prefix + U+10FFFF)`
        // needs no regex (nothing to escape) and is never a scan. Emails are
        // unique, so the keyset continues after the last email alone.
        let mut range = doc! {"$lt": query.prefix_end()};
        match &query.after {
            Some((email, _)) if *email >= query.email_prefix => {
                range.insert("$gt", email);
            }
            _ => {
                range.insert("$gte", &query.email_prefix);
            }
        }
        let cursor = bounded(
            self.users
                .find(doc! {"email": range})
                .sort(doc! {"email": 1})
                .limit(i64::try_from(query.limit).unwrap_or(i64::MAX)),
        )
        .await?;
        let documents: Vec<Document> = bounded(cursor.try_collect()).await?;
        documents.iter().map(user_from).collect()
    }

    async fn any_admin(&self) -> Result<bool, StoreError> {
        let found = bounded(self.users.find_one(doc! {"role": "admin"})).await?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl Directory for MongoStore {
    async fn ping(&self) -> Result<(), StoreError> {
        bounded(self.db.run_command(doc! {"ping": 1}))
            .await
            .map(|_| ())
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongoose_documents_are_read() {
        let oid = ObjectId::new();
        let legacy = doc! {
            "_id": oid,
            "email": "old@example.com",
            "password": "$2a$10$abcdefghijklmnopqrstuv",
            "fname": "Old",
            "mobile": 14155552671_i64,
            "createdAt": DateTime::from_millis(1_600_000_000_000),
            "__v": 0,
        };
        let user = user_from(&legacy).unwrap();
        assert_eq!(user.id, oid.to_hex());
        assert_eq!(user.mobile.as_deref(), Some("+14155552671"));
        assert_eq!(user.role, "user");
        assert_eq!(user.lname, "");
        assert_eq!(user.created_at.unix_timestamp(), 1_600_000_000);
    }
}
