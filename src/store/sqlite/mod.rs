//! The embedded store: one SQLite file holding users, clients and token
//! state. The default when no MongoDB or Redis is configured.
//!
//! rusqlite is synchronous. Writes run on a blocking thread, through the
//! one writer connection. Reads run inline on the async worker, on one of a
//! few read-only connections (WAL lets them run beside the writer), and
//! fall back to a blocking thread only when every reader is taken or the
//! database answers busy (see `pool.rs`).
//!
//! - `schema.rs`: migrations (`migrations/*.sql`, `PRAGMA user_version`);
//! - `pool.rs`: the writer, the readers and the bounded busy policy;
//! - `users.rs`: the [`UserStore`] and [`Directory`] impls;
//! - `clients.rs`: the [`ClientStore`] impl;
//! - `events.rs`: the [`EventStore`](crate::store::EventStore) impl (the
//!   audit trail, written in the transaction of the change it records);
//! - `families.rs`: the [`FamilyStore`](crate::store::FamilyStore) impl;
//! - `state.rs`: codes, counters, consents and one-time codes;
//! - `pushed.rs`: the [`PushedRequestStore`](crate::store::PushedRequestStore)
//!   impl (RFC 9126 pushed authorization requests);
//! - `replay.rs`: the [`ReplayStore`](crate::store::ReplayStore) impl
//!   (DPoP proofs already seen);
//! - `tokens.rs`: the [`TokenStore`](crate::store::TokenStore) impl (purge).

mod clients;
mod events;
mod families;
mod pool;
mod pushed;
mod replay;
mod schema;
mod state;
mod tokens;
mod users;

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Row};

use crate::store::StoreError;
#[cfg(doc)]
use crate::store::{ClientStore, Directory, UserStore};

const BACKEND: &str = "sqlite";

/// SQLite-backed [`UserStore`], [`ClientStore`] and
/// [`TokenStore`](crate::store::TokenStore): one connection writes, a few
/// read-only ones read at the same time (WAL lets readers run beside the
/// writer), so token verification at the resource layer does not queue
/// behind refresh-token rotation.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<AtomicUsize>,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal {
        backend: BACKEND,
        reason: e.to_string(),
    }
}

/// The reason of the `Unavailable` error a busy or locked database maps to.
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

impl SqliteStore {
    /// Opens (creating if needed) `dir/tessera.db` and applies migrations.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable {
            backend: BACKEND,
            reason: format!("cannot create {}: {e}", dir.display()),
        })?;
        let path = dir.join("tessera.db");
        let conn = pool::open_writer(&path)?;
        schema::migrate(&conn)?;
        let readers = pool::open_readers(&path)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            readers: readers.into(),
            next_reader: Arc::default(),
        })
    }
}
