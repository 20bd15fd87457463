//! The `/token` grants: `Grant::parse(params)?` then `grants.apply(..)`:
//! one match, one file per grant.

mod authorization_code;
mod client_credentials;
mod refresh_token;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::domain::dpop::ProvenKey;
use crate::domain::tokens::{IssuedTokens, TokenService};
use crate::store::{ClientRecord, StoreError, TokenStore, UserStore};

pub use crate::domain::error::GrantError;
pub use authorization_code::{AuthorizationRequest, issue_code};

/// Form parameters of an OAuth request, each present at most once.
pub type Params = BTreeMap<String, String>;

/// A parsed token request.
#[derive(Debug)]
pub enum Grant {
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    RefreshToken {
        refresh_token: String,
        scope: Option<String>,
    },
    ClientCredentials {
        scope: Option<String>,
    },
}

fn required(
    params: &Params,
    name: &'static str,
    missing: &'static str,
) -> Result<String, GrantError> {
    params
        .get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or(GrantError::InvalidRequest(missing))
}

impl Grant {
    /// Reads `grant_type` and the parameters that grant needs.
    pub fn parse(params: &Params) -> Result<Self, GrantError> {
        let grant_type = required(params, "grant_type", "grant_type is required")?;
        let optional = |name: &str| params.get(name).cloned();
        match grant_type.as_str() {
            "authorization_code" => Ok(Grant::AuthorizationCode {
                code: required(params, "code", "code is required")?,
                redirect_uri: optional("redirect_uri"),
                code_verifier: optional("code_verifier"),
            }),
            "refresh_token" => Ok(Grant::RefreshToken {
                refresh_token: required(params, "refresh_token", "refresh_token is required")?,
                scope: optional("scope"),
            }),
            "client_credentials" => Ok(Grant::ClientCredentials {
                scope: optional("scope"),
            }),
            _ => Err(GrantError::UnsupportedGrantType),
        }
    }

    /// The `grant_type` value, as clients register it.
    pub fn name(&self) -> &'static str {
        match self {
            Grant::AuthorizationCode { .. } => "authorization_code",
            Grant::RefreshToken { .. } => "refresh_token",
            Grant::ClientCredentials { .. } => "client_credentials",
        }
    }
}

/// Applies grants for authenticated clients.
pub struct Grants {
    pub(crate) tokens: Arc<TokenService>,
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) store: Arc<dyn TokenStore>,
}

impl Grants {
    pub fn new(
        tokens: Arc<TokenService>,
        users: Arc<dyn UserStore>,
        store: Arc<dyn TokenStore>,
    ) -> Self {
        Self {
            tokens,
            users,
            store,
        }
    }

    /// Issues tokens for `grant` to `client` (already authenticated),
    /// bound to the DPoP key `proven` if the request proved one (see
    /// `DpopService::verify_for`, which also knows who must).
    pub async fn apply(
        &self,
        client: &ClientRecord,
        grant: Grant,
        proven: Option<&ProvenKey>,
    ) -> Result<IssuedTokens, GrantError> {
        if !client.grant_types.iter().any(|g| g == grant.name()) {
            return Err(GrantError::UnauthorizedClient(
                "the client may not use this grant type",
            ));
        }
        let jkt = proven.map(|p| p.jkt.as_str());
        match grant {
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                authorization_code::apply(
                    self,
                    client,
                    &code,
                    redirect_uri.as_deref(),
                    code_verifier.as_deref(),
                    jkt,
                )
                .await
            }
            Grant::RefreshToken {
                refresh_token,
                scope,
            } => refresh_token::apply(self, client, &refresh_token, scope.as_deref(), jkt).await,
            Grant::ClientCredentials { scope } => {
                client_credentials::apply(self, client, scope.as_deref(), jkt)
            }
        }
    }

    /// The role a user has now, or `None` if the user is gone or disabled.
    pub(crate) async fn current_role(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        // A disabled user has no role to act in: their refreshes and code
        // exchanges fail like those of a deleted user.
        Ok(self
            .users
            .user_by_id(user_id)
            .await?
            .filter(|u| !u.disabled)
            .map(|u| u.role))
    }
}
