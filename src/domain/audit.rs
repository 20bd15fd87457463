//! The audit trail: what happened, to whom, through which client, from
//! which address — never a secret. One call records an event:
//!
//! ```ignore
//! audit.record(
//!     Event::new(EventType::SessionRevoked)
//!         .user(&user_id)
//!         .client(&client_id)
//!         .ip(addr)
//!         .detail(json!({"family_id": family_id})),
//! ).await;
//! ```
//!
//! Changes of the user store (a user created, disabled, a client changed)
//! are written with their event in one transaction instead: the domain
//! [`stamp`](Audit::stamp)s the event, hands the record to the store method
//! that makes the change, and [`emit`](Audit::emit)s the log line once it
//! is written. Every event is also a JSON log line on the `audit` target.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::crypto::secret::random_bytes;
use crate::store::{EventQuery, EventRecord, EventStore, StoreError};

/// The event types, as stored and as `type` in the API. NEVER CHANGE a
/// string: queries and log pipelines match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    LoginSucceeded,
    LoginFailed,
    Throttled,
    PasswordChanged,
    PasswordReset,
    EmailVerified,
    RefreshReuseDetected,
    Logout,
    ConsentGranted,
    ConsentRevoked,
    SessionRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserDeleted,
    RoleChanged,
    ClientCreated,
    ClientUpdated,
    ClientSecretRotated,
    ClientDeleted,
    KeyRotated,
    KeyRetired,
}

impl EventType {
    pub const ALL: [EventType; 22] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::Throttled,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::EmailVerified,
        Self::RefreshReuseDetected,
        Self::Logout,
        Self::ConsentGranted,
        Self::ConsentRevoked,
        Self::SessionRevoked,
        Self::UserCreated,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::UserDeleted,
        Self::RoleChanged,
        Self::ClientCreated,
        Self::ClientUpdated,
        Self::ClientSecretRotated,
        Self::ClientDeleted,
        Self::KeyRotated,
        Self::KeyRetired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::Throttled => "throttled",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::EmailVerified => "email_verified",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::Logout => "logout",
            Self::ConsentGranted => "consent_granted",
            Self::ConsentRevoked => "consent_revoked",
            Self::SessionRevoked => "session_revoked",
            Self::UserCreated => "user_created",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::UserDeleted => "user_deleted",
            Self::RoleChanged => "role_changed",
            Self::ClientCreated => "client_created",
            Self::ClientUpdated => "client_updated",
            Self::ClientSecretRotated => "client_secret_rotated",
            Self::ClientDeleted => "client_deleted",
            Self::KeyRotated => "key_rotated",
            Self::KeyRetired => "key_retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Names a `detail` key may not contain: whatever a caller passes, no
/// password, token, code, hash or secret reaches the trail.
const FORBIDDEN_KEY_PARTS: &[&str] = &["password", "secret", "token", "hash", "otp", "code"];

/// The longest string kept in `detail` (longer ones are cut): an attacker
/// who controls a value (an email typed at a login) cannot make one request
/// write much.
pub const MAX_DETAIL_TEXT: usize = 128;

/// An event before it is stamped with its id and time.
#[derive(Clone, Debug)]
pub struct Event {
    kind: EventType,
    user_id: Option<String>,
    client_id: Option<String>,
    ip: Option<IpAddr>,
    detail: Map<String, Value>,
}

impl Event {
    pub fn new(kind: EventType) -> Self {
        Self {
            kind,
            user_id: None,
            client_id: None,
            ip: None,
            detail: Map::new(),
        }
    }

    /// The user the event is about.
    pub fn user(mut self, id: impl Into<String>) -> Self {
        self.user_id = Some(id.into());
        self
    }

    /// The client the event is about (or came through).
    pub fn client(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The client address (`ClientAddr`).
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Who did it: the admin's user id, or `cli` for the command line.
    pub fn actor(self, actor: &str) -> Self {
        self.detail(serde_json::json!({ "actor": actor }))
    }

    /// Adds the keys of a JSON object to `detail`. Keys that name a secret
    /// are dropped and long strings cut (see [`MAX_DETAIL_TEXT`]).
    pub fn detail(mut self, value: Value) -> Self {
        if let Value::Object(map) = value {
            for (key, value) in map {
                let lower = key.to_ascii_lowercase();
                if FORBIDDEN_KEY_PARTS.iter().any(|part| lower.contains(part)) {
                    continue;
                }
                self.detail.insert(key, bounded(value));
            }
        }
        self
    }
}

fn bounded(value: Value) -> Value {
    match value {
        Value::String(s) if s.chars().count() > MAX_DETAIL_TEXT => {
            Value::String(s.chars().take(MAX_DETAIL_TEXT).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().take(32).map(bounded).collect()),
        other => other,
    }
}

/// Who made an administrative change: an admin (by user id, from an
/// address), the command line, or the start-up bootstrap. Written to
/// `detail.actor`.
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// The user acting on their own account (self-service), from an address.
    Own {
        ip: IpAddr,
    },
    Admin {
        user_id: &'a str,
        ip: IpAddr,
    },
    Cli,
    Bootstrap,
}

impl Actor<'_> {
    /// `event` with this actor (and the admin's address).
    pub fn stamp(&self, event: Event) -> Event {
        match self {
            Actor::Own { ip } => event.ip(*ip),
            Actor::Admin { user_id, ip } => event.actor(user_id).ip(*ip),
            Actor::Cli => event.actor("cli"),
            Actor::Bootstrap => event.actor("bootstrap"),
        }
    }

    /// Whether the actor is the admin `id` themselves.
    pub fn is_user(&self, id: &str) -> bool {
        matches!(self, Actor::Admin { user_id, .. } if *user_id == id)
    }
}

/// Records events and answers queries about them.
pub struct Audit {
    store: Arc<dyn EventStore>,
    clock: Clock,
    /// Orders the ids this node stamps within one millisecond.
    sequence: AtomicU16,
}

impl Audit {
    pub fn new(store: Arc<dyn EventStore>, clock: Clock) -> Self {
        Self {
            store,
            clock,
            sequence: AtomicU16::new(0),
        }
    }

    /// The event as it will be stored: a time-ordered id (12 hex digits of
    /// milliseconds, 4 of this node's sequence, 8 random) and the time.
    pub fn stamp(&self, event: Event) -> EventRecord {
        let millis = self.clock.now_millis();
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        EventRecord {
            id: format!(
                "{:012x}{:04x}{}",
                millis & 0xffff_ffff_ffff,
                self.sequence.fetch_add(1, Ordering::Relaxed),
                hex::encode(random_bytes::<4>())
            ),
            at,
            kind: event.kind.as_str().to_owned(),
            user_id: event.user_id,
            client_id: event.client_id,
            ip: event.ip.map(|ip| ip.to_string()),
            detail: Value::Object(event.detail),
        }
    }

    /// The JSON log line of a written event, on the `audit` target.
    pub fn emit(&self, record: &EventRecord) {
        let line = serde_json::json!({
            "id": record.id,
            "at": rfc3339(record.at),
            "type": record.kind,
            "user_id": record.user_id,
            "client_id": record.client_id,
            "ip": record.ip,
            "detail": record.detail,
        });
        tracing::info!(target: "audit", event = %line, "audit event");
    }

    /// Records an event that is not part of a user-store change. Best
    /// effort: a failed write is logged and counted, and never fails the
    /// action it records (the action has happened; an outage of the user
    /// store fails the actions that need it on their own).
    pub async fn record(&self, event: Event) {
        let record = self.stamp(event);
        match self.store.append_event(&record).await {
            Ok(()) => self.emit(&record),
            Err(e) => {
                metrics::counter!("tessera_audit_write_failures_total").increment(1);
                tracing::error!(event_type = %record.kind, error = %e, "audit event not written");
            }
        }
    }

    /// One page of events, newest first.
    pub async fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
        self.store.events(query).await
    }

    /// Deletes events older than `retention_days`.
    pub async fn prune(&self, retention_days: u64) -> Result<u64, StoreError> {
        let days = i64::try_from(retention_days.min(100_000)).unwrap_or(100_000);
        let cutoff = self.clock.now_datetime() - time::Duration::days(days);
        self.store.prune_events(cutoff).await
    }
}

/// RFC 3339 with milliseconds, as events are shown.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_and_is_snake_case() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
            assert!(
                kind.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
    }

    #[test]
    fn secret_keys_are_dropped_and_long_text_cut() {
        let event = Event::new(EventType::LoginFailed).detail(serde_json::json!({
            "password": "p", "client_secret": "s", "refresh_token": "t", "otp": "1",
            "email": "x".repeat(1000), "reason": "invalid_credentials",
        }));
        assert_eq!(event.detail.len(), 2);
        assert_eq!(
            event.detail["email"].as_str().unwrap().len(),
            MAX_DETAIL_TEXT
        );
    }
}
