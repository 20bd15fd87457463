//! Registered clients in the embedded store; every change is written with
//! its audit event in one transaction.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::events::insert_event;
use super::users::to_datetime;
use super::{Cached, SqliteStore, internal, map_sqlite};
use crate::store::{ClientRecord, ClientStore, EventRecord, StoreError};

fn json_list(text: String) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn list(v: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(internal)
}

const CLIENT_COLUMNS: &str = "id, name, secret_hash, first_party, redirect_uris, grant_types, \
     scopes, access_token_ttl, refresh_token_ttl, created_at, post_logout_redirect_uris, \
     backchannel_logout_uri, previous_secret_hash, previous_secret_expires_at, \
     dpop_bound_access_tokens, require_pushed_authorization_requests";

fn client_from_row(row: &Row<'_>) -> rusqlite::Result<ClientRecord> {
    Ok(ClientRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        secret_hash: row.get(2)?,
        first_party: row.get(3)?,
        redirect_uris: json_list(row.get(4)?)?,
        grant_types: json_list(row.get(5)?)?,
        scopes: json_list(row.get(6)?)?,
        access_token_ttl: row.get(7)?,
        refresh_token_ttl: row.get(8)?,
        created_at: to_datetime(row.get(9)?)?,
        post_logout_redirect_uris: json_list(row.get(10)?)?,
        backchannel_logout_uri: row.get(11)?,
        previous_secret_hash: row.get(12)?,
        previous_secret_expires_at: row
            .get::<_, Option<i64>>(13)?
            .map(to_datetime)
            .transpose()?,
        dpop_bound_access_tokens: row.get(14)?,
        require_pushed_authorization_requests: row.get(15)?,
    })
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn create_client(
        &self,
        client: &ClientRecord,
        event: &EventRecord,
    ) -> Result<(), StoreError> {
        let (cl, event) = (client.clone(), event.clone());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            tx.cached_execute(
                &format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                     ?15, ?16)"
                ),
                params![
                    cl.id,
                    cl.name,
                    cl.secret_hash,
                    cl.first_party,
                    list(&cl.redirect_uris)?,
                    list(&cl.grant_types)?,
                    list(&cl.scopes)?,
                    cl.access_token_ttl,
                    cl.refresh_token_ttl,
                    cl.created_at.unix_timestamp(),
                    list(&cl.post_logout_redirect_uris)?,
                    cl.backchannel_logout_uri,
                    cl.previous_secret_hash,
                    cl.previous_secret_expires_at.map(|t| t.unix_timestamp()),
                    cl.dpop_bound_access_tokens,
                    cl.require_pushed_authorization_requests,
                ],
            )
            .map_err(map_sqlite)?;
            insert_event(&tx, &event)?;
            tx.commit().map_err(map_sqlite)
        })
        .await
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let id = id.to_owned();
        self.with_reader(move |c| {
            c.cached_row(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ?1"),
                [&id],
                client_from_row,
            )
            .optional()
            .map_err(map_sqlite)
        })
        .await
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY created_at, id"
                ))
                .map_err(map_sqlite)?;
            let rows = stmt
                .query_map([], client_from_row)
                .map_err(map_sqlite)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(map_sqlite)?;
            Ok(rows)
        })
        .await
    }

    async fn update_client(
        &self,
        client: &ClientRecord,
        event: &EventRecord,
    ) -> Result<bool, StoreError> {
        let (cl, event) = (client.clone(), event.clone());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            let changed = tx
                .cached_execute(
                    "UPDATE clients SET name = ?2, redirect_uris = ?3, grant_types = ?4, \
                     scopes = ?5, access_token_ttl = ?6, post_logout_redirect_uris = ?7, \
                     backchannel_logout_uri = ?8, dpop_bound_access_tokens = ?9, \
                     require_pushed_authorization_requests = ?10 WHERE id = ?1",
                    params![
                        cl.id,
                        cl.name,
                        list(&cl.redirect_uris)?,
                        list(&cl.grant_types)?,
                        list(&cl.scopes)?,
                        cl.access_token_ttl,
                        list(&cl.post_logout_redirect_uris)?,
                        cl.backchannel_logout_uri,
                        cl.dpop_bound_access_tokens,
                        cl.require_pushed_authorization_requests,
                    ],
                )
                .map_err(map_sqlite)?;
            if changed != 1 {
                return Ok(false);
            }
            insert_event(&tx, &event)?;
            tx.commit().map_err(map_sqlite)?;
            Ok(true)
        })
        .await
    }

    async fn rotate_client_secret(
        &self,
        id: &str,
        expected: &str,
        new_hash: &str,
        keep_previous_until: Option<OffsetDateTime>,
        event: &EventRecord,
    ) -> Result<bool, StoreError> {
        let (id, expected, new_hash, event) = (
            id.to_owned(),
            expected.to_owned(),
            new_hash.to_owned(),
            event.clone(),
        );
        let previous = keep_previous_until.map(|until| (expected.clone(), until.unix_timestamp()));
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            let changed = tx
                .cached_execute(
                    "UPDATE clients SET secret_hash = ?3, previous_secret_hash = ?4, \
                     previous_secret_expires_at = ?5 WHERE id = ?1 AND secret_hash = ?2",
                    params![
                        id,
                        expected,
                        new_hash,
                        previous.as_ref().map(|p| &p.0),
                        previous.as_ref().map(|p| p.1),
                    ],
                )
                .map_err(map_sqlite)?;
            if changed != 1 {
                return Ok(false);
            }
            insert_event(&tx, &event)?;
            tx.commit().map_err(map_sqlite)?;
            Ok(true)
        })
        .await
    }

    async fn delete_client(&self, id: &str, event: &EventRecord) -> Result<bool, StoreError> {
        let (id, event) = (id.to_owned(), event.clone());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            let deleted = tx
                .cached_execute("DELETE FROM clients WHERE id = ?1", [id])
                .map_err(map_sqlite)?;
            if deleted != 1 {
                return Ok(false);
            }
            insert_event(&tx, &event)?;
            tx.commit().map_err(map_sqlite)?;
            Ok(true)
        })
        .await
    }
}
