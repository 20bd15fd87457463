//! The embedded store: one SQLite file holding users, clients and token
//! state. The default when no MongoDB or Redis is configured.
//!
//! rusqlite is synchronous, so every call runs on a blocking thread.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use crate::clock::UnixTime;
use crate::crypto::secret::{TokenHash, constant_time_eq};
use crate::store::{
    AccessCheck, ClientRecord, CodeGrant, CodeRedemption, FamilyView, NewFamily, ProfileChange,
    RotateRequest, Rotation, StoreError, TokenStore, UserRecord, UserStore,
};

const BACKEND: &str = "sqlite";

/// Applied in order; `PRAGMA user_version` records how many have run.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    fname TEXT NOT NULL,
    lname TEXT NOT NULL,
    gender TEXT,
    mobile TEXT,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT,
    first_party INTEGER NOT NULL,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    scopes TEXT NOT NULL,
    access_token_ttl INTEGER,
    refresh_token_ttl INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE refresh_families (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    current_hash TEXT NOT NULL
);
CREATE INDEX refresh_families_user ON refresh_families(user_id);
CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
CREATE TABLE revoked_access_tokens (
    jti TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE auth_codes (
    hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT,
    scope TEXT NOT NULL,
    pkce TEXT,
    expires_at INTEGER NOT NULL,
    family_id TEXT NOT NULL,
    used_at INTEGER
);
CREATE TABLE user_not_before (
    user_id TEXT PRIMARY KEY,
    not_before INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE counters (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id, scope)
);
CREATE TABLE otps (
    user_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL
);
"#,
];

/// SQLite-backed [`UserStore`] and [`TokenStore`]: one connection writes,
/// a few read-only ones read at the same time (WAL lets readers run beside
/// the writer), so token verification at the resource layer does not queue
/// behind refresh-token rotation.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal {
        backend: BACKEND,
        reason: e.to_string(),
    }
}

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const BUSY: &str = "database is locked";

fn is_busy(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable { reason, .. } if reason == BUSY)
}

fn map_sqlite(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Duplicate,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable {
            backend: BACKEND,
            reason: BUSY.into(),
        },
        Some(ErrorCode::DiskFull | ErrorCode::CannotOpen | ErrorCode::SystemIoFailure) => {
            StoreError::Unavailable {
                backend: BACKEND,
                reason: e.to_string(),
            }
        }
        _ => internal(e),
    }
}

/// `query_row` and `execute` through the connection's statement cache:
/// parsing the SQL costs more than running these point lookups.
trait Cached {
    fn cached_row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
    fn cached_execute<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn cached_row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn cached_execute<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

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

const USER_COLUMNS: &str =
    "id, email, password_hash, fname, lname, gender, mobile, role, created_at, updated_at";

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
    })
}

const CLIENT_COLUMNS: &str = "id, name, secret_hash, first_party, redirect_uris, grant_types, \
     scopes, access_token_ttl, refresh_token_ttl, created_at";

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
    })
}

const FAMILY_COLUMNS: &str = "f.id, f.user_id, f.client_id, f.scope, f.created_at, \
     MIN(f.idle_expires_at, f.absolute_expires_at)";

fn family_from_row(row: &Row<'_>) -> rusqlite::Result<FamilyView> {
    Ok(FamilyView {
        id: row.get(0)?,
        user_id: row.get(1)?,
        client_id: row.get(2)?,
        scope: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
    })
}

fn absolute_expiry(c: &Connection, family_id: &str) -> Result<i64, StoreError> {
    c.cached_row(
        "SELECT absolute_expires_at FROM refresh_families WHERE id = ?1",
        [family_id],
        |r| r.get(0),
    )
    .map_err(map_sqlite)
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/tessera.db` and applies migrations.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable {
            backend: BACKEND,
            reason: format!("cannot create {}: {e}", dir.display()),
        })?;
        let conn = Connection::open(dir.join("tessera.db")).map_err(map_sqlite)?;
        // Another process (a CLI command) may hold the write lock briefly:
        // wait for it, bounded, instead of failing at once.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(map_sqlite)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(map_sqlite)?;
        migrate(&conn)?;
        let readers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8);
        let readers = (0..readers)
            .map(|_| open_reader(&dir.join("tessera.db")).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            readers: readers.into(),
            next_reader: Arc::default(),
        })
    }

    /// Runs `work` with a read-only connection. Reads run right here on the
    /// async worker when a reader is free: a point lookup in the
    /// memory-mapped, page-cached file takes microseconds, less than the
    /// round trip to a blocking thread, which cost 44 % of the CPU of
    /// `/api/users/me` in a profile (docs/performance.md). Readers never
    /// sleep on a busy database here; if every reader is taken, or SQLite
    /// answers busy (rare in WAL mode), the read moves to a blocking thread
    /// that retries within the same bound as writes.
    async fn with_reader<T: Send + 'static>(
        &self,
        work: impl Fn(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Relaxed);
        if let Some(mut reader) = (0..n).find_map(|i| self.readers[(start + i) % n].try_lock().ok())
        {
            match work(&mut reader) {
                Err(e) if is_busy(&e) => {}
                done => return done,
            }
        }
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
            loop {
                let mut reader = readers[start % n].lock().unwrap_or_else(|p| p.into_inner());
                match work(&mut reader) {
                    Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                        drop(reader);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    done => return done,
                }
            }
        })
        .await
        .map_err(internal)?
    }

    /// Runs `work` with the connection on a blocking thread.
    async fn with_conn<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written
            // (statements are atomic), so a poisoned lock is safe to reuse.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(internal)?
    }
}

/// A read-only connection: memory-mapped reads, and no sleeping on a busy
/// database (see `with_reader`).
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_sqlite)?;
    conn.busy_timeout(Duration::ZERO).map_err(map_sqlite)?;
    conn.execute_batch("PRAGMA mmap_size = 268435456;")
        .map_err(map_sqlite)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let applied: usize = conn
        .cached_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(map_sqlite)? as usize;
    if applied > MIGRATIONS.len() {
        return Err(internal(format!(
            "database schema version {applied} is newer than this binary ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let batch = format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", index + 1);
        conn.execute_batch(&batch).map_err(map_sqlite)?;
    }
    Ok(())
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let u = user.clone();
        self.with_conn(move |c| {
            c.cached_execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
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
                    u.updated_at.unix_timestamp()
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
            let tx = c.transaction().map_err(map_sqlite)?;
            let changed = tx
                .cached_execute(
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
                .map_err(map_sqlite)?;
            let user = if changed == 1 {
                select_user(&tx, &id)?
            } else {
                None
            };
            tx.commit().map_err(map_sqlite)?;
            Ok(user)
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
            let tx = c.transaction().map_err(map_sqlite)?;
            let changed = tx
                .cached_execute(
                    "UPDATE users SET mobile = ?2, updated_at = ?3 WHERE id = ?1",
                    params![id, mobile, now.unix_timestamp()],
                )
                .map_err(map_sqlite)?;
            let user = if changed == 1 {
                select_user(&tx, &id)?
            } else {
                None
            };
            tx.commit().map_err(map_sqlite)?;
            Ok(user)
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

    async fn create_client(&self, client: &ClientRecord) -> Result<(), StoreError> {
        let cl = client.clone();
        self.with_conn(move |c| {
            let list = |v: &Vec<String>| serde_json::to_string(v).map_err(internal);
            c.cached_execute(
                &format!("INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
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
                    cl.created_at.unix_timestamp()
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

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|c| c.cached_row("SELECT 1", [], |_| Ok(())).map_err(map_sqlite))
            .await
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
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

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create_family(&self, family: &NewFamily) -> Result<(), StoreError> {
        let f = family.clone();
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            tx.cached_execute(
                "INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, \
                 idle_expires_at, absolute_expires_at, current_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    f.id,
                    f.user_id,
                    f.client_id,
                    f.scope,
                    f.created_at,
                    f.idle_expires_at,
                    f.absolute_expires_at,
                    f.first_token.as_str()
                ],
            )
            .map_err(map_sqlite)?;
            tx.cached_execute(
                "INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES (?1, ?2, ?3)",
                params![f.first_token.as_str(), f.id, f.created_at],
            )
            .map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)
        })
        .await
    }

    async fn rotate(&self, request: &RotateRequest<'_>) -> Result<Rotation, StoreError> {
        let family_id = request.family_id.to_owned();
        let client_id = request.client_id.to_owned();
        let presented = request.presented.as_str().to_owned();
        let successor = request.successor.as_str().to_owned();
        let (now, grace, idle_ttl) = (request.now, request.grace as i64, request.idle_ttl as i64);
        self.with_conn(move |c| {
            // IMMEDIATE takes the write lock up front: the read and the
            // write below are one step even against other processes.
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let found = tx
                .cached_row(
                    &format!(
                        "SELECT {FAMILY_COLUMNS}, f.revoked_at, f.current_hash, t.rotated_at \
                         FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
                         WHERE t.hash = ?1 AND f.id = ?2"
                    ),
                    params![presented, family_id],
                    |r| {
                        Ok((
                            family_from_row(r)?,
                            r.get::<_, Option<i64>>(6)?,
                            r.get::<_, String>(7)?,
                            r.get::<_, Option<i64>>(8)?,
                        ))
                    },
                )
                .optional()
                .map_err(map_sqlite)?;
            let Some((family, revoked_at, current, rotated_at)) = found else {
                return Ok(Rotation::Invalid);
            };
            if revoked_at.is_some() || family.expires_at <= now || family.client_id != client_id {
                return Ok(Rotation::Invalid);
            }
            let outcome = if current == presented {
                let absolute = absolute_expiry(&tx, &family.id)?;
                let expires_at = (now + idle_ttl).min(absolute);
                tx.cached_execute(
                    "UPDATE refresh_tokens SET rotated_at = ?2 WHERE hash = ?1",
                    params![presented, now],
                )
                .map_err(map_sqlite)?;
                tx.cached_execute(
                    "INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES (?1, ?2, ?3)",
                    params![successor, family.id, now],
                )
                .map_err(map_sqlite)?;
                tx.cached_execute(
                    "UPDATE refresh_families SET current_hash = ?2, idle_expires_at = ?3 WHERE id = ?1",
                    params![family.id, successor, now + idle_ttl],
                )
                .map_err(map_sqlite)?;
                Rotation::Rotated(FamilyView { expires_at, ..family })
            } else if grace > 0
                && current == successor
                && rotated_at.is_some_and(|at| now - at <= grace)
            {
                Rotation::GraceReplay(family)
            } else {
                // RFC 9700 §4.14.2: replay of a rotated token revokes the family.
                tx.cached_execute(
                    "UPDATE refresh_families SET revoked_at = ?2 WHERE id = ?1",
                    params![family.id, now],
                )
                .map_err(map_sqlite)?;
                Rotation::ReuseDetected
            };
            tx.commit().map_err(map_sqlite)?;
            Ok(outcome)
        })
        .await
    }

    async fn live_refresh(
        &self,
        family_id: &str,
        presented: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError> {
        let (family_id, presented) = (family_id.to_owned(), presented.as_str().to_owned());
        self.with_reader(move |c| {
            c.cached_row(
                &format!(
                    "SELECT {FAMILY_COLUMNS} FROM refresh_families f \
                     WHERE f.id = ?1 AND f.current_hash = ?2 AND f.revoked_at IS NULL"
                ),
                params![family_id, presented],
                family_from_row,
            )
            .optional()
            .map_err(map_sqlite)
            .map(|f| f.filter(|f| f.expires_at > now))
        })
        .await
    }

    async fn family(
        &self,
        family_id: &str,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError> {
        let family_id = family_id.to_owned();
        self.with_reader(move |c| {
            c.cached_row(
                &format!(
                    "SELECT {FAMILY_COLUMNS} FROM refresh_families f \
                     WHERE f.id = ?1 AND f.revoked_at IS NULL"
                ),
                params![family_id],
                family_from_row,
            )
            .optional()
            .map_err(map_sqlite)
            .map(|f| f.filter(|f| f.expires_at > now))
        })
        .await
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<(), StoreError> {
        let family_id = family_id.to_owned();
        self.with_conn(move |c| {
            c.cached_execute(
                "UPDATE refresh_families SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![family_id, now],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn revoke_user(&self, user_id: &str, now: UnixTime) -> Result<(), StoreError> {
        let user_id = user_id.to_owned();
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM consents WHERE user_id = ?1", [&user_id])
                .map_err(map_sqlite)?;
            tx.cached_execute(
                "UPDATE refresh_families SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
                params![user_id, now],
            )
            .map_err(map_sqlite)?;
            tx.cached_execute(
                "INSERT INTO user_not_before (user_id, not_before) VALUES (?1, ?2) \
                 ON CONFLICT(user_id) DO UPDATE SET not_before = MAX(not_before, excluded.not_before)",
                params![user_id, now],
            )
            .map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)
        })
        .await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.with_conn(move |c| {
            c.cached_execute(
                "INSERT OR IGNORE INTO revoked_access_tokens (jti, expires_at) VALUES (?1, ?2)",
                params![jti, expires_at],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn is_access_revoked(&self, check: &AccessCheck<'_>) -> Result<bool, StoreError> {
        let (jti, sub, sid, iat) = (
            check.jti.to_owned(),
            check.sub.to_owned(),
            check.sid.map(str::to_owned),
            check.iat,
        );
        self.with_reader(move |c| {
            c.cached_row(
                "SELECT EXISTS(SELECT 1 FROM revoked_access_tokens WHERE jti = ?1) \
                 OR EXISTS(SELECT 1 FROM refresh_families WHERE id = ?3 AND revoked_at IS NOT NULL) \
                 OR EXISTS(SELECT 1 FROM user_not_before WHERE user_id = ?2 AND not_before > ?4)",
                params![jti, sub, sid, iat],
                |r| r.get::<_, bool>(0),
            )
            .map_err(map_sqlite)
        })
        .await
    }

    async fn put_code(&self, code: &TokenHash, grant: &CodeGrant) -> Result<(), StoreError> {
        let (code, g) = (code.as_str().to_owned(), grant.clone());
        self.with_conn(move |c| {
            c.cached_execute(
                "INSERT INTO auth_codes (hash, client_id, user_id, redirect_uri, scope, pkce, \
                 expires_at, family_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    code,
                    g.client_id,
                    g.user_id,
                    g.redirect_uri,
                    g.scope,
                    g.pkce,
                    g.expires_at,
                    g.family_id
                ],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn redeem_code(
        &self,
        code: &TokenHash,
        now: UnixTime,
    ) -> Result<CodeRedemption, StoreError> {
        let code = code.as_str().to_owned();
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let found = tx
                .cached_row(
                    "SELECT client_id, user_id, redirect_uri, scope, pkce, expires_at, family_id, used_at \
                     FROM auth_codes WHERE hash = ?1",
                    [&code],
                    |r| {
                        Ok((
                            CodeGrant {
                                client_id: r.get(0)?,
                                user_id: r.get(1)?,
                                redirect_uri: r.get(2)?,
                                scope: r.get(3)?,
                                pkce: r.get(4)?,
                                expires_at: r.get(5)?,
                                family_id: r.get(6)?,
                            },
                            r.get::<_, Option<i64>>(7)?,
                        ))
                    },
                )
                .optional()
                .map_err(map_sqlite)?;
            let outcome = match found {
                None => CodeRedemption::Unknown,
                Some((grant, Some(_))) => CodeRedemption::Replayed { family_id: grant.family_id },
                Some((grant, None)) if grant.expires_at <= now => CodeRedemption::Unknown,
                Some((grant, None)) => {
                    tx.cached_execute("UPDATE auth_codes SET used_at = ?2 WHERE hash = ?1", params![code, now])
                        .map_err(map_sqlite)?;
                    CodeRedemption::Fresh(grant)
                }
            };
            tx.commit().map_err(map_sqlite)?;
            Ok(outcome)
        })
        .await
    }

    async fn hit(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError> {
        let window = window.max(1) as i64;
        let bucket = now.div_euclid(window);
        let key = format!("{key}:{bucket}");
        let expires_at = (bucket + 1) * window;
        self.with_conn(move |c| {
            c.cached_row(
                "INSERT INTO counters (key, count, expires_at) VALUES (?1, 1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET count = count + 1 RETURNING count",
                params![key, expires_at],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(map_sqlite)
        })
        .await
    }

    async fn count(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError> {
        let window = window.max(1) as i64;
        let key = format!("{key}:{}", now.div_euclid(window));
        self.with_reader(move |c| {
            c.cached_row("SELECT count FROM counters WHERE key = ?1", [&key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|n| n.unwrap_or(0).max(0) as u64)
            .map_err(map_sqlite)
        })
        .await
    }

    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        let (u, c, s) = (user_id.to_owned(), client_id.to_owned(), scope.to_owned());
        self.with_conn(move |conn| {
            conn.cached_execute(
                "INSERT INTO consents (user_id, client_id, scope, expires_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(user_id, client_id, scope) DO UPDATE SET expires_at = excluded.expires_at",
                params![u, c, s, expires_at],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn has_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (u, c, s) = (user_id.to_owned(), client_id.to_owned(), scope.to_owned());
        self.with_reader(move |conn| {
            conn.cached_row(
                "SELECT EXISTS(SELECT 1 FROM consents WHERE user_id = ?1 AND client_id = ?2 \
                 AND scope = ?3 AND expires_at > ?4)",
                params![u, c, s, now],
                |r| r.get::<_, bool>(0),
            )
            .map_err(map_sqlite)
        })
        .await
    }

    async fn put_otp(
        &self,
        user_id: &str,
        digest: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        let (user_id, digest) = (user_id.to_owned(), digest.to_owned());
        self.with_conn(move |c| {
            c.cached_execute(
                "INSERT INTO otps (user_id, digest, expires_at, attempts) VALUES (?1, ?2, ?3, 0) \
                 ON CONFLICT(user_id) DO UPDATE SET digest = excluded.digest, \
                 expires_at = excluded.expires_at, attempts = 0",
                params![user_id, digest, expires_at],
            )
            .map_err(map_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn check_otp(
        &self,
        user_id: &str,
        digest: &str,
        now: UnixTime,
        max_attempts: u32,
    ) -> Result<bool, StoreError> {
        let (user_id, digest) = (user_id.to_owned(), digest.to_owned());
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_sqlite)?;
            let stored = tx
                .cached_row(
                    "SELECT digest, expires_at, attempts FROM otps WHERE user_id = ?1",
                    [&user_id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()
                .map_err(map_sqlite)?;
            let burn = |tx: &rusqlite::Transaction<'_>| {
                tx.cached_execute("DELETE FROM otps WHERE user_id = ?1", [&user_id])
                    .map_err(map_sqlite)
            };
            let valid = match stored {
                None => false,
                Some((_, expires_at, _)) if expires_at <= now => {
                    burn(&tx)?;
                    false
                }
                Some((stored, _, _)) if constant_time_eq(stored.as_bytes(), digest.as_bytes()) => {
                    burn(&tx)?;
                    true
                }
                Some((_, _, attempts)) => {
                    if attempts + 1 >= i64::from(max_attempts) {
                        burn(&tx)?;
                    } else {
                        tx.cached_execute(
                            "UPDATE otps SET attempts = attempts + 1 WHERE user_id = ?1",
                            [&user_id],
                        )
                        .map_err(map_sqlite)?;
                    }
                    false
                }
            };
            tx.commit().map_err(map_sqlite)?;
            Ok(valid)
        })
        .await
    }

    async fn purge_expired(&self, now: UnixTime) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM counters WHERE expires_at < ?1", [now])
                .map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM otps WHERE expires_at < ?1", [now])
                .map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM consents WHERE expires_at < ?1", [now])
                .map_err(map_sqlite)?;
            // Used codes are kept past expiry for a while so a late replay
            // still finds (and revokes) what they issued.
            tx.cached_execute("DELETE FROM auth_codes WHERE expires_at < ?1 - 600", [now])
                .map_err(map_sqlite)?;
            tx.cached_execute("DELETE FROM revoked_access_tokens WHERE expires_at < ?1", [now])
                .map_err(map_sqlite)?;
            tx.cached_execute(
                "DELETE FROM refresh_families WHERE absolute_expires_at < ?1 OR idle_expires_at < ?1",
                [now],
            )
            .map_err(map_sqlite)?;
            tx.commit().map_err(map_sqlite)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        UserStore::ping(self).await
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
