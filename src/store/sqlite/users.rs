//! Users and clients in the embedded store.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::{BACKEND, Cached, SqliteStore, internal, map_sqlite};
use crate::store::{
    ClientRecord, ClientStore, Directory, ProfileChange, StoreError, UserRecord, UserStore,
};

fn to_datetime(seconds: i64) -> rusqlite::Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

fn json_list(text: String) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

const USER_COLUMNS: &str = "id, email, password_hash, fname, lname, gender, mobile, role, \
     created_at, updated_at, email_verified";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        email: row.get(1)?,
        password_hash: row.get(2)?,
        fname: row.get(3)?,
        lname: row.get(4)?,
        gender: row.get(5)?,
        mobile: row.get(6)?,
        role: row.get(7)?,
        created_at: to_datetime(row.get(8)?)?,
        updated_at: to_datetime(row.get(9)?)?,
        email_verified: row.get(10)?,
    })
}

const CLIENT_COLUMNS: &str = "id, name, secret_hash, first_party, redirect_uris, grant_types, \
     scopes, access_token_ttl, refresh_token_ttl, created_at, post_logout_redirect_uris, \
     backchannel_logout_uri";

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
    })
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let u = user.clone();
        self.with_conn(move |c| {
            c.cached_execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    u.id,
                    u.email,
                    u.password_hash,
                    u.fname,
                    u.lname,
                    u.gender,
                    u.mobile,
                    u.role,
                    u.created_at.unix_timestamp(),
                    u.updated_at.unix_timestamp(),
                    u.email_verified
                ],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let email = email.to_owned();
        self.with_reader(move |c| {
            c.cached_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
                [&email],
                user_from_row,
            )
            .optional()
            .map_err(map_sqlite)
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let id = id.to_owned();
        self.with_reader(move |c| select_user(c, &id)).await
    }

    async fn update_profile(
        &self,
        id: &str,
        change: &ProfileChange,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, StoreError> {
        let (id, change) = (id.to_owned(), change.clone());
        self.with_conn(move |c| {
            update_returning_user(
                c,
                &id,
                "UPDATE users SET fname = COALESCE(?2, fname), lname = COALESCE(?3, lname), \
                 gender = COALESCE(?4, gender), updated_at = ?5 WHERE id = ?1",
                params![
                    id,
                    change.fname,
                    change.lname,
                    change.gender,
                    now.unix_timestamp()
                ],
            )
        })
        .await
    }

    async fn replace_password_hash(
        &self,
        id: &str,
        expected: &str,
        new_hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (id, expected, new_hash) = (id.to_owned(), expected.to_owned(), new_hash.to_owned());
        self.with_conn(move |c| {
            let changed = c
                .cached_execute(
                    "UPDATE users SET password_hash = ?3, updated_at = ?4 \
                     WHERE id = ?1 AND password_hash = ?2",
                    params![id, expected, new_hash, now.unix_timestamp()],
                )
                .map_err(map_sqlite)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn update_mobile(
        &self,
        id: &str,
        mobile: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, StoreError> {
        let (id, mobile) = (id.to_owned(), mobile.to_owned());
        self.with_conn(move |c| {
            update_returning_user(
                c,
                &id,
                "UPDATE users SET mobile = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, mobile, now.unix_timestamp()],
            )
        })
        .await
    }

    async fn mark_email_verified(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |c| {
            update_returning_user(
                c,
                &id,
                "UPDATE users SET email_verified = 1, updated_at = ?2 WHERE id = ?1",
                params![id, now.unix_timestamp()],
            )
        })
        .await
    }

    async fn set_role(
        &self,
        email: &str,
        role: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (email, role) = (email.to_owned(), role.to_owned());
        self.with_conn(move |c| {
            let changed = c
                .cached_execute(
                    "UPDATE users SET role = ?2, updated_at = ?3 WHERE email = ?1",
                    params![email, role, now.unix_timestamp()],
                )
                .map_err(map_sqlite)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |c| {
            // One statement: its own transaction, all or nothing.
            c.cached_execute("DELETE FROM users WHERE id = ?1", [&id])
                .map(|deleted| deleted == 1)
                .map_err(map_sqlite)
        })
        .await
    }
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn create_client(&self, client: &ClientRecord) -> Result<(), StoreError> {
        let cl = client.clone();
        self.with_conn(move |c| {
            let list = |v: &Vec<String>| serde_json::to_string(v).map_err(internal);
            c.cached_execute(
                &format!("INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
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
                    cl.backchannel_logout_uri
                ],
            )
            .map_err(map_sqlite)?;
            Ok(())
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

    async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |c| {
            let deleted = c
                .cached_execute("DELETE FROM clients WHERE id = ?1", [id])
                .map_err(map_sqlite)?;
            Ok(deleted == 1)
        })
        .await
    }
}

#[async_trait]
impl Directory for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|c| c.cached_row("SELECT 1", [], |_| Ok(())).map_err(map_sqlite))
            .await
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}

/// Runs one `UPDATE` of the user `id` and reads the user back, in one
/// transaction; `None` when there is no such user.
fn update_returning_user(
    c: &mut Connection,
    id: &str,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<UserRecord>, StoreError> {
    let tx = c.transaction().map_err(map_sqlite)?;
    let changed = tx.cached_execute(sql, params).map_err(map_sqlite)?;
    let user = if changed == 1 {
        select_user(&tx, id)?
    } else {
        None
    };
    tx.commit().map_err(map_sqlite)?;
    Ok(user)
}

fn select_user(c: &Connection, id: &str) -> Result<Option<UserRecord>, StoreError> {
    c.cached_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        [id],
        user_from_row,
    )
    .optional()
    .map_err(map_sqlite)
}
