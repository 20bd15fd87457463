//! Issuing tokens: RFC 9068 access tokens and refresh-token families.

use std::sync::Arc;

use crate::clock::{Clock, UnixTime};
use crate::config::Config;
use crate::crypto::jwt::{self, AccessClaims};
use crate::crypto::keys::KeySet;
use crate::crypto::secret::{RefreshToken, new_object_id, random_token};
use crate::domain::DomainError;
use crate::store::{NewFamily, TokenStore};

/// The built-in first-party client that `/api/users/login` issues for.
/// NEVER CHANGE: refresh-token families are bound to it.
pub const FIRST_PARTY_CLIENT_ID: &str = "tessera";

/// The scopes a password login through the user API is granted.
pub const USER_API_SCOPE: &str = "profile email";

/// Every scope the server knows about (for the metadata document).
pub const SCOPES_SUPPORTED: &[&str] = &["profile", "email", "phone", "offline_access"];

/// Lifetimes, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub access: u64,
    pub refresh_idle: u64,
    pub refresh_absolute: u64,
}

/// A token response before it is serialised (RFC 6749 §5.1).
#[derive(Debug)]
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub refresh_token: Option<RefreshToken>,
}

/// Who a user token is for.
#[derive(Debug, Clone, Copy)]
pub struct UserGrant<'a> {
    pub user_id: &'a str,
    pub role: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
}

/// Signs access tokens and starts refresh-token families.
pub struct TokenService {
    keys: Arc<KeySet>,
    store: Arc<dyn TokenStore>,
    clock: Clock,
    issuer: String,
    audience: String,
    lifetimes: Lifetimes,
}

impl TokenService {
    pub fn new(
        config: &Config,
        keys: Arc<KeySet>,
        store: Arc<dyn TokenStore>,
        clock: Clock,
    ) -> Self {
        Self {
            keys,
            store,
            clock,
            issuer: config.issuer.clone(),
            audience: config.audience().to_owned(),
            lifetimes: Lifetimes {
                access: config.access_token_ttl,
                refresh_idle: config.refresh_idle_ttl,
                refresh_absolute: config.refresh_absolute_ttl,
            },
        }
    }

    pub fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }

    /// Signs an access token. `role` and `sid` are for user tokens only.
    pub fn access_token(
        &self,
        sub: &str,
        client_id: &str,
        scope: &str,
        user: Option<(&str, &str)>,
        now: UnixTime,
    ) -> Result<String, DomainError> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: sub.to_owned(),
            aud: self.audience.clone(),
            exp: now + self.lifetimes.access as i64,
            iat: now,
            jti: random_token::<16>(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            role: user.map(|(role, _)| role.to_owned()),
            sid: user.map(|(_, sid)| sid.to_owned()),
        };
        Ok(jwt::sign(&claims, self.keys.active())?)
    }

    /// Starts a refresh-token family for a user and returns the first pair.
    pub async fn start_session(&self, grant: UserGrant<'_>) -> Result<IssuedTokens, DomainError> {
        let now = self.clock.now();
        let refresh = RefreshToken::generate();
        let family = NewFamily {
            id: new_object_id(now),
            user_id: grant.user_id.to_owned(),
            client_id: grant.client_id.to_owned(),
            scope: grant.scope.to_owned(),
            created_at: now,
            idle_expires_at: now + self.lifetimes.refresh_idle as i64,
            absolute_expires_at: now + self.lifetimes.refresh_absolute as i64,
            first_token: refresh.hash(),
        };
        self.store.create_family(&family).await?;
        let access_token = self.access_token(
            grant.user_id,
            grant.client_id,
            grant.scope,
            Some((grant.role, &family.id)),
            now,
        )?;
        Ok(IssuedTokens {
            access_token,
            expires_in: self.lifetimes.access,
            scope: grant.scope.to_owned(),
            refresh_token: Some(refresh),
        })
    }

    /// Logs a user out everywhere: every family and every access token so far.
    pub async fn revoke_user(&self, user_id: &str) -> Result<(), DomainError> {
        Ok(self.store.revoke_user(user_id, self.clock.now()).await?)
    }
}
