//! Self-service on one's own account: the sessions (refresh-token
//! families) and consents a user can see and end, "sign out everywhere",
//! email verification and deleting the account. The JSON API, the
//! browser pages and the admin API (sessions of any user, deletion without
//! a password) all go through this one service.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::{Clock, UnixTime};
use crate::domain::DomainError;
use crate::domain::audit::{Actor, Audit, Event, EventType};
use crate::domain::authorize::CONSENT_TTL;
use crate::domain::clients::ClientService;
use crate::domain::otp::OtpService;
use crate::domain::tokens::FIRST_PARTY_CLIENT_ID;
use crate::domain::tokens::TokenService;
use crate::domain::users::{SignInFrom, UserService};
use crate::store::{TokenStore, UserRecord, UserStore};

/// One sign-in as the user sees it: a live refresh-token family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The family id (the `fid` of the access tokens it issued).
    pub id: String,
    pub client_id: String,
    /// The client's name; its id when the client was deleted.
    pub client_name: String,
    /// The sign-in session (`sid`) the family belongs to.
    pub session_id: String,
    pub created_at: UnixTime,
    /// The last refresh (the creation if never refreshed).
    pub last_used_at: UnixTime,
}

/// A client the user approved, with every scope approved for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentInfo {
    pub client_id: String,
    /// The client's name; its id when the client was deleted.
    pub client_name: String,
    /// Sorted, without duplicates.
    pub scopes: Vec<String>,
    /// The latest approval.
    pub granted_at: UnixTime,
}

/// Family ids are 24 hex digits (as ObjectIds): anything else names no
/// session, and is answered without a store round trip.
fn is_family_id(id: &str) -> bool {
    crate::domain::page::is_id(id)
}

/// Client ids are short and printable; anything else names no client.
fn is_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The rules of self-service.
pub struct AccountService {
    users: Arc<dyn UserStore>,
    /// Password checks with the login budget (for deletion).
    logins: Arc<UserService>,
    tokens: Arc<TokenService>,
    store: Arc<dyn TokenStore>,
    clients: Arc<ClientService>,
    otp: Arc<OtpService>,
    audit: Arc<Audit>,
    clock: Clock,
}

impl AccountService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserStore>,
        logins: Arc<UserService>,
        tokens: Arc<TokenService>,
        store: Arc<dyn TokenStore>,
        clients: Arc<ClientService>,
        otp: Arc<OtpService>,
        audit: Arc<Audit>,
        clock: Clock,
    ) -> Self {
        Self {
            users,
            logins,
            tokens,
            store,
            clients,
            otp,
            audit,
            clock,
        }
    }

    /// The user's live sessions, newest first. A family started before
    /// the user's credential epoch last moved is dead even if its own
    /// revocation has not landed yet, so it is not listed.
    pub async fn sessions(&self, user_id: &str) -> Result<Vec<SessionInfo>, DomainError> {
        let (families, epoch) = tokio::try_join!(
            self.store.user_families(user_id, self.clock.now()),
            self.store.credential_epoch(user_id),
        )?;
        let mut names = ClientNames::default();
        let mut sessions = Vec::new();
        for family in families.into_iter().filter(|f| f.epoch >= epoch) {
            sessions.push(SessionInfo {
                client_name: names.of(&self.clients, &family.client_id).await?,
                id: family.id,
                client_id: family.client_id,
                session_id: family.session_id,
                created_at: family.created_at,
                last_used_at: family.last_used_at,
            });
        }
        sessions.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(sessions)
    }

    /// Ends one session of the user's. `NotFound` alike for an unknown,
    /// ended or expired family and for another user's: nobody learns
    /// which family ids exist.
    pub async fn revoke_session(
        &self,
        user_id: &str,
        family_id: &str,
        actor: Actor<'_>,
    ) -> Result<(), DomainError> {
        if !is_family_id(family_id) {
            return Err(DomainError::NotFound("session"));
        }
        match self.store.family(family_id, self.clock.now()).await? {
            Some(family) if family.user_id == user_id => {
                self.tokens.revoke_family(family_id).await?;
                let event = Event::new(EventType::SessionRevoked)
                    .user(user_id)
                    .client(&family.client_id)
                    .detail(serde_json::json!({ "session": family_id }));
                self.audit.record(actor.stamp(event)).await;
                Ok(())
            }
            _ => Err(DomainError::NotFound("session")),
        }
    }

    /// Moves the user's credential epoch: every session, access token,
    /// browser session and remembered consent of theirs ends at once.
    pub async fn sign_out_everywhere(
        &self,
        user_id: &str,
        actor: Actor<'_>,
    ) -> Result<(), DomainError> {
        self.tokens.revoke_user(user_id).await?;
        let event = Event::new(EventType::SessionRevoked)
            .user(user_id)
            .detail(serde_json::json!({ "session": "all" }));
        self.audit.record(actor.stamp(event)).await;
        Ok(())
    }

    /// The clients the user approved, one entry per client (the scopes of
    /// every approval merged), the latest approval first.
    pub async fn consents(&self, user_id: &str) -> Result<Vec<ConsentInfo>, DomainError> {
        let stored = self.store.consents(user_id, self.clock.now()).await?;
        let mut by_client: BTreeMap<String, (BTreeSet<String>, UnixTime)> = BTreeMap::new();
        for consent in stored {
            // Consents remembered before grant times were stored: their
            // expiry minus the lifetime they were given is when.
            let granted_at = consent
                .granted_at
                .unwrap_or(consent.expires_at - CONSENT_TTL);
            let entry = by_client
                .entry(consent.client_id)
                .or_insert_with(|| (BTreeSet::new(), granted_at));
            entry.0.extend(
                consent
                    .scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            entry.1 = entry.1.max(granted_at);
        }
        let mut names = ClientNames::default();
        let mut consents = Vec::new();
        for (client_id, (scopes, granted_at)) in by_client {
            consents.push(ConsentInfo {
                client_name: names.of(&self.clients, &client_id).await?,
                client_id,
                scopes: scopes.into_iter().collect(),
                granted_at,
            });
        }
        consents.sort_by(|a, b| (b.granted_at, &a.client_id).cmp(&(a.granted_at, &b.client_id)));
        Ok(consents)
    }

    /// Forgets the user's consent to `client_id` (the client must ask
    /// again) and ends that client's sessions of the user. `NotFound` when
    /// the user had no consent to that client.
    pub async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        actor: Actor<'_>,
    ) -> Result<(), DomainError> {
        if !is_client_id(client_id) || !self.store.revoke_consent(user_id, client_id).await? {
            return Err(DomainError::NotFound("consent"));
        }
        let now = self.clock.now();
        for family in self.store.user_families(user_id, now).await? {
            if family.client_id == client_id {
                self.tokens.revoke_family(&family.id).await?;
            }
        }
        let event = Event::new(EventType::ConsentRevoked)
            .user(user_id)
            .client(client_id);
        self.audit.record(actor.stamp(event)).await;
        Ok(())
    }

    /// Mails the user a code proving their address (same rules and rate
    /// limits as the password-reset code, but a code of its own purpose).
    pub async fn request_email_verification(
        &self,
        user_id: &str,
        client: IpAddr,
    ) -> Result<(), DomainError> {
        let user = self.user(user_id).await?;
        self.otp.request_verification(&user, client).await
    }

    /// Marks the user's email verified with a mailed code: the updated user.
    pub async fn verify_email(
        &self,
        user_id: &str,
        otp: &str,
        client: IpAddr,
    ) -> Result<UserRecord, DomainError> {
        let user = self.user(user_id).await?;
        self.otp.verify_email(&user, otp, client).await
    }

    /// Deletes the account after checking its password (as a login does:
    /// the login budget is reserved before bcrypt, a wrong password is
    /// `InvalidCredentials`).
    pub async fn delete_account(
        &self,
        user_id: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<(), DomainError> {
        let user = self.user(user_id).await?;
        let from = SignInFrom {
            ip: client,
            client_id: FIRST_PARTY_CLIENT_ID,
        };
        let signed_in = self
            .logins
            .authenticate(&user.email, password, from)
            .await?;
        if signed_in.user.id != user.id {
            return Err(DomainError::InvalidCredentials);
        }
        self.erase(user_id, Actor::Own { ip: client }).await?;
        Ok(())
    }

    /// Deletes a user without a password (the admin API, the CLI); false
    /// if there is no such user.
    pub async fn delete_user(&self, user_id: &str, actor: Actor<'_>) -> Result<bool, DomainError> {
        if actor.is_user(user_id) {
            // As with disabling: an admin does not delete their own account here.
            return Err(DomainError::field("id", "cannot be your own account"));
        }
        if !crate::domain::page::is_id(user_id) {
            return Ok(false);
        }
        match self.users.user_by_id(user_id).await? {
            // Everything after the lookup keys by the id as stored.
            Some(user) => self.erase(&user.id, actor).await,
            None => Ok(false),
        }
    }

    async fn user(&self, user_id: &str) -> Result<UserRecord, DomainError> {
        self.users
            .user_by_id(user_id)
            .await?
            .ok_or(DomainError::UserNotFound)
    }

    /// Deletes the user and everything of theirs, in an order where a
    /// failure at any step leaves no live token of a deleted user:
    ///
    /// 1. the credential epoch moves (every token, family, code, browser
    ///    session and sign-in in flight is dead from here on);
    /// 2. the token-store state goes (families, consents, one-time codes,
    ///    codes), except the epoch record, which alone keeps the user's
    ///    outstanding access tokens refused until they expire;
    /// 3. the user record goes;
    /// 4. the epoch moves again and the state is dropped again: a sign-in
    ///    whose password check passed before step 3 cannot outlive it.
    ///
    /// It runs as a task of its own, so a request that times out or is
    /// cancelled cannot stop it half-way. A new signup with the same email
    /// is a new user id, which no old token names.
    async fn erase(&self, user_id: &str, actor: Actor<'_>) -> Result<bool, DomainError> {
        let (users, tokens, store) = (self.users.clone(), self.tokens.clone(), self.store.clone());
        let id = user_id.to_owned();
        // Written with the deletion, in its transaction where the store has them.
        let event = self
            .audit
            .stamp(actor.stamp(Event::new(EventType::UserDeleted).user(user_id)));
        let events = [event];
        let (deleted, events) = tokio::spawn(async move {
            tokens.revoke_user(&id).await?;
            store.forget_user(&id).await?;
            let deleted = users.delete_user(&id, &events).await?;
            tokens.revoke_user(&id).await?;
            store.forget_user(&id).await?;
            Ok::<_, DomainError>((deleted, events))
        })
        .await
        .map_err(|_| {
            DomainError::Store(crate::store::StoreError::Internal {
                backend: "token store",
                reason: "the deletion task did not finish".into(),
            })
        })??;
        if deleted {
            for event in &events {
                self.audit.emit(event);
            }
        }
        Ok(deleted)
    }
}

/// Client names looked up once per listing.
#[derive(Default)]
struct ClientNames(HashMap<String, String>);

impl ClientNames {
    /// The name of `client_id` (the built-in client included), or the id
    /// itself when the client no longer exists.
    async fn of(
        &mut self,
        clients: &ClientService,
        client_id: &str,
    ) -> Result<String, DomainError> {
        if let Some(name) = self.0.get(client_id) {
            return Ok(name.clone());
        }
        let name = clients
            .get(client_id)
            .await?
            .map_or_else(|| client_id.to_owned(), |client| client.name);
        self.0.insert(client_id.to_owned(), name.clone());
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_cannot_exist_are_refused_before_the_store() {
        assert!(is_family_id("0123456789abcdef01234567"));
        assert!(!is_family_id("../../etc/passwd"));
        assert!(!is_family_id(&"a".repeat(10_000)));
        assert!(!is_family_id("0123456789abcdef0123456g"));
        assert!(is_client_id("a-client_id.1"));
        assert!(!is_client_id(""));
        assert!(!is_client_id("a b"));
        assert!(!is_client_id(&"c".repeat(129)));
    }
}
