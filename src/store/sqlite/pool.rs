//! The connections and the busy policy: one writer, used on a blocking
//! thread, and a few read-only readers, used inline on the async worker
//! when one is free. A statement waits at most [`BUSY_TIMEOUT`] for another
//! connection's (or process's) lock.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::{SqliteStore, internal, is_busy, map_sqlite};
use crate::store::StoreError;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer: WAL, and a bounded wait for a lock another process (a CLI
/// command) may hold briefly, instead of failing at once.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(map_sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_sqlite)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )
    .map_err(map_sqlite)?;
    Ok(conn)
}

/// One reader per core, between 2 and 8.
pub(super) fn open_readers(path: &Path) -> Result<Vec<Mutex<Connection>>, StoreError> {
    let readers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    (0..readers)
        .map(|_| open_reader(path).map(Mutex::new))
        .collect()
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

impl SqliteStore {
    /// Runs `work` with a read-only connection. Reads run right here on the
    /// async worker when a reader is free: a point lookup in the
    /// memory-mapped, page-cached file takes microseconds, less than the
    /// round trip to a blocking thread, which cost 44 % of the CPU of
    /// `/api/users/me` in a profile (docs/performance.md). Readers never
    /// sleep on a busy database here; if every reader is taken, or SQLite
    /// answers busy (rare in WAL mode), the read moves to a blocking thread
    /// that retries within the same bound as writes.
    pub(super) async fn with_reader<T: Send + 'static>(
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

    /// Runs `work` with the writer connection on a blocking thread.
    pub(super) async fn with_conn<T: Send + 'static>(
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
