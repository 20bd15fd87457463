//! The schema: migrations applied in order, `PRAGMA user_version` recording
//! the number of the last one that ran.

use rusqlite::Connection;

use super::{Cached, internal, map_sqlite};
use crate::store::StoreError;

/// Applied in order of their numbers (the file's number, strictly
/// increasing); `PRAGMA user_version` records the number of the last one
/// run. Numbers are the files', so branches that each add one (0005, 0006)
/// merge into one list without renumbering. Append only: never edit a
/// migration that has shipped (a database that already ran it would not
/// run it again).
const MIGRATIONS: &[(usize, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (
        2,
        include_str!("migrations/0002_counters_consents_otps.sql"),
    ),
    (3, include_str!("migrations/0003_credential_epochs.sql")),
    (4, include_str!("migrations/0004_openid_connect.sql")),
    (6, include_str!("migrations/0006_admin_audit.sql")),
];

/// Runs every migration `conn`'s database has not run yet, each in its own
/// transaction with the version bump; refuses a database from a newer binary.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let applied: usize = conn
        .cached_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(map_sqlite)? as usize;
    let latest = MIGRATIONS.last().map_or(0, |(number, _)| *number);
    if applied > latest {
        return Err(internal(format!(
            "database schema version {applied} is newer than this binary ({latest})"
        )));
    }
    for (number, sql) in MIGRATIONS.iter().filter(|(number, _)| *number > applied) {
        let batch = format!("BEGIN; {sql}; PRAGMA user_version = {number}; COMMIT;");
        conn.execute_batch(&batch).map_err(map_sqlite)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn migration_numbers_strictly_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
