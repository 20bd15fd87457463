//! OpenID Connect as relying parties see it (docs/api.md, OpenID Connect).
//!
//! Two RP libraries from other ecosystems run the whole journey against a
//! Tessera whose issuer is its own address: openid-client on Node
//! (`tests/rp/openid_client_rp.mjs`) and Authlib on Python
//! (`tests/rp/authlib_rp.py`). Each discovers the provider, signs in through
//! the HTML pages with a headless cookie-keeping user agent, verifies the ID
//! token against the JWKS, calls UserInfo, refreshes, logs out at the
//! end-session endpoint and checks with `prompt=none` that the browser
//! session is gone. The RP's own web server, registered as the client's
//! `backchannel_logout_uri`, checks the logout token that follows.
//!
//! Then the negative cases of the OpenID Foundation's Basic OP test plan,
//! over plain HTTP.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tessera::domain::clients::NewClient;
use tokio::process::Command;

use crate::common::{Backend, PASSWORD, TestApp, TestUser, body, venv_python};

/// The scopes every client here is registered with.
const SCOPES: &[&str] = &["openid", "profile", "email", "phone", "offline_access"];

/// Sets the logout registrations of OpenID Connect: the post-logout
/// redirect URIs and the back-channel logout URI.
fn with_logout(client: NewClient, post_logout: &str, backchannel: Option<&str>) -> NewClient {
    NewClient {
        post_logout_redirect_uris: vec![post_logout.to_owned()],
        backchannel_logout_uri: backchannel.map(str::to_owned),
        ..client
    }
}

// ---------------------------------------------------------------------------
// The relying parties
// ---------------------------------------------------------------------------

/// A relying-party library under test.
#[derive(Clone, Copy, Debug)]
enum Rp {
    OpenidClient,
    Authlib,
}

impl Rp {
    /// The command that runs this RP's journey script.
    fn command(self) -> Command {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        match self {
            Rp::OpenidClient => {
                assert!(
                    repo.join("tests/rp/node_modules/openid-client").exists(),
                    "openid-client is missing: run `bash tests/run.sh`, which installs tests/rp"
                );
                let mut command = Command::new("node");
                command.arg(repo.join("tests/rp/openid_client_rp.mjs"));
                command
            }
            Rp::Authlib => {
                let mut command = Command::new(venv_python());
                command.arg(repo.join("tests/rp/authlib_rp.py"));
                command
            }
        }
    }
}

/// How the client of a journey is registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    /// Public, first party: PKCE only, no consent page; `response_mode=query`.
    PublicFirstParty,
    /// Confidential (`client_secret_basic`), third party: the consent page;
    /// `response_mode=form_post`.
    ConfidentialThirdParty,
}

/// What a back-channel logout receiver was sent.
struct Delivery {
    content_type: Option<String>,
    form: HashMap<String, String>,
}

/// The relying party's own web server. Only its back-channel logout
/// endpoint is ever called (by Tessera); the callback and post-logout URIs
/// are read by the RP from the redirects, never fetched.
struct RpSite {
    base: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl RpSite {
    async fn start() -> Self {
        let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/backchannel-logout",
                axum::routing::post(
                    |State(deliveries): State<Arc<Mutex<Vec<Delivery>>>>,
                     headers: HeaderMap,
                     raw: Bytes| async move {
                        let content_type = headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let form = url::form_urlencoded::parse(&raw).into_owned().collect();
                        deliveries
                            .lock()
                            .unwrap()
                            .push(Delivery { content_type, form });
                        // Back-Channel Logout 1.0 §2.8: 200 on success, never cached.
                        ([("cache-control", "no-store")], "")
                    },
                ),
            )
            .with_state(deliveries.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, deliveries }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The first `logout_token` POSTed here. The logout sends it in the
    /// background, so this waits for it; the deadline only matters when
    /// none ever comes.
    async fn logout_token(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(delivery) = self.deliveries.lock().unwrap().first() {
                let content_type = delivery.content_type.as_deref().unwrap_or("");
                assert!(
                    content_type.starts_with("application/x-www-form-urlencoded"),
                    "the logout token is form-encoded, not {content_type}"
                );
                return delivery
                    .form
                    .get("logout_token")
                    .expect("a logout_token form field")
                    .clone();
            }
            assert!(
                Instant::now() < deadline,
                "no logout_token reached the back-channel logout URI within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs an RP script to its end; its one JSON line of what it saw.
async fn run_rp(mut command: Command) -> Value {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the RP finished within 2 minutes")
        .expect("the RP starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the RP failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line from the RP: {stdout}{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// The JSON Web Key Set of the app, as an RP fetches it.
async fn jwks(app: &TestApp) -> jsonwebtoken::jwk::JwkSet {
    serde_json::from_value(body(app.get("/.well-known/jwks.json").await).await).unwrap()
}

/// Verifies a logout token (Back-Channel Logout 1.0 §2.4, §2.6) as an RP
/// must, through the JWKS; returns its claims.
async fn verify_logout_token(app: &TestApp, token: &str, client_id: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"), "typ");
    let kid = header.kid.expect("a kid");
    let jwks = jwks(app).await;
    let jwk = jwks
        .find(&kid)
        .expect("the logout token's kid is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[&app.config.issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["iss", "aud", "iat", "exp", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("the logout token verifies")
        .claims;
    assert!(
        claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object(),
        "the backchannel-logout event in {claims}"
    );
    assert!(
        claims["jti"].is_string() && claims["iat"].is_i64(),
        "{claims}"
    );
    assert!(claims.get("nonce").is_none(), "a logout token has no nonce");
    claims
}

/// `aud` holds `client_id` (a string or an array of strings).
fn audience_has(aud: &Value, client_id: &str) -> bool {
    aud == client_id
        || aud
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == client_id))
}

/// One user, one client, one RP: the whole journey, then the logout token.
async fn journey(app: &TestApp, rp: Rp, kind: ClientKind) {
    let user = app.user("rp").await;
    let site = RpSite::start().await;
    let (callback, logged_out) = (site.url("/callback"), site.url("/logged-out"));
    let first_party = kind == ClientKind::PublicFirstParty;
    let (client_id, secret) = app
        .client(with_logout(
            NewClient {
                name: format!("{rp:?} RP"),
                public: first_party,
                first_party,
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                redirect_uris: vec![callback.clone()],
                scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
                ..NewClient::default()
            },
            &logged_out,
            Some(&site.url("/backchannel-logout")),
        ))
        .await;

    let mut command = rp.command();
    command
        .env("ISSUER", &app.config.issuer)
        .env("CLIENT_ID", &client_id)
        .env("REDIRECT_URI", &callback)
        .env("POST_LOGOUT_REDIRECT_URI", &logged_out)
        .env("EMAIL", &user.email)
        .env("PASSWORD", PASSWORD)
        .env_remove("CLIENT_SECRET")
        .env_remove("RP_VERBOSE")
        .env(
            "RESPONSE_MODE",
            if first_party { "query" } else { "form_post" },
        );
    if let Some(secret) = &secret {
        command.env("CLIENT_SECRET", secret);
    }
    let seen = run_rp(command).await;

    let context = format!("{rp:?} with a {kind:?} client saw {seen}");
    let claims = &seen["claims"];
    assert_eq!(claims["iss"], app.config.issuer, "{context}");
    assert_eq!(claims["sub"], user.id, "{context}");
    assert!(audience_has(&claims["aud"], &client_id), "{context}");
    let sid = claims["sid"].as_str().expect("sid").to_owned();
    assert_eq!(seen["refreshed_claims"]["sub"], user.id, "{context}");
    assert_eq!(seen["userinfo"]["sub"], user.id, "{context}");
    assert_eq!(seen["userinfo"]["email"], user.email, "{context}");
    assert_eq!(seen["userinfo"]["name"], "Test User", "{context}");
    let pages: Vec<&str> = seen["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let expected: &[&str] = if first_party {
        &["login", "redirect"]
    } else {
        &["login", "consent", "form_post"]
    };
    assert_eq!(pages, expected, "{context}");
    assert!(
        seen["logout"]["location"]
            .as_str()
            .unwrap()
            .starts_with(&logged_out),
        "{context}"
    );
    assert_eq!(seen["refresh_after_logout"], "invalid_grant", "{context}");
    assert_eq!(seen["after_logout"], "login_required", "{context}");

    let token = site.logout_token().await;
    let logout = verify_logout_token(app, &token, &client_id).await;
    assert_eq!(
        logout["sid"], sid,
        "the logout names the ID token's session"
    );
    assert_eq!(logout["sub"], user.id);
}

async fn rp_journeys(rp: Rp, backend: Backend) {
    let app = TestApp::spawn_as_issuer(backend).await;
    journey(&app, rp, ClientKind::PublicFirstParty).await;
    journey(&app, rp, ClientKind::ConfidentialThirdParty).await;
}

#[tokio::test]
async fn openid_client_on_sqlite() {
    rp_journeys(Rp::OpenidClient, Backend::Sqlite).await;
}

#[tokio::test]
async fn openid_client_on_redis_and_mongodb() {
    rp_journeys(Rp::OpenidClient, Backend::Mongo).await;
}

#[tokio::test]
async fn authlib_on_sqlite() {
    rp_journeys(Rp::Authlib, Backend::Sqlite).await;
}

#[tokio::test]
async fn authlib_on_redis_and_mongodb() {
    rp_journeys(Rp::Authlib, Backend::Mongo).await;
}

// ---------------------------------------------------------------------------
// The negative cases of the Basic OP plan, over HTTP
// ---------------------------------------------------------------------------

const REDIRECT: &str = "https://rp.example/callback";
const POST_LOGOUT: &str = "https://rp.example/logged-out";
const STATE: &str = "oidc-state";
const NONCE: &str = "oidc-nonce";
const VERIFIER: &str = "an-oidc-code-verifier-long-enough-for-pkce-0123456789";

fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
}

/// An OpenID authentication request of `client_id`, with `extra` added or
/// replacing a parameter (an empty value removes it).
fn oidc_query(client_id: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut query: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email"),
        ("state", STATE),
        ("nonce", NONCE),
        ("code_challenge", &challenge()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (name, value) in extra {
        query.retain(|(k, _)| k != name);
        if !value.is_empty() {
            query.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    query
}

/// A public client with every OpenID scope; first party skips consent.
async fn oidc_client(app: &TestApp, first_party: bool) -> String {
    app.client(NewClient {
        name: "OIDC Plan RP".into(),
        public: true,
        first_party,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec![REDIRECT.into()],
        scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        ..NewClient::default()
    })
    .await
    .0
}

/// A response read whole, so a page can be inspected and still acted on.
struct Seen {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Seen {
    async fn of(response: reqwest::Response) -> Self {
        Self {
            status: response.status(),
            headers: response.headers().clone(),
            html: response.text().await.unwrap(),
        }
    }

    /// The 303's target.
    fn location(&self) -> url::Url {
        assert_eq!(
            self.status,
            StatusCode::SEE_OTHER,
            "a redirect, not {}",
            self.html
        );
        url::Url::parse(self.headers["location"].to_str().unwrap()).unwrap()
    }

    /// An HTML page (no redirect) with this status.
    fn assert_page(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.html);
        assert!(self.headers.get("location").is_none(), "never a redirect");
        assert!(
            self.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }

    fn is_login_page(&self) -> bool {
        self.status == StatusCode::OK && self.html.contains("type=\"password\"")
    }
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// HTML character references as minijinja writes them, decoded.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|e| *e < 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The attributes of every `<tag …>` in `html`, values decoded.
fn tags(html: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let open = format!("<{tag}");
    let mut found = Vec::new();
    for chunk in html.split(&open).skip(1) {
        if !chunk.starts_with(|c: char| c.is_whitespace() || c == '>') {
            continue;
        }
        let inner = &chunk[..chunk.find('>').unwrap_or(chunk.len())];
        let mut attrs = HashMap::new();
        let mut rest = inner.trim_start();
        while !rest.is_empty() {
            let name_end = rest
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(rest.len());
            let name = rest[..name_end].to_ascii_lowercase();
            rest = rest[name_end..].trim_start();
            let value = if let Some(after) = rest.strip_prefix('=') {
                let after = after.trim_start();
                let (value, remaining) = match after.chars().next() {
                    Some(q @ ('"' | '\'')) => {
                        let close = after[1..].find(q).map_or(after.len(), |i| i + 1);
                        (&after[1..close], after.get(close + 1..).unwrap_or(""))
                    }
                    _ => {
                        let end = after.find(char::is_whitespace).unwrap_or(after.len());
                        (&after[..end], &after[end..])
                    }
                };
                rest = remaining.trim_start();
                unescape(value)
            } else {
                String::new()
            };
            if !name.is_empty() && name != "/" {
                attrs.insert(name, value);
            }
        }
        found.push(attrs);
    }
    found
}

/// The hidden fields of a page's form, plus `extra`.
fn form_of(html: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = tags(html, "input")
        .into_iter()
        .filter(|a| a.get("type").is_some_and(|t| t == "hidden"))
        .map(|a| {
            (
                a["name"].clone(),
                a.get("value").cloned().unwrap_or_default(),
            )
        })
        .collect();
    for (name, value) in extra {
        fields.retain(|(k, _)| k != name);
        fields.push(((*name).to_owned(), (*value).to_owned()));
    }
    fields
}

/// A cookie-keeping client that follows no redirect: a browser whose every
/// navigation the test inspects.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: app.base.clone(),
        }
    }

    async fn get(&self, path: &str, query: &[(String, String)]) -> Seen {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap();
        Seen::of(response).await
    }

    async fn authorize(&self, query: &[(String, String)]) -> Seen {
        self.get("/authorize", query).await
    }

    async fn post_authorize(&self, form: &[(String, String)]) -> Seen {
        self.post("/authorize", form).await
    }

    /// POSTs `form` to `action` (a path or a URL on this server).
    async fn post(&self, action: &str, form: &[(String, String)]) -> Seen {
        let url = url::Url::parse(&self.base).unwrap().join(action).unwrap();
        let response = self.http.post(url).form(form).send().await.unwrap();
        Seen::of(response).await
    }

    /// Follows the pages from `query` as a person would: signs in when
    /// asked, approves consent when asked. Returns the first answer that is
    /// neither (a redirect to the client, a form_post page, an error).
    async fn sign_in(&self, query: &[(String, String)], user: &TestUser) -> Seen {
        let mut seen = self.authorize(query).await;
        for _ in 0..3 {
            if seen.is_login_page() {
                let form = form_of(
                    &seen.html,
                    &[("email", &user.email), ("password", PASSWORD)],
                );
                seen = self.post_authorize(&form).await;
            } else if seen.status == StatusCode::OK && seen.html.contains("name=\"decision\"") {
                seen = self
                    .post_authorize(&form_of(&seen.html, &[("decision", "approve")]))
                    .await;
            } else {
                return seen;
            }
        }
        panic!("still on a page after signing in: {}", seen.html);
    }

    /// Signs in and returns the code of the redirect to the client.
    async fn code(&self, query: &[(String, String)], user: &TestUser) -> String {
        let target = self.sign_in(query, user).await.location();
        assert!(target.as_str().starts_with(REDIRECT), "{target}");
        assert_eq!(param(&target, "state").as_deref(), Some(STATE));
        param(&target, "code").unwrap_or_else(|| panic!("a code in {target}"))
    }
}

/// Exchanges a code of the public client; the raw response.
async fn exchange(app: &TestApp, client_id: &str, code: &str) -> reqwest::Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// Exchanges a code that must work; the token response.
async fn tokens(app: &TestApp, client_id: &str, code: &str) -> Value {
    let response = exchange(app, client_id, code).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = body(response).await;
    assert!(tokens["id_token"].is_string(), "an ID token: {tokens}");
    tokens
}

/// The claims of a JWT, unverified (the RP journeys verify signatures).
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Asserts a 303 to the client carrying `error` and the request's state.
fn assert_error_redirect(seen: &Seen, error: &str) {
    let target = seen.location();
    assert!(target.as_str().starts_with(REDIRECT), "{target}");
    assert_eq!(param(&target, "error").as_deref(), Some(error), "{target}");
    assert_eq!(param(&target, "state").as_deref(), Some(STATE), "{target}");
    assert!(param(&target, "code").is_none());
}

#[tokio::test]
async fn a_request_without_response_type_is_refused() {
    let app = TestApp::spawn().await;
    let client_id = oidc_client(&app, true).await;
    let seen = Browser::new(&app)
        .authorize(&oidc_query(&client_id, &[("response_type", "")]))
        .await;
    // oidcc-response-type-missing: an error to the client (RFC 6749
    // §4.1.2.1 names either code) or an error page, never a code.
    if seen.status == StatusCode::SEE_OTHER {
        let target = seen.location();
        let error = param(&target, "error").unwrap_or_default();
        assert!(
            ["invalid_request", "unsupported_response_type"].contains(&error.as_str()),
            "{target}"
        );
        assert_error_redirect(&seen, &error);
    } else {
        seen.assert_page(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_a_page_not_a_redirect() {
    let app = TestApp::spawn().await;
    let client_id = oidc_client(&app, true).await;
    let browser = Browser::new(&app);
    for uri in [
        "https://attacker.example/callback",
        "https://rp.example/callback/other",
    ] {
        browser
            .authorize(&oidc_query(&client_id, &[("redirect_uri", uri)]))
            .await
            .assert_page(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let app = TestApp::spawn().await;
    let client_id = oidc_client(&app, true).await;
    let seen = Browser::new(&app)
        .authorize(&oidc_query(&client_id, &[("prompt", "none")]))
        .await;
    assert_error_redirect(&seen, "login_required");
}

#[tokio::test]
async fn prompt_none_with_another_value_is_invalid_request() {
    let app = TestApp::spawn().await;
    let user = app.user("prompt").await;
    let client_id = oidc_client(&app, true).await;
    let browser = Browser::new(&app);
    // Signed in or not, `none` with `login` is a contradiction (OIDC Core §3.1.2.1).
    let query = oidc_query(&client_id, &[("prompt", "none login")]);
    assert_error_redirect(&browser.authorize(&query).await, "invalid_request");
    browser.code(&oidc_query(&client_id, &[]), &user).await;
    assert_error_redirect(&browser.authorize(&query).await, "invalid_request");
}

#[tokio::test]
async fn max_age_older_than_the_sign_in_asks_for_the_password_again() {
    let app = TestApp::spawn().await;
    let user = app.user("max-age").await;
    let client_id = oidc_client(&app, true).await;
    let browser = Browser::new(&app);
    let code = browser.code(&oidc_query(&client_id, &[]), &user).await;
    let first = claims_of(
        tokens(&app, &client_id, &code).await["id_token"]
            .as_str()
            .unwrap(),
    );
    let first_auth = first["auth_time"].as_i64().expect("auth_time");

    // A generous max_age: the session is young enough, no page.
    let young = browser
        .authorize(&oidc_query(&client_id, &[("max_age", "3600")]))
        .await;
    assert!(param(&young.location(), "code").is_some());

    app.clock.advance(2);
    let old = browser
        .authorize(&oidc_query(&client_id, &[("max_age", "1")]))
        .await;
    assert!(
        old.is_login_page(),
        "a 2 s old sign-in with max_age=1 asks for the password"
    );
    let code = browser
        .code(&oidc_query(&client_id, &[("max_age", "1")]), &user)
        .await;
    let again = claims_of(
        tokens(&app, &client_id, &code).await["id_token"]
            .as_str()
            .unwrap(),
    );
    let auth_time = again["auth_time"].as_i64().expect("auth_time with max_age");
    assert!(auth_time >= first_auth + 2, "{auth_time} vs {first_auth}");
}

#[tokio::test]
async fn an_id_token_hint_for_another_user_with_prompt_none_is_login_required() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user("hint-a").await, app.user("hint-b").await);
    let client_id = oidc_client(&app, true).await;
    let (alices, bobs) = (Browser::new(&app), Browser::new(&app));
    let code = alices.code(&oidc_query(&client_id, &[]), &alice).await;
    let alice_hint = tokens(&app, &client_id, &code).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = bobs.code(&oidc_query(&client_id, &[]), &bob).await;
    let bob_hint = tokens(&app, &client_id, &code).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let silent =
        |hint: &str| oidc_query(&client_id, &[("prompt", "none"), ("id_token_hint", hint)]);
    assert_error_redirect(
        &alices.authorize(&silent(&bob_hint)).await,
        "login_required",
    );
    // Her own hint is the same user: a code, silently.
    let own = alices.authorize(&silent(&alice_hint)).await;
    assert!(param(&own.location(), "code").is_some());
}

#[tokio::test]
async fn a_code_used_twice_revokes_the_tokens_of_its_first_use() {
    let app = TestApp::spawn().await;
    let user = app.user("reuse").await;
    let client_id = oidc_client(&app, true).await;
    let code = Browser::new(&app)
        .code(&oidc_query(&client_id, &[]), &user)
        .await;
    let first = tokens(&app, &client_id, &code).await;
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_auth("/userinfo", access).await.status(),
        StatusCode::OK
    );

    let replay = exchange(&app, &client_id, &code).await;
    crate::common::assert_oauth_error(replay, 400, "invalid_grant").await;
    // RFC 6749 §4.1.2: what the code gave is revoked.
    assert_eq!(
        app.get_auth("/userinfo", access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_auth("/api/users/me", access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let refresh = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", first["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    crate::common::assert_oauth_error(refresh, 400, "invalid_grant").await;
}

#[tokio::test]
async fn request_objects_are_not_supported() {
    let app = TestApp::spawn().await;
    let client_id = oidc_client(&app, true).await;
    let browser = Browser::new(&app);
    // An unsigned request object is still one: refused, never half-read.
    let object = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"client_id":"{client_id}","state":"{STATE}"}}"#
        ))
    );
    let seen = browser
        .authorize(&oidc_query(&client_id, &[("request", &object)]))
        .await;
    assert_error_redirect(&seen, "request_not_supported");
    let seen = browser
        .authorize(&oidc_query(
            &client_id,
            &[("request_uri", "https://rp.example/request.jwt")],
        ))
        .await;
    assert_error_redirect(&seen, "request_uri_not_supported");
}

#[tokio::test]
async fn an_unregistered_post_logout_redirect_uri_gets_a_page_not_a_redirect() {
    let app = TestApp::spawn().await;
    let user = app.user("logout-uri").await;
    let (client_id, _) = app
        .client(with_logout(
            NewClient {
                name: "OIDC Plan RP".into(),
                public: true,
                first_party: true,
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                redirect_uris: vec![REDIRECT.into()],
                scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
                ..NewClient::default()
            },
            POST_LOGOUT,
            None,
        ))
        .await;
    let browser = Browser::new(&app);
    let code = browser.code(&oidc_query(&client_id, &[]), &user).await;
    let hint = tokens(&app, &client_id, &code).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let logout = |uri: &str| {
        [
            ("id_token_hint", hint.as_str()),
            ("post_logout_redirect_uri", uri),
            ("state", "logout-state"),
            ("client_id", client_id.as_str()),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    };
    for uri in [
        "https://attacker.example/logged-out",
        "https://rp.example/logged-out/other",
    ] {
        browser
            .get("/logout", &logout(uri))
            .await
            .assert_page(StatusCode::BAD_REQUEST);
    }
    // The registered one, exactly, is where the logout goes.
    let target = browser
        .get("/logout", &logout(POST_LOGOUT))
        .await
        .location();
    assert!(target.as_str().starts_with(POST_LOGOUT), "{target}");
    assert_eq!(param(&target, "state").as_deref(), Some("logout-state"));
}

#[tokio::test]
async fn form_post_answers_an_auto_submitting_page_with_a_nonce_csp() {
    let app = TestApp::spawn().await;
    let user = app.user("form-post").await;
    let client_id = oidc_client(&app, true).await;
    let browser = Browser::new(&app);
    let query = oidc_query(&client_id, &[("response_mode", "form_post")]);
    // Once after the sign-in page, once silently from the session.
    for seen in [
        browser.sign_in(&query, &user).await,
        browser.authorize(&query).await,
    ] {
        seen.assert_page(StatusCode::OK);
        let csp = seen.headers["content-security-policy"].to_str().unwrap();
        let nonce = csp
            .split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix("script-src"))
            .and_then(|sources| {
                sources
                    .split_whitespace()
                    .find_map(|s| s.strip_prefix("'nonce-")?.strip_suffix('\''))
            })
            .unwrap_or_else(|| panic!("a script-src nonce in {csp}"));
        assert!(
            tags(&seen.html, "script")
                .iter()
                .any(|s| s.get("nonce").map(String::as_str) == Some(nonce)),
            "the auto-submit script carries the CSP nonce"
        );
        let forms = tags(&seen.html, "form");
        let form = forms
            .iter()
            .find(|f| f.get("action").map(String::as_str) == Some(REDIRECT))
            .unwrap_or_else(|| panic!("a form to the redirect URI: {}", seen.html));
        assert_eq!(
            form.get("method")
                .map(|m| m.to_ascii_lowercase())
                .as_deref(),
            Some("post")
        );
        let fields: HashMap<String, String> = form_of(&seen.html, &[]).into_iter().collect();
        assert_eq!(fields.get("state").map(String::as_str), Some(STATE));
        assert_eq!(fields.get("iss"), Some(&app.config.issuer));
        let code = fields.get("code").expect("a code field");
        tokens(&app, &client_id, code).await;
    }
}

#[tokio::test]
async fn logout_without_a_hint_asks_first_and_checks_csrf() {
    let app = TestApp::spawn().await;
    let user = app.user("logout-confirm").await;
    let (client_id, _) = app
        .client(with_logout(
            NewClient {
                name: "OIDC Plan RP".into(),
                public: true,
                first_party: true,
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                redirect_uris: vec![REDIRECT.into()],
                scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
                ..NewClient::default()
            },
            POST_LOGOUT,
            None,
        ))
        .await;
    let browser = Browser::new(&app);
    browser.code(&oidc_query(&client_id, &[]), &user).await;
    let silent = oidc_query(&client_id, &[("prompt", "none")]);
    let request = [
        ("client_id", client_id.as_str()),
        ("post_logout_redirect_uri", POST_LOGOUT),
        ("state", "logout-state"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));

    // RP-Initiated Logout §2: without a hint the OP asks the user first,
    // and asking ends nothing.
    let page = browser.get("/logout", &request).await;
    page.assert_page(StatusCode::OK);
    assert!(param(&browser.authorize(&silent).await.location(), "code").is_some());
    let form = tags(&page.html, "form")
        .into_iter()
        .find(|f| {
            f.get("method")
                .is_some_and(|m| m.eq_ignore_ascii_case("post"))
        })
        .unwrap_or_else(|| panic!("a POST form on the confirmation page: {}", page.html));
    let action = form
        .get("action")
        .cloned()
        .unwrap_or_else(|| "/logout".into());
    let mut fields = form_of(&page.html, &[]);
    assert!(
        fields.iter().any(|(k, _)| k.contains("csrf")),
        "the confirmation form carries a CSRF token: {fields:?}"
    );
    // The button that confirms: the first submit button of the form, with
    // its name and value when it has them.
    if let Some(button) = tags(&page.html, "button")
        .into_iter()
        .find(|b| b.get("type").is_none_or(|t| t == "submit"))
        && let (Some(name), Some(value)) = (button.get("name"), button.get("value"))
    {
        fields.push((name.clone(), value.clone()));
    }

    // Without its CSRF token the confirmation is refused and ends nothing.
    let forged: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| !k.contains("csrf"))
        .cloned()
        .collect();
    let refused = browser.post(&action, &forged).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert!(refused.headers.get("location").is_none());
    assert!(param(&browser.authorize(&silent).await.location(), "code").is_some());

    // Confirmed: the registered URI with the state, and the session is gone.
    let target = browser.post(&action, &fields).await.location();
    assert!(target.as_str().starts_with(POST_LOGOUT), "{target}");
    assert_eq!(param(&target, "state").as_deref(), Some("logout-state"));
    assert_error_redirect(&browser.authorize(&silent).await, "login_required");
}

/// RP-Initiated Logout §2: a hint that does not name this browser's user
/// must not sign it out without asking — a link carrying the attacker's own
/// ID token cannot end a victim's session.
#[tokio::test]
async fn another_users_id_token_hint_does_not_sign_a_victim_out() {
    let app = TestApp::spawn().await;
    let victim = app.user("logout-victim").await;
    let attacker = app.user("logout-attacker").await;
    let client_id = oidc_client(&app, true).await;
    let browser = Browser::new(&app);
    browser.code(&oidc_query(&client_id, &[]), &victim).await;
    let attacker_tokens = body(app.login(&attacker.email, PASSWORD).await).await;
    let hint = attacker_tokens["id_token"].as_str().expect("an ID token");
    let page = browser
        .get("/logout", &[("id_token_hint".to_owned(), hint.to_owned())])
        .await;
    page.assert_page(StatusCode::OK);
    assert!(
        page.html.contains("csrf"),
        "a confirmation page: {}",
        page.html
    );
    let silent = oidc_query(&client_id, &[("prompt", "none")]);
    assert!(
        param(&browser.authorize(&silent).await.location(), "code").is_some(),
        "the victim is still signed in"
    );
}

/// An `id_token_hint` issued to another client is not a hint for this one.
#[tokio::test]
async fn an_id_token_hint_of_another_client_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.user("hint-aud").await;
    let client_id = oidc_client(&app, true).await;
    let other = body(app.login(&user.email, PASSWORD).await).await;
    let hint = other["id_token"].as_str().expect("an ID token");
    let browser = Browser::new(&app);
    let seen = browser
        .authorize(&oidc_query(&client_id, &[("id_token_hint", hint)]))
        .await;
    assert_error_redirect(&seen, "invalid_request");
}

/// Hostile and malformed input at the OpenID endpoints: clear errors, no
/// 500, no redirect.
#[tokio::test]
async fn hostile_input_at_userinfo_and_logout() {
    let app = TestApp::spawn().await;
    let user = app.user("hostile-oidc").await;
    // /userinfo: no token, a garbage token, an oversized one, a token in both
    // places, a token without `openid`.
    for request in [
        app.http.get(app.url("/userinfo")),
        app.http.get(app.url("/userinfo")).bearer_auth("x.y.z"),
        app.http
            .get(app.url("/userinfo"))
            .bearer_auth("a".repeat(9000)),
        app.http
            .post(app.url("/userinfo"))
            .bearer_auth(&user.access_token)
            .form(&[("access_token", user.access_token.as_str())]),
    ] {
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert!(answer.headers().contains_key("www-authenticate"));
    }
    let form = app
        .http
        .post(app.url("/userinfo"))
        .form(&[("access_token", user.access_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert_eq!(body(form).await["sub"], user.id.as_str());
    // /logout: a forged hint, an oversized one, an unknown client, garbage
    // bytes, a repeated parameter — pages, never a redirect, never a 500.
    let forged = format!(
        "{}.e30.AAAA",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"x"}"#)
    );
    for query in [
        vec![("id_token_hint", forged.as_str())],
        vec![("id_token_hint", &*"a".repeat(20_000))],
        vec![
            ("client_id", "nope"),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ],
        vec![("post_logout_redirect_uri", "https://evil.example/")],
    ] {
        let answer = app
            .http
            .get(app.url("/logout"))
            .query(&query)
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_client_error(),
            "{query:?}: {}",
            answer.status()
        );
        assert!(answer.headers().get("location").is_none());
    }
    let repeated = app
        .http
        .get(format!("{}?state=a&state=b", app.url("/logout")))
        .send()
        .await
        .unwrap();
    assert_eq!(repeated.status(), StatusCode::BAD_REQUEST);
    let garbage = app
        .http
        .post(app.url("/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
}
