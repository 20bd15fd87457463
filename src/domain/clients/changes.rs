//! Changing a registered client: its settings (with the rules of
//! registration), its secret (with an optional grace for the old one) and
//! its deletion (with every refresh family it holds).

use crate::crypto::secret::{generate_client_secret, sha256_hex};
use crate::domain::audit::{Actor, Event, EventType};
use crate::domain::clients::{ClientService, NewClient, dedup, validate};
use crate::domain::tokens::FIRST_PARTY_CLIENT_ID;
use crate::domain::{DomainError, FieldErrors};
use crate::store::ClientRecord;

/// The longest grace a rotated-out secret may keep working: 30 days.
pub const MAX_SECRET_GRACE: u64 = 30 * 24 * 3600;

/// A change of a client's settings; `None` leaves a setting as it is, and
/// `Some(None)` clears an optional one.
#[derive(Clone, Debug, Default)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub backchannel_logout_uri: Option<Option<String>>,
    pub scopes: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub access_token_ttl: Option<Option<u64>>,
    pub dpop_bound_access_tokens: Option<bool>,
    pub require_pushed_authorization_requests: Option<bool>,
}

impl ClientPatch {
    /// The names of the settings it changes (for the event's `detail`).
    fn fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("redirect_uris", self.redirect_uris.is_some()),
            (
                "post_logout_redirect_uris",
                self.post_logout_redirect_uris.is_some(),
            ),
            (
                "backchannel_logout_uri",
                self.backchannel_logout_uri.is_some(),
            ),
            ("scopes", self.scopes.is_some()),
            ("grant_types", self.grant_types.is_some()),
            ("access_token_ttl", self.access_token_ttl.is_some()),
            (
                "dpop_bound_access_tokens",
                self.dpop_bound_access_tokens.is_some(),
            ),
            (
                "require_pushed_authorization_requests",
                self.require_pushed_authorization_requests.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// The client's settings with this patch applied, as a registration
    /// would state them, so that one rule checks both.
    fn applied_to(self, client: &ClientRecord) -> NewClient {
        NewClient {
            name: self.name.unwrap_or_else(|| client.name.clone()),
            public: client.is_public(),
            first_party: client.first_party,
            grant_types: self
                .grant_types
                .unwrap_or_else(|| client.grant_types.clone()),
            redirect_uris: self
                .redirect_uris
                .unwrap_or_else(|| client.redirect_uris.clone()),
            scopes: self.scopes.unwrap_or_else(|| client.scopes.clone()),
            access_token_ttl: self.access_token_ttl.unwrap_or(client.access_token_ttl),
            refresh_token_ttl: client.refresh_token_ttl,
            post_logout_redirect_uris: self
                .post_logout_redirect_uris
                .unwrap_or_else(|| client.post_logout_redirect_uris.clone()),
            backchannel_logout_uri: self
                .backchannel_logout_uri
                .unwrap_or_else(|| client.backchannel_logout_uri.clone()),
            dpop_bound_access_tokens: self
                .dpop_bound_access_tokens
                .unwrap_or(client.dpop_bound_access_tokens),
            require_pushed_authorization_requests: self
                .require_pushed_authorization_requests
                .unwrap_or(client.require_pushed_authorization_requests),
        }
    }
}

fn refreshes(grant_types: &[String]) -> bool {
    grant_types.iter().any(|g| g == "refresh_token")
}

impl ClientService {
    /// A registered client that an admin may change (never the built-in one).
    async fn changeable(&self, id: &str) -> Result<ClientRecord, DomainError> {
        if id == FIRST_PARTY_CLIENT_ID {
            return Err(DomainError::BuiltInClient);
        }
        self.store
            .client(id)
            .await?
            .ok_or(DomainError::ClientNotFound)
    }

    /// Changes a client's settings under the rules of registration. Lower
    /// scopes or grant types apply to new grants; a client that may no
    /// longer refresh loses its refresh families at once (they could never
    /// be used again, and their access tokens go with them).
    pub async fn update(
        &self,
        id: &str,
        patch: ClientPatch,
        actor: Actor<'_>,
    ) -> Result<ClientRecord, DomainError> {
        let fields = patch.fields();
        if fields.is_empty() {
            let mut errors = FieldErrors::new();
            errors.insert("body".into(), "name at least one setting to change".into());
            return Err(DomainError::Validation(errors));
        }
        let before = self.changeable(id).await?;
        let wanted = patch.applied_to(&before);
        validate(&wanted).map_err(DomainError::Validation)?;
        let updated = ClientRecord {
            name: wanted.name.trim().to_owned(),
            redirect_uris: wanted.redirect_uris,
            grant_types: dedup(wanted.grant_types),
            scopes: dedup(wanted.scopes),
            access_token_ttl: wanted.access_token_ttl,
            post_logout_redirect_uris: wanted.post_logout_redirect_uris,
            backchannel_logout_uri: wanted.backchannel_logout_uri,
            dpop_bound_access_tokens: wanted.dpop_bound_access_tokens,
            require_pushed_authorization_requests: wanted.require_pushed_authorization_requests,
            ..before.clone()
        };
        let event = Event::new(EventType::ClientUpdated)
            .client(id)
            .detail(serde_json::json!({ "fields": fields }));
        let record = self.audit.stamp(actor.stamp(event));
        if !self.store.update_client(&updated, &record).await? {
            return Err(DomainError::ClientNotFound);
        }
        self.audit.emit(&record);
        if refreshes(&before.grant_types) && !refreshes(&updated.grant_types) {
            self.families.revoke_client(id, self.clock.now()).await?;
        }
        Ok(updated)
    }

    /// A new secret for a confidential client, shown once. The old one
    /// keeps working for `grace_seconds` (0: not at all), both stored only
    /// as digests.
    pub async fn rotate_secret(
        &self,
        id: &str,
        grace_seconds: u64,
        actor: Actor<'_>,
    ) -> Result<String, DomainError> {
        if grace_seconds > MAX_SECRET_GRACE {
            let mut errors = FieldErrors::new();
            errors.insert(
                "grace_seconds".into(),
                format!("must be at most {MAX_SECRET_GRACE} (30 days)"),
            );
            return Err(DomainError::Validation(errors));
        }
        // Two rotations at once: each replaces the digest it read, so one
        // retries on what the other wrote (and keeps *that* as previous).
        for _ in 0..3 {
            let client = self.changeable(id).await?;
            let Some(current) = &client.secret_hash else {
                return Err(DomainError::PublicClient);
            };
            let secret = generate_client_secret();
            let keep_until = (grace_seconds > 0)
                .then(|| self.clock.now_datetime() + time::Duration::seconds(grace_seconds as i64));
            let event = Event::new(EventType::ClientSecretRotated)
                .client(id)
                .detail(serde_json::json!({ "grace_seconds": grace_seconds }));
            let record = self.audit.stamp(actor.stamp(event));
            let rotated = self
                .store
                .rotate_client_secret(
                    id,
                    current,
                    &sha256_hex(secret.as_bytes()),
                    keep_until,
                    &record,
                )
                .await?;
            if rotated {
                self.audit.emit(&record);
                return Ok(secret);
            }
        }
        Err(DomainError::ClientNotFound)
    }

    /// Deletes a client and revokes every refresh family it holds (their
    /// access tokens die with them). Its `client_credentials` tokens carry
    /// no family and live until they expire (at most the client's
    /// access-token lifetime).
    pub async fn delete(&self, id: &str, actor: Actor<'_>) -> Result<(), DomainError> {
        self.changeable(id).await?;
        let event = Event::new(EventType::ClientDeleted).client(id);
        let record = self.audit.stamp(actor.stamp(event));
        if !self.store.delete_client(id, &record).await? {
            return Err(DomainError::ClientNotFound);
        }
        self.audit.emit(&record);
        // After the delete: a refresh in between already fails to
        // authenticate the client.
        self.families.revoke_client(id, self.clock.now()).await?;
        Ok(())
    }
}
