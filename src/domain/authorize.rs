//! The authorization endpoint's rules (RFC 6749 §4.1, RFC 7636, RFC 9700):
//! which requests may proceed, which errors go back to the client, and
//! which must never redirect.

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::clients::ClientService;
use crate::domain::grants::{AuthorizationRequest, GrantError, Grants, Params, issue_code};
use crate::domain::pkce::{self, ChallengeError};
use crate::domain::scope;
use crate::store::{ClientRecord, StoreError, TokenStore};

/// How long a remembered consent lasts, in seconds.
pub const CONSENT_TTL: i64 = 30 * 24 * 3600;

/// The parameters of an authorization request that the pages carry along.
pub const REQUEST_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "prompt",
];

/// `prompt` (OpenID Connect Core §3.1.2.1), as OAuth libraries send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Default,
    /// Ask for the password even with a session.
    Login,
    /// Never show a page: fail with `login_required` / `consent_required`.
    None,
}

/// Why a request cannot proceed.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show a page, never
    /// redirect (RFC 6749 §4.1.2.1, an open-redirect defence).
    Page(&'static str),
    /// Tell the client, at its registered redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
    Store(StoreError),
}

impl From<StoreError> for AuthorizeError {
    fn from(e: StoreError) -> Self {
        AuthorizeError::Store(e)
    }
}

/// A request that may proceed to login and consent.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub client: ClientRecord,
    pub redirect_uri: String,
    /// Whether the request named the redirect URI (then the exchange must too).
    pub redirect_uri_given: bool,
    pub scope: String,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Prompt,
}

impl ValidRequest {
    /// An error answered at the client's redirect URI.
    pub fn redirect_error(&self, error: &'static str, description: &'static str) -> AuthorizeError {
        AuthorizeError::Redirect {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            error,
            description,
        }
    }
}

/// Validates and approves authorization requests.
pub struct Authorizer {
    clients: Arc<ClientService>,
    grants: Arc<Grants>,
    store: Arc<dyn TokenStore>,
    clock: Clock,
}

impl Authorizer {
    pub fn new(
        clients: Arc<ClientService>,
        grants: Arc<Grants>,
        store: Arc<dyn TokenStore>,
        clock: Clock,
    ) -> Self {
        Self {
            clients,
            grants,
            store,
            clock,
        }
    }

    /// Checks the client and redirect URI first (errors there never
    /// redirect), then everything else (errors there go back to the client).
    pub async fn validate(&self, params: &Params) -> Result<ValidRequest, AuthorizeError> {
        let get = |name: &str| params.get(name).cloned();
        let client_id = get("client_id").ok_or(AuthorizeError::Page(
            "The request names no application (client_id is missing).",
        ))?;
        let client = self
            .clients
            .get(&client_id)
            .await?
            .filter(|c| !c.redirect_uris.is_empty())
            .ok_or(AuthorizeError::Page(
                "The application is not known to this server.",
            ))?;
        let given = get("redirect_uri");
        let redirect_uri = match &given {
            // Exact match only (RFC 9700 §4.1.1).
            Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.clone(),
            Some(_) => {
                return Err(AuthorizeError::Page(
                    "The redirect URI is not registered for this application.",
                ));
            }
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return Err(AuthorizeError::Page(
                    "The request must name one of the application's redirect URIs.",
                ));
            }
        };
        let mut request = ValidRequest {
            client,
            redirect_uri,
            redirect_uri_given: given.is_some(),
            scope: String::new(),
            state: get("state"),
            code_challenge: get("code_challenge"),
            code_challenge_method: get("code_challenge_method"),
            prompt: Prompt::Default,
        };
        if get("response_type").as_deref() != Some("code") {
            return Err(
                request.redirect_error("unsupported_response_type", "response_type must be code")
            );
        }
        if !request
            .client
            .grant_types
            .iter()
            .any(|g| g == "authorization_code")
        {
            return Err(request.redirect_error(
                "unauthorized_client",
                "the client may not use the authorization code flow",
            ));
        }
        request.prompt = match get("prompt").as_deref() {
            None | Some("consent") | Some("select_account") => Prompt::Default,
            Some("login") => Prompt::Login,
            Some("none") => Prompt::None,
            Some(_) => {
                return Err(request
                    .redirect_error("invalid_request", "prompt must be none, login or consent"));
            }
        };
        request.scope = scope::narrow(get("scope").as_deref(), &request.client.scopes.join(" "))
            .ok_or_else(|| {
                request.redirect_error(
                    "invalid_scope",
                    "the requested scope is not allowed for this client",
                )
            })?;
        if let Err(e) = pkce::accept_challenge(
            request.client.is_public(),
            request.code_challenge.as_deref(),
            request.code_challenge_method.as_deref(),
        ) {
            let description = match e {
                ChallengeError::Required => "PKCE (code_challenge with S256) is required",
                ChallengeError::MethodNotS256 => "code_challenge_method must be S256",
                ChallengeError::Malformed => "code_challenge must be a base64url SHA-256 digest",
            };
            return Err(request.redirect_error("invalid_request", description));
        }
        Ok(request)
    }

    /// Whether the user already agreed to this exact request (first-party
    /// clients never ask).
    pub async fn consented(
        &self,
        request: &ValidRequest,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        if request.client.first_party {
            return Ok(true);
        }
        self.store
            .has_consent(
                user_id,
                &request.client.id,
                &request.scope,
                self.clock.now(),
            )
            .await
    }

    pub async fn remember_consent(
        &self,
        request: &ValidRequest,
        user_id: &str,
    ) -> Result<(), StoreError> {
        let expires_at = self.clock.now() + CONSENT_TTL;
        self.store
            .grant_consent(user_id, &request.client.id, &request.scope, expires_at)
            .await
    }

    /// Issues the single-use code for an approved request, in the browser
    /// session's credential epoch.
    pub async fn approve(
        &self,
        request: &ValidRequest,
        user_id: &str,
        epoch: u64,
    ) -> Result<String, GrantError> {
        issue_code(
            &self.grants,
            AuthorizationRequest {
                client: &request.client,
                user_id,
                epoch,
                redirect_uri: request
                    .redirect_uri_given
                    .then_some(request.redirect_uri.as_str()),
                scope: &request.scope,
                code_challenge: request.code_challenge.as_deref(),
                code_challenge_method: request.code_challenge_method.as_deref(),
            },
        )
        .await
    }
}
