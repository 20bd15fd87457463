//! What the user store keeps for administration: audit events, paged user
//! listings, and changes of an account's role or state. Kept beside the
//! users (SQLite or MongoDB) whatever the token store is, so that a change
//! and the event recording it can be written in one transaction where the
//! backend allows it.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::StoreError;

/// An audit event as stored. `detail` is a small JSON object that never
/// holds a password, token, code, hash or secret (the domain's `Event`
/// builder is the one way in).
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// 24 hex digits, time-ordered (milliseconds first).
    pub id: String,
    pub at: OffsetDateTime,
    /// The event type (`login_failed`, `user_disabled`, ...).
    pub kind: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// The client address, as `ClientAddr` computed it.
    pub ip: Option<String>,
    pub detail: serde_json::Value,
}

/// Which events to list: every filter is optional; newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub kind: Option<String>,
    /// Only events at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Keyset: only events with an id below this one (the last of the
    /// previous page).
    pub before_id: Option<String>,
    pub limit: usize,
}

/// Which users to list: an email prefix, after a keyset position, in
/// `(email, id)` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Normalised (lower case); empty for every user.
    pub email_prefix: String,
    /// The `(email, id)` of the last user of the previous page.
    pub after: Option<(String, String)>,
    pub limit: usize,
}

impl UserQuery {
    /// The exclusive upper bound of the prefix range `[prefix, prefix +
    /// U+10FFFF)`: an index range, with no pattern to escape.
    pub fn prefix_end(&self) -> String {
        format!("{}\u{10FFFF}", self.email_prefix)
    }
}

/// An administrator's change of an account; `None` leaves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountChange {
    pub role: Option<String>,
    pub disabled: Option<bool>,
}

impl AccountChange {
    pub fn is_empty(&self) -> bool {
        self.role.is_none() && self.disabled.is_none()
    }
}

/// The audit trail: appended to, listed with keyset pagination, pruned.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends one event (for changes that are not written with it).
    async fn append_event(&self, event: &EventRecord) -> Result<(), StoreError>;
    /// Events matching `query`, newest (highest id) first, at most `limit`.
    async fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError>;
    /// Deletes the events older than `before`; returns how many.
    async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}
