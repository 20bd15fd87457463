//! The audit trail in the embedded store.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};
use time::OffsetDateTime;

use super::{Cached, SqliteStore, internal, map_sqlite};
use crate::store::{EventQuery, EventRecord, EventStore, StoreError};

fn millis(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_millis(ms: i64) -> rusqlite::Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    let detail: String = row.get(6)?;
    Ok(EventRecord {
        id: row.get(0)?,
        at: from_millis(row.get(1)?)?,
        kind: row.get(2)?,
        user_id: row.get(3)?,
        client_id: row.get(4)?,
        ip: row.get(5)?,
        detail: serde_json::from_str(&detail).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

/// Writes one event on `c`: inside the caller's transaction when it has one.
pub(super) fn insert_event(c: &Connection, e: &EventRecord) -> Result<(), StoreError> {
    let detail = serde_json::to_string(&e.detail).map_err(internal)?;
    c.cached_execute(
        "INSERT INTO events (id, at, type, user_id, client_id, ip, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.id,
            millis(e.at),
            e.kind,
            e.user_id,
            e.client_id,
            e.ip,
            detail
        ],
    )
    .map_err(map_sqlite)?;
    Ok(())
}

/// The `WHERE` clause and parameters of a query: every filter is an
/// indexed column, and the keyset bound keeps each page an index range.
fn filters(query: &EventQuery) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    for (column, value) in [
        ("user_id =", &query.user_id),
        ("client_id =", &query.client_id),
        ("type =", &query.kind),
        ("id <", &query.before_id),
    ] {
        if let Some(value) = value {
            clauses.push(format!("{column} ?{}", values.len() + 1));
            values.push(Value::Text(value.clone()));
        }
    }
    if let Some(since) = query.since {
        clauses.push(format!("at >= ?{}", values.len() + 1));
        values.push(Value::Integer(millis(since)));
    }
    let clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (clause, values)
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append_event(&self, event: &EventRecord) -> Result<(), StoreError> {
        let event = event.clone();
        self.with_conn(move |c| insert_event(c, &event)).await
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
        let query = query.clone();
        self.with_reader(move |c| {
            let (clause, mut values) = filters(&query);
            values.push(Value::Integer(query.limit as i64));
            let sql = format!(
                "SELECT id, at, type, user_id, client_id, ip, detail FROM events {clause} \
                 ORDER BY id DESC LIMIT ?{}",
                values.len()
            );
            let mut stmt = c.prepare_cached(&sql).map_err(map_sqlite)?;
            let rows = stmt
                .query_map(params_from_iter(values), event_from_row)
                .map_err(map_sqlite)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(map_sqlite)?;
            Ok(rows)
        })
        .await
    }

    async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.with_conn(move |c| {
            let deleted = c
                .cached_execute("DELETE FROM events WHERE at < ?1", [millis(before)])
                .map_err(map_sqlite)?;
            Ok(deleted as u64)
        })
        .await
    }
}
