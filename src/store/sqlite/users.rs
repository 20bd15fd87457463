//! Users in the embedded store (each admin change with its audit event).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::events::insert_event;
use super::{BACKEND, Cached, SqliteStore, map_sqlite};
use crate::store::{
    AccountChange, Directory, EventRecord, ProfileChange, StoreError, UserQuery, UserRecord,
    UserStore,
};

pub(super) fn to_datetime(seconds: i64) -> rusqlite::Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

const USER_COLUMNS: &str = "id, email, password_hash, fname, lname, gender, mobile, role, \
     created_at, updated_at, email_verified, disabled";

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
        disabled: row.get(11)?,
    })
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &UserRecord, event: &EventRecord) -> Result<(), StoreError> {
        let (u, event) = (user.clone(), event.clone());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            tx.cached_execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
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
                    u.email_verified,
                    u.disabled
                ],
            )
            .map_err(map_sqlite)?;
            insert_event(&tx, &event)?;
            tx.commit().map_err(map_sqlite)
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

    async fn update_account(
        &self,
        id: &str,
        change: &AccountChange,
        now: OffsetDateTime,
        events: &[EventRecord],
    ) -> Result<Option<UserRecord>, StoreError> {
        let (id, change, events) = (id.to_owned(), change.clone(), events.to_vec());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            let changed = tx
                .cached_execute(
                    "UPDATE users SET role = COALESCE(?2, role), \
                     disabled = COALESCE(?3, disabled), updated_at = ?4 WHERE id = ?1",
                    params![id, change.role, change.disabled, now.unix_timestamp()],
                )
                .map_err(map_sqlite)?;
            if changed != 1 {
                return Ok(None);
            }
            for event in &events {
                insert_event(&tx, event)?;
            }
            let user = select_user(&tx, &id)?;
            tx.commit().map_err(map_sqlite)?;
            Ok(user)
        })
        .await
    }

    async fn delete_user(&self, id: &str, events: &[EventRecord]) -> Result<bool, StoreError> {
        let (id, events) = (id.to_owned(), events.to_vec());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            let deleted = tx
                .cached_execute("DELETE FROM users WHERE id = ?1", [&id])
                .map_err(map_sqlite)?
                == 1;
            if deleted {
                for event in &events {
                    insert_event(&tx, event)?;
                }
            }
            tx.commit().map_err(map_sqlite)?;
            Ok(deleted)
        })
        .await
    }

    async fn list_users(&self, query: &UserQuery) -> Result<Vec<UserRecord>, StoreError> {
        let query = query.clone();
        self.with_reader(move |c| {
            let (after_email, after_id) = query.after.clone().unwrap_or_default();
            // A range on the unique email index, continued after the last
            // row of the previous page: no scan, whatever the page.
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users \
                     WHERE email >= ?1 AND email < ?2 AND (email, id) > (?3, ?4) \
                     ORDER BY email, id LIMIT ?5"
                ))
                .map_err(map_sqlite)?;
            let rows = stmt
                .query_map(
                    params![
                        query.email_prefix,
                        query.prefix_end(),
                        after_email,
                        after_id,
                        query.limit as i64
                    ],
                    user_from_row,
                )
                .map_err(map_sqlite)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(map_sqlite)?;
            Ok(rows)
        })
        .await
    }

    async fn any_admin(&self) -> Result<bool, StoreError> {
        self.with_reader(|c| {
            c.cached_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')",
                [],
                |r| r.get::<_, bool>(0),
            )
            .map_err(map_sqlite)
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
