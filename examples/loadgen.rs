//! Closed-loop load generator for Tessera (and peers with the same endpoints).
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:3000 \
//!     --scenario refresh-chain --concurrency 64 --duration 10 --warmup 2
//! ```
//!
//! Scenarios: `login`, `refresh-chain` (each virtual user always presents its
//! newest refresh token), `refresh-chain-dpop` (the same with a DPoP-bound
//! family: each user has an ES256 key and signs a fresh proof per request,
//! `htu` taken from the server's metadata), `client-credentials` (needs `--client-id` and
//! `--client-secret`), `me` (resource-layer verification), `userinfo`,
//! `introspect` (each user's access token, by the confidential client
//! `--client-id`/`--client-secret`), `jwks`, `healthz`, and `oidc-code`
//! (below).
//!
//! `oidc-code` is the OpenID Connect code flow as a relying party and its
//! signed-in user's browser run it, end to end. Set-up, not timed: each
//! virtual user signs up through the user API, signs in through the sign-in
//! page of `/authorize` (its own cookie-keeping client, following no
//! redirect) and approves the consent page once. Then every iteration is
//! one `GET /authorize` (`response_type=code`, `scope=openid profile`, a
//! fresh `state`, `nonce` and S256 PKCE challenge, the browser session's
//! cookie) answered by a redirect to `--redirect-uri` with the `code`, and
//! one `POST /token` (`authorization_code`, the PKCE verifier, the client's
//! secret over Basic) answered 200 with an `id_token` and an
//! `access_token`. One flow (both requests) counts as one request in the
//! summary; the mean of each step is printed beside it (`steps_ms`). It
//! needs a confidential client registered with `--redirect-uri` and the
//! `openid profile email` scopes, given as `--client-id`/`--client-secret`
//! (`tessera clients create --name rp --grant authorization_code
//! --redirect-uri URI --scope openid --scope profile --scope email --json`;
//! `benches/run-oidc.sh` does it); `--scope` changes the requested scope.
//! With `--peer`, the same flow against node-oidc-provider
//! (`../shared/peers/oidc-provider`): its `/auth` with the `_session`
//! cookie of an interaction login and a prior grant, its `/token` with
//! `client_secret_basic`.
//! `--url` may list several comma-separated nodes: each virtual user sends
//! its requests to them in turn, as a round-robin load balancer would (a
//! refresh chain then rotates at every node).
//! `--refresh-tokens FILE` starts the chains from given tokens (a peer's,
//! obtained through its login pages) and refreshes as the confidential
//! client `--client-id`; `--form key=value` adds fields to `/token` (and,
//! for `oidc-code`, to the authorization request).
//! Prints a summary and one JSON line for machines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A virtual user's DPoP key and the proof header it signs under.
struct DpopKey {
    pair: EcdsaKeyPair,
    header: String,
}

impl DpopKey {
    fn generate() -> Self {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let der = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(alg, der.as_ref()).expect("key");
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}).to_string();
        Self {
            header: URL_SAFE_NO_PAD.encode(header),
            pair,
        }
    }

    /// A proof for a POST to `htu`, now, with a random `jti`.
    fn proof(&self, htu: &str) -> String {
        let mut jti = [0u8; 12];
        aws_lc_rs::rand::fill(&mut jti).expect("random");
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let claims =
            json!({"jti": URL_SAFE_NO_PAD.encode(jti), "htm": "POST", "htu": htu, "iat": iat});
        let input = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("signs");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

#[derive(Clone, Debug)]
struct Options {
    urls: Vec<String>,
    scenario: String,
    concurrency: usize,
    duration: u64,
    warmup: u64,
    client_id: String,
    client_secret: String,
    password: String,
    /// Refresh tokens to start the chains from, one per line (a peer whose
    /// refresh tokens come from its login pages); refreshes then
    /// authenticate with `--client-id`/`--client-secret` over Basic.
    refresh_tokens: Option<String>,
    /// Extra `key=value` form fields for `/token` (e.g. `resource=...`).
    form: Vec<(String, String)>,
    /// A server process whose CPU time (utime + stime) is read around the
    /// measured window: requests per server CPU-second.
    cpu_of: Option<u32>,
    /// The `htu` of DPoP proofs for the token endpoint and the login.
    token_htu: String,
    login_htu: String,
    /// `oidc-code`: the client's registered redirect URI and the scope it
    /// asks for at every authorization.
    redirect_uri: String,
    scope: String,
    /// `oidc-code` against node-oidc-provider (its `/auth` and
    /// interaction pages) instead of Tessera.
    peer: bool,
}

fn parse_options() -> Options {
    let mut options = Options {
        urls: vec!["http://127.0.0.1:3000".into()],
        scenario: "refresh-chain".into(),
        concurrency: 64,
        duration: 10,
        warmup: 2,
        client_id: String::new(),
        client_secret: String::new(),
        password: "load test password".into(),
        refresh_tokens: None,
        form: Vec::new(),
        cpu_of: None,
        token_htu: String::new(),
        login_htu: String::new(),
        redirect_uri: "https://rp.example/callback".into(),
        scope: "openid profile".into(),
        peer: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => {
                options.urls = value().split(',').map(|u| u.trim().to_owned()).collect();
            }
            "--scenario" => options.scenario = value(),
            "--concurrency" => options.concurrency = value().parse().expect("a number"),
            "--duration" => options.duration = value().parse().expect("seconds"),
            "--warmup" => options.warmup = value().parse().expect("seconds"),
            "--client-id" => options.client_id = value(),
            "--client-secret" => options.client_secret = value(),
            "--refresh-tokens" => options.refresh_tokens = Some(value()),
            "--cpu-of" => options.cpu_of = Some(value().parse().expect("a process id")),
            "--redirect-uri" => options.redirect_uri = value(),
            "--scope" => options.scope = value(),
            "--peer" => options.peer = true,
            "--form" => {
                let pair = value();
                let (k, v) = pair.split_once('=').expect("--form key=value");
                options.form.push((k.to_owned(), v.to_owned()));
            }
            other => panic!("unknown flag {other}"),
        }
    }
    options
}

/// What one virtual user keeps between requests.
struct VirtualUser {
    email: String,
    refresh_token: String,
    access_token: String,
    /// How many requests this user has sent: picks the next node.
    sent: usize,
    /// The DPoP key of `refresh-chain-dpop` users.
    dpop: Option<Arc<DpopKey>>,
    /// `oidc-code`: the user's browser (its own cookie jar holds the
    /// session; it follows no redirect).
    browser: Option<reqwest::Client>,
    /// `oidc-code`: how long the last flow's authorize and token steps took.
    steps: [Duration; 2],
}

impl VirtualUser {
    fn new(n: usize) -> Self {
        Self {
            email: String::new(),
            refresh_token: String::new(),
            access_token: String::new(),
            sent: n,
            dpop: None,
            browser: None,
            steps: [Duration::ZERO; 2],
        }
    }

    /// The node for the next request, round-robin.
    fn next_url<'o>(&mut self, o: &'o Options) -> &'o str {
        self.sent += 1;
        &o.urls[self.sent % o.urls.len()]
    }
}

/// The issuer's own URL for `path` (what a DPoP proof's `htu` names): the
/// metadata's issuer, whichever node answered.
async fn issuer_url(http: &reqwest::Client, url: &str, path: &str) -> String {
    let metadata: Value = http
        .get(format!("{url}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("metadata JSON");
    format!("{}{path}", metadata["issuer"].as_str().expect("issuer"))
}

/// `n` random bytes as unpadded base64url (PKCE verifiers, `state`, `nonce`).
fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// HTML character references as templates write them in attributes, decoded.
fn unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end < 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
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
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
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

/// The attributes of every `<tag …>` in `html` (quoted values, decoded):
/// enough for the sign-in and consent pages, not a general parser.
fn tag_attributes(html: &str, tag: &str) -> Vec<Vec<(String, String)>> {
    let open = format!("<{tag}");
    let mut found = Vec::new();
    for chunk in html.split(&open).skip(1) {
        if !chunk.starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/') {
            continue;
        }
        let mut rest = &chunk[..chunk.find('>').unwrap_or(chunk.len())];
        let mut attributes = Vec::new();
        while let Some(eq) = rest.find('=') {
            let name = rest[..eq]
                .split_whitespace()
                .last()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let after = rest[eq + 1..].trim_start();
            let (value, remaining) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let close = after[1..].find(quote).map_or(after.len(), |i| i + 1);
                    (&after[1..close], after.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            attributes.push((name, unescape_html(value)));
            rest = remaining;
        }
        found.push(attributes);
    }
    found
}

fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The fields a person would submit on a sign-in or consent page: its
/// hidden inputs, the credentials where it asks for them (Tessera's
/// `email`, the peer's `login`), and "approve" where it asks for a decision.
fn form_fields(html: &str, login: &str, password: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for input in tag_attributes(html, "input") {
        let (Some(name), kind) = (attribute(&input, "name"), attribute(&input, "type")) else {
            continue;
        };
        let value = match (name, kind) {
            ("email" | "login", _) => login.to_owned(),
            ("password", _) => password.to_owned(),
            (_, Some("hidden")) => attribute(&input, "value").unwrap_or_default().to_owned(),
            _ => continue,
        };
        fields.push((name.to_owned(), value));
    }
    if tag_attributes(html, "button")
        .iter()
        .any(|b| attribute(b, "name") == Some("decision"))
    {
        fields.push(("decision".into(), "approve".into()));
    }
    fields
}

/// `GET /authorize` (the peer's `/auth`) for one code-flow iteration:
/// `(state, verifier)` and the query.
fn oidc_query(o: &Options) -> (String, String, Vec<(String, String)>) {
    let (state, nonce, verifier) = (random_b64(12), random_b64(12), random_b64(32));
    let mut query: Vec<(String, String)> = vec![
        ("response_type".into(), "code".into()),
        ("client_id".into(), o.client_id.clone()),
        ("redirect_uri".into(), o.redirect_uri.clone()),
        ("scope".into(), o.scope.clone()),
        ("state".into(), state.clone()),
        ("nonce".into(), nonce),
        ("code_challenge".into(), pkce_challenge(&verifier)),
        ("code_challenge_method".into(), "S256".into()),
    ];
    query.extend(o.form.iter().cloned());
    (state, verifier, query)
}

/// The authorization endpoint's path: Tessera's or the peer's.
fn authorize_path(o: &Options) -> &'static str {
    if o.peer { "/auth" } else { "/authorize" }
}

/// The `code` of a redirect to the client, checked against `state`.
fn code_of(response: &reqwest::Response, o: &Options, state: &str) -> Result<String, String> {
    if !response.status().is_redirection() {
        return Err(format!("authorize answered {}", response.status()));
    }
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or("a redirect without Location")?;
    if !location.starts_with(&o.redirect_uri) {
        return Err(format!("redirected to {location}, not to the client"));
    }
    let target = url::Url::parse(location).map_err(|e| e.to_string())?;
    let param = |name: &str| {
        target
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if param("state").as_deref() != Some(state) {
        return Err(format!("state not echoed: {location}"));
    }
    param("code").ok_or_else(|| format!("no code: {location}"))
}

/// Set-up of an `oidc-code` virtual user (not timed): signs up (Tessera),
/// then signs in through the authorization endpoint's pages as a person
/// would, approving consent where asked, so that its browser holds a
/// session and the client a grant. Runs one flow to check it works.
async fn oidc_user(http: &reqwest::Client, o: &Options, n: usize) -> VirtualUser {
    assert!(
        !o.client_id.is_empty() && !o.client_secret.is_empty(),
        "oidc-code needs --client-id and --client-secret (a confidential client with --redirect-uri)"
    );
    let url = &o.urls[n % o.urls.len()];
    let email = format!("oidc-{}-{n}@example.com", std::process::id());
    if !o.peer {
        let response = http
            .post(format!("{url}/api/users/signup"))
            .json(
                &json!({"email": email, "password": o.password, "fname": "Load", "lname": "Test"}),
            )
            .send()
            .await
            .expect("signup");
        assert!(
            response.status().is_success(),
            "signup answered {}",
            response.status()
        );
    }
    // The peer's development login accepts any account name.
    let login = if o.peer {
        format!("user{n}")
    } else {
        email.clone()
    };
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let (state, _, query) = oidc_query(o);
    let mut response = browser
        .get(format!("{url}{}", authorize_path(o)))
        .query(&query)
        .send()
        .await
        .expect("authorize");
    let mut current = response.url().clone();
    for _ in 0..12 {
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        if let Some(location) = location {
            if location.starts_with(&o.redirect_uri) {
                break;
            }
            current = current.join(&location).expect("a Location URL");
            response = browser.get(current.clone()).send().await.expect("a page");
            continue;
        }
        let status = response.status();
        let html = response.text().await.expect("a page");
        assert!(
            status.is_success(),
            "sign-in page answered {status}: {html}"
        );
        let form = tag_attributes(&html, "form");
        let action = form
            .first()
            .and_then(|f| attribute(f, "action"))
            .unwrap_or_else(|| panic!("no form on the page: {html}"));
        current = current.join(action).expect("a form action");
        response = browser
            .post(current.clone())
            .form(&form_fields(&html, &login, &o.password))
            .send()
            .await
            .expect("a form");
    }
    code_of(&response, o, &state).unwrap_or_else(|e| panic!("set-up sign-in: {e}"));
    let mut user = VirtualUser {
        email,
        browser: Some(browser),
        ..VirtualUser::new(n)
    };
    // The first flow with the session alone: it must need no page.
    oidc_flow(http, o, &mut user, url)
        .await
        .unwrap_or_else(|e| panic!("set-up flow: {e}"));
    user
}

/// One `oidc-code` iteration: authorize with the session, exchange the code.
async fn oidc_flow(
    http: &reqwest::Client,
    o: &Options,
    user: &mut VirtualUser,
    url: &str,
) -> Result<(), String> {
    let browser = user.browser.as_ref().expect("an oidc-code user");
    let (state, verifier, query) = oidc_query(o);
    let began = Instant::now();
    let response = browser
        .get(format!("{url}{}", authorize_path(o)))
        .query(&query)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = code_of(&response, o, &state)?;
    let _ = response.bytes().await;
    let authorized = Instant::now();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", o.redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    form.extend(o.form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let response = http
        .post(format!("{url}/token"))
        .basic_auth(&o.client_id, Some(&o.client_secret))
        .form(&form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        let status = response.status();
        return Err(format!(
            "{status}: {}",
            response.text().await.unwrap_or_default()
        ));
    }
    let tokens: Value = response.json().await.map_err(|e| e.to_string())?;
    if !tokens["id_token"].is_string() || !tokens["access_token"].is_string() {
        return Err(format!("no id_token or access_token: {tokens}"));
    }
    user.steps = [authorized - began, authorized.elapsed()];
    Ok(())
}

async fn signup_and_login(http: &reqwest::Client, o: &Options, n: usize) -> VirtualUser {
    let email = format!("load-{}-{n}@example.com", std::process::id());
    let url = &o.urls[n % o.urls.len()];
    let _ = http
        .post(format!("{url}/api/users/signup"))
        .json(&json!({"email": email, "password": o.password, "fname": "Load", "lname": "Test"}))
        .send()
        .await;
    let dpop = (o.scenario == "refresh-chain-dpop").then(|| Arc::new(DpopKey::generate()));
    let mut login = http.post(format!("{url}/api/users/login"));
    if let Some(key) = &dpop {
        login = login.header("DPoP", key.proof(&o.login_htu));
    }
    let tokens: Value = login
        .json(&json!({"email": email, "password": o.password}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("token JSON");
    VirtualUser {
        email,
        refresh_token: tokens["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        access_token: tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        dpop,
        ..VirtualUser::new(n)
    }
}

/// One request of the scenario; `Ok` only for the expected status.
async fn one_request(
    http: &reqwest::Client,
    o: &Options,
    user: &mut VirtualUser,
) -> Result<(), String> {
    let url = user.next_url(o);
    let response = match o.scenario.as_str() {
        "login" => {
            http.post(format!("{url}/api/users/login"))
                .json(&json!({"email": user.email, "password": o.password}))
                .send()
                .await
        }
        "refresh-chain" | "refresh-chain-dpop" => {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", user.refresh_token.as_str()),
            ];
            form.extend(o.form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut request = http.post(format!("{url}/token"));
            if let Some(key) = &user.dpop {
                request = request.header("DPoP", key.proof(&o.token_htu));
            }
            let request = if o.client_id.is_empty() {
                form.push(("client_id", "tessera"));
                request
            } else {
                request.basic_auth(&o.client_id, Some(&o.client_secret))
            };
            let response = request
                .form(&form)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(response.status().to_string());
            }
            let tokens: Value = response.json().await.map_err(|e| e.to_string())?;
            user.refresh_token = tokens["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            return Ok(());
        }
        "client-credentials" => {
            let mut form = vec![("grant_type", "client_credentials")];
            form.extend(o.form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            http.post(format!("{url}/token"))
                .basic_auth(&o.client_id, Some(&o.client_secret))
                .form(&form)
                .send()
                .await
        }
        "me" => {
            http.get(format!("{url}/api/users/me"))
                .bearer_auth(&user.access_token)
                .send()
                .await
        }
        "userinfo" => {
            http.get(format!("{url}/userinfo"))
                .bearer_auth(&user.access_token)
                .send()
                .await
        }
        "introspect" => {
            http.post(format!("{url}/introspect"))
                .basic_auth(&o.client_id, Some(&o.client_secret))
                .form(&[("token", user.access_token.as_str())])
                .send()
                .await
        }
        "jwks" => {
            http.get(format!("{url}/.well-known/jwks.json"))
                .send()
                .await
        }
        "healthz" => http.get(format!("{url}/healthz")).send().await,
        "oidc-code" => {
            return oidc_flow(http, o, user, url).await;
        }
        other => panic!("unknown scenario {other}"),
    }
    .map_err(|e| e.to_string())?;
    let status = response.status();
    let _ = response.bytes().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(status.to_string())
    }
}

#[tokio::main]
async fn main() {
    let mut o = parse_options();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    if o.scenario == "refresh-chain-dpop" {
        o.token_htu = issuer_url(&http, &o.urls[0], "/token").await;
        o.login_htu = issuer_url(&http, &o.urls[0], "/api/users/login").await;
    }
    let needs_users = matches!(
        o.scenario.as_str(),
        "login" | "refresh-chain" | "refresh-chain-dpop" | "me" | "userinfo" | "introspect"
    );
    let given: Vec<String> = o
        .refresh_tokens
        .as_ref()
        .map(|path| std::fs::read_to_string(path).expect("refresh tokens file"))
        .map(|text| {
            text.lines()
                .map(str::to_owned)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        given.is_empty() || given.len() >= o.concurrency,
        "--refresh-tokens needs one token per virtual user"
    );
    let mut users = Vec::with_capacity(o.concurrency);
    if o.scenario == "oidc-code" {
        // Each set-up costs two password hashes: a few at a time keep the
        // server's cores busy without a queue past its bcrypt limit.
        use futures_util::StreamExt;
        users = futures_util::stream::iter(0..o.concurrency)
            .map(|n| oidc_user(&http, &o, n))
            .buffered(4)
            .collect()
            .await;
    }
    for n in users.len()..o.concurrency {
        users.push(if let Some(token) = given.get(n) {
            VirtualUser {
                refresh_token: token.clone(),
                ..VirtualUser::new(n)
            }
        } else if needs_users {
            signup_and_login(&http, &o, n).await
        } else {
            VirtualUser::new(n)
        });
    }

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut user in users {
        let (http, o) = (http.clone(), o.clone());
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            // `oidc-code`: the sum of each step's time over measured flows.
            let mut steps = [Duration::ZERO; 2];
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = one_request(&http, &o, &mut user).await;
                if measuring.load(Ordering::Relaxed) {
                    match result {
                        Ok(()) => {
                            let _ = histogram.record(start.elapsed().as_micros().max(1) as u64);
                            steps[0] += user.steps[0];
                            steps[1] += user.steps[1];
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            (histogram, steps)
        }));
    }
    tokio::time::sleep(Duration::from_secs(o.warmup)).await;
    let cpu_before = o.cpu_of.map(process_cpu_seconds);
    measuring.store(true, Ordering::Relaxed);
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = began.elapsed().as_secs_f64();
    let server_cpu = o
        .cpu_of
        .map(process_cpu_seconds)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    stop.store(true, Ordering::Relaxed);

    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut steps = [Duration::ZERO; 2];
    for task in tasks {
        let (histogram, task_steps) = task.await.expect("task");
        all.add(histogram).expect("merge");
        steps[0] += task_steps[0];
        steps[1] += task_steps[1];
    }
    // Mean time of each step of an `oidc-code` flow (authorize, token).
    let step_ms = steps.map(|d| d.as_secs_f64() * 1000.0 / all.len().max(1) as f64);
    let oidc = o.scenario == "oidc-code";
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    let rps = all.len() as f64 / elapsed;
    let errors = errors.load(Ordering::Relaxed);
    println!(
        "{} c={} {:.0} {}/s  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  errors {}{}",
        o.scenario,
        o.concurrency,
        rps,
        if oidc { "flows" } else { "req" },
        ms(0.5),
        ms(0.9),
        ms(0.99),
        all.max() as f64 / 1000.0,
        errors,
        if oidc {
            format!(
                "  (mean authorize {:.2} ms, token {:.2} ms)",
                step_ms[0], step_ms[1]
            )
        } else {
            String::new()
        }
    );
    let mut summary = json!({
        "scenario": o.scenario, "concurrency": o.concurrency, "seconds": elapsed,
        "requests": all.len(), "rps": rps, "p50_ms": ms(0.5), "p90_ms": ms(0.9),
        "p99_ms": ms(0.99), "max_ms": all.max() as f64 / 1000.0, "errors": errors,
        "server_cpu_s": server_cpu,
        "per_server_cpu_s": server_cpu.map(|cpu| all.len() as f64 / cpu),
    });
    if oidc {
        // A "request" of `oidc-code` is one whole flow (authorize + token).
        summary["steps_ms"] = json!({"authorize": step_ms[0], "token": step_ms[1]});
    }
    println!("{summary}");
}

/// utime + stime of process `pid` in seconds (Linux `/proc/PID/stat`,
/// fields 14 and 15, in clock ticks of 1/100 s).
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name may hold spaces: fields are counted after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("ticks");
    // Fields 14 and 15 of stat are 11 and 12 after the name (field 3 is 0).
    (ticks(11) + ticks(12)) / 100.0
}
