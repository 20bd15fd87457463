//! Administration of users (`/api/admin/users`, `tessera users`), the
//! audit-event listing, and the first admin made from configuration.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::clock::Clock;
use crate::domain::audit::{Actor, Audit, Event, EventType};
use crate::domain::page::{self, Page};
use crate::domain::tokens::TokenService;
use crate::domain::validate::{self, Checks};
use crate::domain::{DomainError, scope};
use crate::store::{AccountChange, EventQuery, EventRecord, UserQuery, UserRecord, UserStore};

/// A listing request as received (query parameters, not yet validated).
#[derive(Clone, Debug, Default)]
pub struct UserListing {
    pub q: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// An event listing request as received.
#[derive(Clone, Debug, Default)]
pub struct EventListing {
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub kind: Option<String>,
    pub since: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The role rule of `tessera users set-role` and `PATCH /users/{id}`.
pub fn validate_role(role: &str) -> Result<(), DomainError> {
    let well_formed = !role.is_empty()
        && role.len() <= 32
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(DomainError::field(
            "role",
            "must be 1 to 32 letters, digits, '-' or '_'",
        ))
    }
}

/// The rules of user administration.
pub struct AdminService {
    users: Arc<dyn UserStore>,
    tokens: Arc<TokenService>,
    audit: Arc<Audit>,
    clock: Clock,
}

impl AdminService {
    pub fn new(
        users: Arc<dyn UserStore>,
        tokens: Arc<TokenService>,
        audit: Arc<Audit>,
        clock: Clock,
    ) -> Self {
        Self {
            users,
            tokens,
            audit,
            clock,
        }
    }

    /// One page of users whose email starts with `q`, in email order.
    /// Keyset pagination: a user signing up meanwhile never makes a page
    /// repeat or skip one that existed.
    pub async fn list_users(&self, listing: &UserListing) -> Result<Page<UserRecord>, DomainError> {
        let mut checks = Checks::default();
        let prefix = listing.q.as_deref().unwrap_or("").trim().to_lowercase();
        if prefix.len() > 254 || prefix.chars().any(char::is_control) {
            checks.check::<(), _>("q", Err("must be at most 254 characters of an email"));
        }
        let limit = checks.check(
            "limit",
            page::limit(listing.limit.as_deref()).map_err(first),
        );
        let after = match &listing.cursor {
            Some(raw) => checks.check("cursor", user_cursor(raw).map_err(first)),
            None => None,
        };
        checks.finish().map_err(DomainError::Validation)?;
        let limit = limit.unwrap_or(page::DEFAULT_LIMIT);
        let rows = self
            .users
            .list_users(&UserQuery {
                email_prefix: prefix,
                after,
                limit: limit + 1,
            })
            .await?;
        Ok(page::paginate(rows, limit, |u| {
            page::encode_cursor(&[&u.email, &u.id])
        }))
    }

    /// A user by id (`UserNotFound` for ids of no shape or no user).
    pub async fn user(&self, id: &str) -> Result<UserRecord, DomainError> {
        if !page::is_id(id) {
            return Err(DomainError::UserNotFound);
        }
        self.users
            .user_by_id(id)
            .await?
            .ok_or(DomainError::UserNotFound)
    }

    /// Changes a user's role and/or disabled state, writing an event per
    /// change with the user-store change. Disabling moves the user's
    /// credential epoch *after* the flag is written: every token, family
    /// and browser session of theirs dies at once, and a sign-in in flight
    /// either sees the flag or loses to the epoch.
    pub async fn update_user(
        &self,
        id: &str,
        change: AccountChange,
        actor: Actor<'_>,
    ) -> Result<UserRecord, DomainError> {
        if change.is_empty() {
            return Err(DomainError::field("body", "name role or disabled"));
        }
        if let Some(role) = &change.role {
            validate_role(role)?;
        }
        if actor.is_user(id) {
            // An admin locking themselves out is a support call, not a feature.
            let field = if change.disabled.is_some() {
                "disabled"
            } else {
                "role"
            };
            return Err(DomainError::field(
                field,
                "cannot be changed on your own account",
            ));
        }
        let before = self.user(id).await?;
        let events = self.change_events(&before, &change, actor);
        let updated = self
            .users
            .update_account(id, &change, self.clock.now_datetime(), &events)
            .await?
            .ok_or(DomainError::UserNotFound)?;
        for event in &events {
            self.audit.emit(event);
        }
        if change.disabled == Some(true) {
            // A task of its own, so a cancelled request cannot stop it
            // half-way. (It runs on every disable, so repeating a PATCH
            // that failed here with a 503 finishes the job.)
            let (tokens, id) = (self.tokens.clone(), id.to_owned());
            tokio::spawn(async move { tokens.revoke_user(&id).await })
                .await
                .map_err(|_| crate::store::StoreError::Internal {
                    backend: "token store",
                    reason: "the revocation task did not finish".into(),
                })??;
        }
        Ok(updated)
    }

    fn change_events(
        &self,
        before: &UserRecord,
        change: &AccountChange,
        actor: Actor<'_>,
    ) -> Vec<EventRecord> {
        let mut events = Vec::new();
        if let Some(role) = change.role.as_ref().filter(|r| **r != before.role) {
            let event = Event::new(EventType::RoleChanged)
                .user(&before.id)
                .detail(serde_json::json!({"from": before.role, "to": role}));
            events.push(self.audit.stamp(actor.stamp(event)));
        }
        if let Some(disabled) = change.disabled.filter(|d| *d != before.disabled) {
            let kind = if disabled {
                EventType::UserDisabled
            } else {
                EventType::UserEnabled
            };
            let event = Event::new(kind).user(&before.id);
            events.push(self.audit.stamp(actor.stamp(event)));
        }
        events
    }

    /// `tessera users disable|enable EMAIL`.
    pub async fn set_disabled_by_email(
        &self,
        email: &str,
        disabled: bool,
    ) -> Result<UserRecord, DomainError> {
        let user = self.user_by_email(email).await?;
        let change = AccountChange {
            role: None,
            disabled: Some(disabled),
        };
        self.update_user(&user.id, change, Actor::Cli).await
    }

    /// `tessera users set-role EMAIL ROLE`.
    pub async fn set_role_by_email(&self, email: &str, role: &str) -> Result<(), DomainError> {
        validate_role(role)?;
        let user = self.user_by_email(email).await?;
        let change = AccountChange {
            role: Some(role.to_owned()),
            disabled: None,
        };
        self.update_user(&user.id, change, Actor::Cli).await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<UserRecord, DomainError> {
        let email = validate::email(email).map_err(|m| DomainError::field("email", m))?;
        self.users
            .user_by_email(&email)
            .await?
            .ok_or(DomainError::UserNotFound)
    }

    /// `TESSERA_BOOTSTRAP_ADMIN_EMAIL`: at start, if that user exists and
    /// no admin does, they become one (recorded as `role_changed` with actor
    /// `bootstrap`). True if a role was given.
    pub async fn bootstrap_admin(&self, email: &str) -> Result<bool, DomainError> {
        if self.users.any_admin().await? {
            return Ok(false);
        }
        let user = match self.user_by_email(email).await {
            Ok(user) => user,
            Err(DomainError::UserNotFound | DomainError::Validation(_)) => {
                tracing::warn!(
                    "TESSERA_BOOTSTRAP_ADMIN_EMAIL names no user yet; sign up, then restart"
                );
                return Ok(false);
            }
            Err(other) => return Err(other),
        };
        let event = Event::new(EventType::RoleChanged)
            .user(&user.id)
            .detail(serde_json::json!({"from": user.role, "to": scope::ADMIN_ROLE}));
        let record = self.audit.stamp(Actor::Bootstrap.stamp(event));
        let change = AccountChange {
            role: Some(scope::ADMIN_ROLE.to_owned()),
            disabled: None,
        };
        self.users
            .update_account(
                &user.id,
                &change,
                self.clock.now_datetime(),
                std::slice::from_ref(&record),
            )
            .await?;
        self.audit.emit(&record);
        tracing::info!(user_id = %user.id, "bootstrap admin: role admin given");
        Ok(true)
    }

    /// One page of audit events, newest first.
    pub async fn events(&self, listing: &EventListing) -> Result<Page<EventRecord>, DomainError> {
        let mut checks = Checks::default();
        let id_filter = |field: &'static str, value: &Option<String>, checks: &mut Checks| {
            value.as_ref().and_then(|v| {
                let ok = !v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control);
                checks.check(
                    field,
                    if ok {
                        Ok(v.clone())
                    } else {
                        Err("is not an id")
                    },
                )
            })
        };
        let user_id = id_filter("user_id", &listing.user_id, &mut checks);
        let client_id = id_filter("client_id", &listing.client_id, &mut checks);
        let kind = listing.kind.as_ref().and_then(|k| {
            let parsed = EventType::parse(k).ok_or("is not an event type");
            checks.check("type", parsed.map(|t| t.as_str().to_owned()))
        });
        let since = listing.since.as_ref().and_then(|s| {
            let parsed = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| "must be an RFC 3339 date-time");
            checks.check("since", parsed)
        });
        let limit = checks.check(
            "limit",
            page::limit(listing.limit.as_deref()).map_err(first),
        );
        let before_id = listing.cursor.as_ref().and_then(|raw| {
            let position = page::decode_cursor(raw, 1)
                .map_err(first)
                .and_then(|mut p| match p.pop() {
                    Some(id) if page::is_id(&id) => Ok(id),
                    _ => Err("is not a cursor of this listing".to_owned()),
                });
            checks.check("cursor", position)
        });
        checks.finish().map_err(DomainError::Validation)?;
        let limit = limit.unwrap_or(page::DEFAULT_LIMIT);
        let rows = self
            .audit
            .events(&EventQuery {
                user_id,
                client_id,
                kind,
                since,
                before_id,
                limit: limit + 1,
            })
            .await?;
        Ok(page::paginate(rows, limit, |e| {
            page::encode_cursor(&[&e.id])
        }))
    }
}

/// The `(email, id)` keyset position of a user cursor.
fn user_cursor(raw: &str) -> Result<(String, String), DomainError> {
    let mut position = page::decode_cursor(raw, 2)?;
    let id = position.pop().unwrap_or_default();
    let email = position.pop().unwrap_or_default();
    if !page::is_id(&id) || email.is_empty() || email.len() > 254 {
        return Err(DomainError::field(
            "cursor",
            "is not a cursor of this listing",
        ));
    }
    Ok((email, id))
}

/// The message of a one-field validation error, to re-file under a field.
fn first(error: DomainError) -> String {
    match error {
        DomainError::Validation(errors) => errors.into_values().next().unwrap_or_default(),
        other => other.to_string(),
    }
}
