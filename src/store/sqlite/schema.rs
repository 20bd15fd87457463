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
    (5, include_str!("migrations/0005_self_service.sql")),
    (6, include_str!("migrations/0006_admin_audit.sql")),
    (7, include_str!("migrations/0007_dpop_par.sql")),
    (8, include_str!("migrations/0008_dpop.sql")),
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
    use super::*;

    /// A database of the version before self-service, with a live reset
    /// code, a consent and a family, migrated to the current version.
    #[test]
    fn self_service_keeps_codes_consents_and_families_of_before() {
        let conn = Connection::open_in_memory().unwrap();
        for (number, sql) in MIGRATIONS.iter().take(4) {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {number}; COMMIT;"
            ))
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO otps (user_id, digest, expires_at, attempts) VALUES ('u1', 'd1', 100, 2);
             INSERT INTO consents (user_id, client_id, scope, expires_at) VALUES ('u1', 'c1', 'email', 200);
             INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, \
             idle_expires_at, absolute_expires_at, current_hash) \
             VALUES ('f1', 'u1', 'c1', 'email', 10, 20, 30, 'h1');",
        )
        .unwrap();

        migrate(&conn).unwrap();
        migrate(&conn).unwrap();

        let otp: (String, String, i64, i64) = conn
            .query_row(
                "SELECT purpose, digest, expires_at, attempts FROM otps WHERE user_id = 'u1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(otp, ("password_reset".into(), "d1".into(), 100, 2));
        let granted: Option<i64> = conn
            .query_row("SELECT granted_at FROM consents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(granted, None, "estimated by the domain from the expiry");
        let last_used: Option<i64> = conn
            .query_row("SELECT last_used_at FROM refresh_families", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(last_used, None, "never rotated: its creation");
        // One code per user and purpose.
        conn.execute(
            "INSERT INTO otps (user_id, purpose, digest, expires_at, attempts) \
             VALUES ('u1', 'email_verification', 'd2', 100, 0)",
            [],
        )
        .unwrap();
        assert!(
            conn.execute(
                "INSERT INTO otps (user_id, purpose, digest, expires_at, attempts) \
                 VALUES ('u1', 'password_reset', 'd3', 100, 0)",
                [],
            )
            .is_err()
        );
    }

    #[test]
    fn migration_numbers_strictly_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
