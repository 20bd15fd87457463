//! The schema: migrations applied in order, `PRAGMA user_version` recording
//! how many have run.

use rusqlite::Connection;

use super::{Cached, internal, map_sqlite};
use crate::store::StoreError;

/// Applied in order; `PRAGMA user_version` records how many have run.
/// Append only: never edit a migration that has shipped (a database that
/// already ran it would not run it again).
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_counters_consents_otps.sql"),
    include_str!("migrations/0003_credential_epochs.sql"),
    include_str!("migrations/0004_openid_connect.sql"),
    include_str!("migrations/0005_self_service.sql"),
];

/// Runs every migration `conn`'s database has not run yet, each in its own
/// transaction with the version bump; refuses a database from a newer binary.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
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
