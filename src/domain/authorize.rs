//! The authorization endpoint's rules (RFC 6749 §4.1, RFC 7636, RFC 9700):
//! which requests may proceed, which errors go back to the client, and
//! which must never redirect; pushed requests (RFC 9126, `par.rs`) are
//! validated here by the same rules, when pushed and again when used.

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::clients::ClientService;
use crate::domain::grants::{AuthorizationRequest, Grants, Params, issue_code};
use crate::domain::par::{
    PUSHED_REQUEST_GONE, Pushed, PushedRequests, RequestUri, is_thumbprint, request_params,
};
use crate::domain::pkce::{self, ChallengeError};
use crate::domain::scope;
use crate::domain::users::SignedIn;
use crate::store::{ClientRecord, StoreError, TokenStore};

/// How long a remembered consent lasts, in seconds.
pub const CONSENT_TTL: i64 = 30 * 24 * 3600;

/// The window (seconds) in which one approval of a user, client and scope
/// is recorded as an audit event.
const CONSENT_EVENT_WINDOW: u64 = 15 * 60;

/// The parameters of an authorization request that the pages carry along
/// (through the sign-in and consent forms, to be validated again).
pub const REQUEST_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "nonce",
    "max_age",
    "login_hint",
    "id_token_hint",
    "response_mode",
    "display",
    "ui_locales",
    "claims_locales",
    "acr_values",
    "dpop_jkt",
];

/// `prompt` (OpenID Connect Core §3.1.2.1), a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prompt {
    /// `none`: never show a page; fail with `login_required` /
    /// `consent_required` (it comes alone).
    pub none: bool,
    /// `login` or `select_account`: ask for the password even with a
    /// session (one browser holds one account here, so choosing one is
    /// signing in).
    pub login: bool,
    /// `consent`: ask for consent even when it is remembered.
    pub consent: bool,
}

/// How the authorization response reaches the client (OAuth 2.0 Multiple
/// Response Types §2.1, Form Post Response Mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    FormPost,
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
        response_mode: ResponseMode,
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
    /// OpenID Connect `nonce`, echoed in the ID token.
    pub nonce: Option<String>,
    /// Seconds since sign-in after which the user must sign in again.
    pub max_age: Option<i64>,
    /// An email to prefill on the sign-in page.
    pub login_hint: Option<String>,
    /// The `sub` of a valid `id_token_hint`: the user the client expects.
    pub hinted_user: Option<String>,
    pub response_mode: ResponseMode,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code is bound to.
    pub dpop_jkt: Option<String>,
    /// The `request_uri` the request was pushed under (RFC 9126), taken
    /// when the code is issued.
    pub pushed: Option<RequestUri>,
}

impl ValidRequest {
    /// An error answered at the client's redirect URI.
    pub fn redirect_error(&self, error: &'static str, description: &'static str) -> AuthorizeError {
        AuthorizeError::Redirect {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            response_mode: self.response_mode,
            error,
            description,
        }
    }
}

/// `prompt` as a space-separated set (Core §3.1.2.1); `None` when a value
/// is unknown or `none` comes with another.
fn parse_prompt(raw: Option<&str>) -> Option<Prompt> {
    let values: Vec<&str> = raw
        .unwrap_or("")
        .split(' ')
        .filter(|v| !v.is_empty())
        .collect();
    let mut prompt = Prompt::default();
    for value in &values {
        match *value {
            "none" => prompt.none = true,
            "login" | "select_account" => prompt.login = true,
            "consent" => prompt.consent = true,
            _ => return None,
        }
    }
    (!prompt.none || values.len() == 1).then_some(prompt)
}

/// Where the parameters being validated come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The browser's own query or form: a client that must push its
    /// requests is refused.
    Browser,
    /// A pushed request (at `/par`, or read back at `/authorize`).
    Pushed,
}

/// Validates and approves authorization requests.
pub struct Authorizer {
    clients: Arc<ClientService>,
    grants: Arc<Grants>,
    store: Arc<dyn TokenStore>,
    clock: Clock,
    audit: Arc<crate::domain::audit::Audit>,
    pushed: PushedRequests,
    /// `TESSERA_REQUIRE_PAR`: every client must push its requests.
    require_par: bool,
}

impl Authorizer {
    pub fn new(
        clients: Arc<ClientService>,
        grants: Arc<Grants>,
        store: Arc<dyn TokenStore>,
        clock: Clock,
        audit: Arc<crate::domain::audit::Audit>,
    ) -> Self {
        Self {
            clients,
            grants,
            pushed: PushedRequests::new(store.clone(), clock.clone()),
            store,
            clock,
            audit,
            require_par: false,
        }
    }

    /// Requires pushed authorization requests of every client (RFC 9126
    /// §5, `TESSERA_REQUIRE_PAR`).
    pub fn require_par(mut self, required: bool) -> Self {
        self.require_par = required;
        self
    }

    /// Whether `client` must push its requests (RFC 9126 §5 and §6).
    fn par_required(&self, client: &ClientRecord) -> bool {
        self.require_par || client.require_pushed_authorization_requests
    }

    /// A request as `/authorize` receives it: the parameters of a pushed
    /// request when it names one of ours in `request_uri` (with the
    /// `client_id` that pushed it; every other parameter is ignored),
    /// else its own parameters.
    pub async fn validate(&self, params: &Params) -> Result<ValidRequest, AuthorizeError> {
        self.validate_as(params, false).await
    }

    /// [`validate`](Self::validate) for the browser opening `/authorize`
    /// (`GET`): a pushed request is given the time to sign in from now.
    pub async fn open(&self, params: &Params) -> Result<ValidRequest, AuthorizeError> {
        self.validate_as(params, true).await
    }

    async fn validate_as(
        &self,
        params: &Params,
        opening: bool,
    ) -> Result<ValidRequest, AuthorizeError> {
        let Some(uri) = params
            .get("request_uri")
            .map(String::as_str)
            .and_then(RequestUri::parse)
        else {
            return self.check(params, Origin::Browser).await;
        };
        let client_id = params.get("client_id").ok_or(AuthorizeError::Page(
            "The request names no application (client_id is missing).",
        ))?;
        let pushed = if opening {
            self.pushed.open(&uri, client_id).await?
        } else {
            self.pushed.find(&uri, client_id).await?
        };
        let pushed = pushed.ok_or(AuthorizeError::Page(PUSHED_REQUEST_GONE))?;
        let mut request = self.check(&pushed, Origin::Pushed).await?;
        request.pushed = Some(uri);
        Ok(request)
    }

    /// Validates a pushed request of the authenticated `client` by the
    /// rules of `/authorize` and stores it (RFC 9126 §2.1): only the
    /// parameters of an authorization request are kept, with the client's
    /// own id. `dpop_jkt` is the proof's key, if the push came with one.
    pub async fn push(
        &self,
        client: &ClientRecord,
        form: &Params,
        dpop_jkt: Option<String>,
    ) -> Result<Pushed, AuthorizeError> {
        let mut params = request_params(form);
        params.insert("client_id".to_owned(), client.id.clone());
        match dpop_jkt {
            Some(jkt) => params.insert("dpop_jkt".to_owned(), jkt),
            None => params.remove("dpop_jkt"),
        };
        self.check(&params, Origin::Pushed).await?;
        Ok(self.pushed.store(&client.id, params).await?)
    }

    /// Counts a push against the public clients' limit (see
    /// [`PUBLIC_PUSHES`](crate::domain::par::PUBLIC_PUSHES)).
    pub async fn admit_push(
        &self,
        client: &ClientRecord,
        from: std::net::IpAddr,
    ) -> Result<(), crate::domain::par::PushError> {
        self.pushed.admit(client, from).await
    }

    /// Checks the client and redirect URI first (errors there never
    /// redirect), then everything else (errors there go back to the client).
    async fn check(&self, params: &Params, origin: Origin) -> Result<ValidRequest, AuthorizeError> {
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
            prompt: Prompt::default(),
            nonce: get("nonce"),
            max_age: None,
            login_hint: get("login_hint"),
            hinted_user: None,
            response_mode: ResponseMode::Query,
            dpop_jkt: get("dpop_jkt"),
            pushed: None,
        };
        request.response_mode = match get("response_mode").as_deref() {
            None | Some("query") => ResponseMode::Query,
            Some("form_post") => ResponseMode::FormPost,
            Some(_) => {
                return Err(request.redirect_error(
                    "invalid_request",
                    "response_mode must be query or form_post",
                ));
            }
        };
        // OpenID Connect Core §6: request objects are not supported.
        if params.contains_key("request") {
            return Err(request
                .redirect_error("request_not_supported", "request objects are not supported"));
        }
        // Ours were read above: another is a request object by reference.
        if params.contains_key("request_uri") {
            return Err(
                request.redirect_error("request_uri_not_supported", "request_uri is not supported")
            );
        }
        if origin == Origin::Browser && self.par_required(&request.client) {
            return Err(request.redirect_error(
                "invalid_request",
                "pushed authorization requests are required for this client",
            ));
        }
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
        request.prompt = parse_prompt(get("prompt").as_deref())
            .ok_or_else(|| request.redirect_error("invalid_request", "prompt is invalid: none cannot be combined, and only none, login, consent and select_account exist"))?;
        if let Some(raw) = get("max_age") {
            request.max_age = Some(raw.parse::<u32>().map(i64::from).map_err(|_| {
                request.redirect_error("invalid_request", "max_age must be a number of seconds")
            })?);
        }
        if let Some(hint) = get("id_token_hint") {
            let sub = self
                .grants
                .tokens
                .id_token_subject(&hint, &request.client.id)
                .await;
            request.hinted_user = Some(sub.ok_or_else(|| {
                request.redirect_error(
                    "invalid_request",
                    "id_token_hint is not an ID token of this server",
                )
            })?);
        }
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
        if request
            .dpop_jkt
            .as_deref()
            .is_some_and(|jkt| !is_thumbprint(jkt))
        {
            return Err(request.redirect_error(
                "invalid_request",
                "dpop_jkt must be a base64url SHA-256 JWK thumbprint (43 characters)",
            ));
        }
        Ok(request)
    }

    /// Whether the user already agreed to this exact request (first-party
    /// clients never ask; `prompt=consent` always asks the others).
    pub async fn consented(
        &self,
        request: &ValidRequest,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        if request.client.first_party {
            return Ok(true);
        }
        if request.prompt.consent {
            return Ok(false);
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

    /// Remembers the user's approval (and records `consent_granted`).
    pub async fn remember_consent(
        &self,
        request: &ValidRequest,
        user_id: &str,
        ip: std::net::IpAddr,
    ) -> Result<(), StoreError> {
        use crate::domain::audit::{Event, EventType};
        let now = self.clock.now();
        self.store
            .grant_consent(
                user_id,
                &request.client.id,
                &request.scope,
                now,
                now + CONSENT_TTL,
            )
            .await?;
        // One event per user, client and scope in 15 minutes: approving
        // the same request in a loop does not fill the event store.
        let key = format!(
            "audit-consent:{user_id}:{}:{}",
            request.client.id, request.scope
        );
        if self.store.hit(&key, CONSENT_EVENT_WINDOW, now).await? == 1 {
            let event = Event::new(EventType::ConsentGranted)
                .user(user_id)
                .client(&request.client.id)
                .ip(ip)
                .detail(serde_json::json!({ "scope": request.scope }));
            self.audit.record(event).await;
        }
        Ok(())
    }

    /// Whether the browser session can answer this request, or the user
    /// must sign in (again): `prompt=login`, a session older than `max_age`
    /// (`max_age=0` always), or a session of another user than the
    /// `id_token_hint` names.
    pub fn session_suits(&self, request: &ValidRequest, session: &SignedIn) -> bool {
        if request.prompt.login {
            return false;
        }
        if let Some(max_age) = request.max_age
            && (max_age == 0 || self.clock.now() - session.auth_time > max_age)
        {
            return false;
        }
        self.is_hinted_user(request, session)
    }

    /// Whether the session's user is the one the `id_token_hint` names (or
    /// there is no hint).
    pub fn is_hinted_user(&self, request: &ValidRequest, session: &SignedIn) -> bool {
        request
            .hinted_user
            .as_deref()
            .is_none_or(|sub| sub == session.user.id)
    }

    /// Issues the single-use code for an approved request, in the browser
    /// session (its credential epoch, id and sign-in time). A pushed
    /// request is taken first: of two approvals of one `request_uri`
    /// (a reload, a replay, a race), only one gets a code.
    pub async fn approve(
        &self,
        request: &ValidRequest,
        session: &SignedIn,
    ) -> Result<String, AuthorizeError> {
        if let Some(uri) = &request.pushed
            && !self.pushed.take(uri, &request.client.id).await?
        {
            return Err(AuthorizeError::Page(PUSHED_REQUEST_GONE));
        }
        let issued = issue_code(
            &self.grants,
            AuthorizationRequest {
                client: &request.client,
                user_id: &session.user.id,
                epoch: session.epoch,
                session_id: &session.session_id,
                auth_time: session.auth_time,
                nonce: request.nonce.as_deref(),
                redirect_uri: request
                    .redirect_uri_given
                    .then_some(request.redirect_uri.as_str()),
                scope: &request.scope,
                code_challenge: request.code_challenge.as_deref(),
                code_challenge_method: request.code_challenge_method.as_deref(),
                dpop_jkt: request.dpop_jkt.as_deref(),
            },
        )
        .await;
        issued.map_err(|e| match e {
            crate::domain::GrantError::Store(e) => AuthorizeError::Store(e),
            _ => request.redirect_error("server_error", "the code could not be issued"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_is_a_set() {
        let both = parse_prompt(Some("login consent")).unwrap();
        assert!(both.login && both.consent && !both.none);
        assert!(parse_prompt(Some("select_account")).unwrap().login);
        assert!(parse_prompt(Some("none")).unwrap().none);
        assert_eq!(parse_prompt(None), Some(Prompt::default()));
        // `none` comes alone; unknown values are refused.
        assert_eq!(parse_prompt(Some("none login")), None);
        assert_eq!(parse_prompt(Some("consent banana")), None);
    }
}
