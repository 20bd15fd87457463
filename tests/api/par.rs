//! Pushed authorization requests (RFC 9126) and `dpop_jkt` (RFC 9449 §10):
//! the whole code flow through `/par` (confidential and public clients),
//! the `request_uri`'s single use and expiry, what `/par` refuses, and
//! requiring PAR per client and server-wide. The flows run on every
//! backend; the refusals on the embedded store and Redis.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;

use sha2::{Digest, Sha256};
use tessera::domain::clients::NewClient;

use crate::admin_users::{browser, form_of};
use crate::dpop::{DpopKey, ProofFor};
use tessera::config::Secret;

use crate::common::{Backend, PASSWORD, RedisServer, TestApp, assert_oauth_error, body, free_port};

const REDIRECT: &str = "https://app.example/callback";
const VERIFIER: &str = "a-long-enough-code-verifier-for-pkce-tests-0123456789";
const PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// The error page's words for an unknown, expired, used or foreign request_uri.
const GONE: &str = "has expired or was already used";

fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
}

/// A third-party client (the consent page shows), confidential or public.
async fn client(app: &TestApp, public: bool, require_par: bool) -> (String, Option<String>) {
    app.client(NewClient {
        name: "Photo Prints".into(),
        public,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec![REDIRECT.into(), "https://app.example/other".into()],
        scopes: vec!["profile".into(), "email".into()],
        require_pushed_authorization_requests: require_par,
        ..NewClient::default()
    })
    .await
}

/// An authorization request's parameters (with PKCE).
fn request(client_id: &str) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "profile email"),
        ("state", "pushed-state"),
        ("code_challenge", &challenge()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn with(mut form: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (name, value) in extra {
        form.retain(|(k, _)| k != name);
        form.push(((*name).to_owned(), (*value).to_owned()));
    }
    form
}

/// `POST /par` with `form`, client_secret_basic when `secret` is given.
async fn push(
    app: &TestApp,
    client_id: &str,
    secret: Option<&str>,
    form: &[(String, String)],
) -> reqwest::Response {
    let mut request = app.http.post(app.url("/par")).form(form);
    if let Some(secret) = secret {
        request = request.basic_auth(client_id, Some(secret));
    }
    request.send().await.unwrap()
}

/// The request_uri of a successful push (RFC 9126 §2.2).
async fn pushed(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let answer = body(response).await;
    assert_eq!(answer["expires_in"], 60);
    let uri = answer["request_uri"].as_str().unwrap().to_owned();
    let random = uri.strip_prefix(PREFIX).expect("our urn");
    assert_eq!(random.len(), 43, "256 bits");
    uri
}

/// `/authorize` with the pushed request_uri.
async fn authorize(
    app: &TestApp,
    browser: &reqwest::Client,
    query: &[(&str, &str)],
) -> reqwest::Response {
    browser
        .get(app.url("/authorize"))
        .query(query)
        .send()
        .await
        .unwrap()
}

async fn error_page(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response.headers().get("location").is_none(),
        "never a redirect"
    );
    response.text().await.unwrap()
}

fn redirect_param(response: &reqwest::Response, name: &str) -> Option<String> {
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "a redirect");
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT), "{location}");
    location
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// From the login page of a pushed request to the code: signs in, approves.
async fn sign_in_and_approve(
    app: &TestApp,
    browser: &reqwest::Client,
    login_page: String,
    email: &str,
) -> reqwest::Response {
    let consent = browser
        .post(app.url("/authorize"))
        .form(&form_of(
            &login_page,
            &[("email", email), ("password", PASSWORD)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), StatusCode::OK);
    let consent = consent.text().await.unwrap();
    assert!(consent.contains("Photo Prints"));
    browser
        .post(app.url("/authorize"))
        .form(&form_of(&consent, &[("decision", "approve")]))
        .send()
        .await
        .unwrap()
}

async fn exchange(
    app: &TestApp,
    client_id: &str,
    secret: Option<&str>,
    code: &str,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    if secret.is_none() {
        form.push(("client_id", client_id));
    }
    app.post_form("/token", secret.map(|s| (client_id, s)), &form)
        .await
}

/// The whole flow through `/par` for one client: push (authenticated),
/// `/authorize` with only client_id and request_uri, the login page
/// (reloaded once: a peek uses nothing), consent, the code with the
/// pushed state, the exchange; then the used request_uri is refused.
async fn the_code_flow_goes_through_par(app: &TestApp, public: bool) {
    let user = app.user("par-user").await;
    let (client_id, secret) = client(app, public, false).await;
    let form = request(&client_id);
    let uri = pushed(push(app, &client_id, secret.as_deref(), &form).await).await;

    let browser = browser();
    // Every other query parameter is ignored: the pushed ones count.
    let query = [
        ("client_id", client_id.as_str()),
        ("request_uri", uri.as_str()),
        ("redirect_uri", "https://evil.example/cb"),
        ("state", "not-the-pushed-state"),
    ];
    let page = authorize(app, &browser, &query).await;
    assert_eq!(page.status(), StatusCode::OK);
    let reloaded = authorize(app, &browser, &query).await;
    assert_eq!(reloaded.status(), StatusCode::OK, "a reload still works");
    let html = reloaded.text().await.unwrap();
    let carried: Vec<String> = form_of(&html, &[]).into_iter().map(|(k, _)| k).collect();
    assert_eq!(carried, ["client_id", "request_uri", "csrf", "action"]);
    // Sign-up and forgot-password come back to the pushed request alone.
    let sealed = html
        .split("/account/signup?return=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a sign-up link");
    let back = tessera::http::browser::ReturnTo::open(&app.state, sealed)
        .expect("a valid return")
        .location();
    let back = url::Url::parse(&format!("http://x{back}")).unwrap();
    assert_eq!(back.path(), "/authorize");
    let back: Vec<(String, String)> = back.query_pairs().into_owned().collect();
    assert_eq!(
        back,
        [
            ("client_id".to_owned(), client_id.clone()),
            ("request_uri".to_owned(), uri.clone())
        ]
    );

    let approved = sign_in_and_approve(app, &browser, html, &user.email).await;
    assert_eq!(
        redirect_param(&approved, "state").as_deref(),
        Some("pushed-state")
    );
    let code = redirect_param(&approved, "code").expect("a code");
    let tokens = exchange(app, &client_id, secret.as_deref(), &code).await;
    assert_eq!(tokens.status(), StatusCode::OK);
    let tokens = body(tokens).await;
    assert!(tokens["access_token"].is_string());
    assert!(tokens["scope"].as_str().unwrap().contains("profile"));

    // Single use: the same request_uri after the code was issued.
    let again = error_page(authorize(app, &browser, &query[..2]).await).await;
    assert!(again.contains(GONE), "{again}");
}

async fn a_confidential_client_pushes_its_request(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    the_code_flow_goes_through_par(&app, false).await;
}

async fn a_public_client_pushes_its_request(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    the_code_flow_goes_through_par(&app, true).await;
}

/// Two approvals of one pushed request (two tabs, a replayed form): the
/// first gets the code, the second the error page, never a second code.
async fn one_request_uri_never_gives_two_codes(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("par-twice").await;
    let (client_id, secret) = client(&app, false, false).await;
    let uri = pushed(push(&app, &client_id, secret.as_deref(), &request(&client_id)).await).await;
    let browser = browser();
    let query = [
        ("client_id", client_id.as_str()),
        ("request_uri", uri.as_str()),
    ];
    let html = authorize(&app, &browser, &query)
        .await
        .text()
        .await
        .unwrap();
    let consent = browser
        .post(app.url("/authorize"))
        .form(&form_of(
            &html,
            &[("email", &user.email), ("password", PASSWORD)],
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let approval = form_of(&consent, &[("decision", "approve")]);
    let first = browser
        .post(app.url("/authorize"))
        .form(&approval)
        .send()
        .await
        .unwrap();
    assert!(redirect_param(&first, "code").is_some());
    let second = browser
        .post(app.url("/authorize"))
        .form(&approval)
        .send()
        .await
        .unwrap();
    let page = error_page(second).await;
    assert!(page.contains(GONE), "{page}");
}

/// Unknown, foreign and expired request_uris are an error page; a
/// request_uri that is not ours is a request object by reference, still
/// `request_uri_not_supported`.
async fn request_uris_that_cannot_be_used(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (client_id, secret) = client(&app, false, false).await;
    let (other_id, _) = client(&app, true, false).await;
    let browser = browser();

    let unknown = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    let query = [
        ("client_id", client_id.as_str()),
        ("request_uri", unknown.as_str()),
    ];
    assert!(
        error_page(authorize(&app, &browser, &query).await)
            .await
            .contains(GONE)
    );

    let uri = pushed(push(&app, &client_id, secret.as_deref(), &request(&client_id)).await).await;
    let foreign = [
        ("client_id", other_id.as_str()),
        ("request_uri", uri.as_str()),
    ];
    assert!(
        error_page(authorize(&app, &browser, &foreign).await)
            .await
            .contains(GONE)
    );
    let nameless = [("request_uri", uri.as_str())];
    assert!(
        error_page(authorize(&app, &browser, &nameless).await)
            .await
            .contains("client_id")
    );
    // Still usable by its own client.
    let own = [
        ("client_id", client_id.as_str()),
        ("request_uri", uri.as_str()),
    ];
    assert_eq!(
        authorize(&app, &browser, &own).await.status(),
        StatusCode::OK
    );
    // A push not opened within 60 s is gone; an opened one has the time
    // to sign in (30 minutes from its last opening).
    let late = pushed(push(&app, &client_id, secret.as_deref(), &request(&client_id)).await).await;
    let late = [
        ("client_id", client_id.as_str()),
        ("request_uri", late.as_str()),
    ];
    app.clock.advance(61);
    assert!(
        error_page(authorize(&app, &browser, &late).await)
            .await
            .contains(GONE)
    );
    assert_eq!(
        authorize(&app, &browser, &own).await.status(),
        StatusCode::OK
    );
    app.clock.advance(30 * 60 + 1);
    assert!(
        error_page(authorize(&app, &browser, &own).await)
            .await
            .contains(GONE)
    );

    let by_reference = with(
        request(&client_id),
        &[("request_uri", "https://app.example/request.jwt")],
    );
    let by_reference: Vec<(&str, &str)> = by_reference
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let refused = authorize(&app, &browser, &by_reference).await;
    assert_eq!(
        redirect_param(&refused, "error").as_deref(),
        Some("request_uri_not_supported")
    );
}

/// What `/par` refuses, and that a refused push stores nothing.
async fn pushes_that_are_refused(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (client_id, secret) = client(&app, false, false).await;
    let secret = secret.unwrap();
    let form = request(&client_id);

    // Client authentication as at /token: a wrong secret is 401 with a
    // Basic challenge; none at all from a confidential client is 401.
    let wrong = push(&app, &client_id, Some("tss_wrong"), &form).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_oauth_error(wrong, 401, "invalid_client").await;
    assert_oauth_error(
        push(&app, &client_id, None, &form).await,
        401,
        "invalid_client",
    )
    .await;
    let (other_id, _) = client(&app, true, false).await;
    let mismatched = with(form.clone(), &[("client_id", other_id.as_str())]);
    assert_oauth_error(
        push(&app, &client_id, Some(&secret), &mismatched).await,
        400,
        "invalid_request",
    )
    .await;

    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (
            with(
                form.clone(),
                &[("request_uri", format!("{PREFIX}x").as_str())],
            ),
            "invalid_request",
        ),
        (
            with(form.clone(), &[("request", "eyJhbGciOiJub25lIn0.e30.")]),
            "request_not_supported",
        ),
        (
            with(form.clone(), &[("redirect_uri", "https://evil.example/cb")]),
            "invalid_request",
        ),
        (
            with(form.clone(), &[("response_type", "token")]),
            "unsupported_response_type",
        ),
        (with(form.clone(), &[("scope", "admin")]), "invalid_scope"),
        (
            with(form.clone(), &[("code_challenge_method", "plain")]),
            "invalid_request",
        ),
        (
            with(form.clone(), &[("dpop_jkt", "too-short")]),
            "invalid_request",
        ),
    ];
    for (form, error) in cases {
        let refused = push(&app, &client_id, Some(&secret), &form).await;
        let answer = assert_oauth_error(refused, 400, error).await;
        assert!(!answer.to_string().contains(PREFIX), "{answer}");
    }

    // Repeated parameters and oversized bodies, as at /token.
    let mut repeated = form.clone();
    repeated.push(("scope".into(), "profile".into()));
    assert_oauth_error(
        push(&app, &client_id, Some(&secret), &repeated).await,
        400,
        "invalid_request",
    )
    .await;
    let huge = "x".repeat(70 * 1024);
    let oversized = with(form.clone(), &[("state", huge.as_str())]);
    let refused = push(&app, &client_id, Some(&secret), &oversized).await;
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Nothing of the refused pushes was stored.
    if backend == Backend::Sqlite {
        let db = rusqlite::Connection::open(app.config.data_dir.join("tessera.db")).unwrap();
        let stored: i64 = db
            .query_row("SELECT COUNT(*) FROM pushed_requests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 0);
    }

    // A client without a redirect URI cannot push at all.
    let (service, service_secret) = app
        .client(NewClient {
            name: "Reports".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["reports.read".into()],
            ..NewClient::default()
        })
        .await;
    assert_oauth_error(
        push(
            &app,
            &service,
            service_secret.as_deref(),
            &request(&service),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
}

/// A token-store outage: `/par` answers 503 `temporarily_unavailable`,
/// `/authorize` with a request_uri a 503 page; never a panic or a 500.
#[tokio::test]
async fn a_token_store_outage_is_503() {
    let redis = RedisServer::start(free_port());
    let url = redis.url.clone();
    let app = TestApp::spawn_with(move |c| c.redis_url = Some(Secret::new(url))).await;
    let (client_id, secret) = client(&app, false, false).await;
    let form = request(&client_id);
    let uri = pushed(push(&app, &client_id, secret.as_deref(), &form).await).await;
    redis.stop();
    assert_oauth_error(
        push(&app, &client_id, secret.as_deref(), &form).await,
        503,
        "temporarily_unavailable",
    )
    .await;
    let query = [
        ("client_id", client_id.as_str()),
        ("request_uri", uri.as_str()),
    ];
    let page = authorize(&app, &browser(), &query).await;
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A client registered with `require_pushed_authorization_requests` is
/// refused a direct request (at its redirect URI, as other errors after
/// the client and redirect URI are known) and served a pushed one.
async fn a_client_can_be_required_to_push(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (client_id, secret) = client(&app, false, true).await;
    let browser = browser();
    let form = request(&client_id);
    let direct: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = authorize(&app, &browser, &direct).await;
    assert_eq!(
        redirect_param(&refused, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(
        redirect_param(&refused, "error_description").as_deref(),
        Some("pushed authorization requests are required for this client")
    );
    assert_eq!(
        redirect_param(&refused, "state").as_deref(),
        Some("pushed-state")
    );

    let uri = pushed(push(&app, &client_id, secret.as_deref(), &form).await).await;
    let query = [
        ("client_id", client_id.as_str()),
        ("request_uri", uri.as_str()),
    ];
    assert_eq!(
        authorize(&app, &browser, &query).await.status(),
        StatusCode::OK
    );
}

/// `TESSERA_REQUIRE_PAR`: every client must push; the metadata says so.
async fn the_server_can_require_par(backend: Backend) {
    let app = TestApp::spawn_on_with(backend, |c| c.require_par = true).await;
    let metadata = body(app.get("/.well-known/oauth-authorization-server").await).await;
    assert_eq!(metadata["require_pushed_authorization_requests"], true);
    assert_eq!(
        metadata["pushed_authorization_request_endpoint"],
        format!("{}/par", app.config.issuer)
    );
    let (client_id, secret) = client(&app, false, false).await;
    let browser = browser();
    let form = request(&client_id);
    let direct: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = authorize(&app, &browser, &direct).await;
    assert_eq!(
        redirect_param(&refused, "error").as_deref(),
        Some("invalid_request")
    );
    let uri = pushed(push(&app, &client_id, secret.as_deref(), &form).await).await;
    let query = [
        ("client_id", client_id.as_str()),
        ("request_uri", uri.as_str()),
    ];
    assert_eq!(
        authorize(&app, &browser, &query).await.status(),
        StatusCode::OK
    );
}

/// The grant stored for `code` (to see what it is bound to).
async fn stored_grant(app: &TestApp, code: &str) -> tessera::store::CodeGrant {
    let hash = tessera::crypto::secret::TokenHash::from_stored(
        tessera::crypto::secret::sha256_hex(code.as_bytes()),
    );
    app.state
        .token_store
        .peek_code(&hash, app.clock.now())
        .await
        .unwrap()
        .expect("the code's grant")
}

/// RFC 9449 §10: `dpop_jkt` at `/authorize` binds the code (stored with
/// it; the token endpoint enforces it), a malformed one is refused; at
/// `/par` a DPoP proof's key becomes the request's `dpop_jkt`, and a proof
/// that does not verify, or a `dpop_jkt` of another key, is refused.
async fn dpop_jkt_binds_the_code(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("par-dpop").await;
    let (client_id, secret) = client(&app, false, false).await;
    let key = DpopKey::ed25519();
    let jkt = key.thumbprint();
    let browser = browser();

    let malformed = with(request(&client_id), &[("dpop_jkt", "not-a-thumbprint")]);
    let malformed: Vec<(&str, &str)> = malformed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let refused = authorize(&app, &browser, &malformed).await;
    assert_eq!(
        redirect_param(&refused, "error").as_deref(),
        Some("invalid_request")
    );

    let direct = with(request(&client_id), &[("dpop_jkt", jkt.as_str())]);
    let direct: Vec<(&str, &str)> = direct
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let page = authorize(&app, &browser, &direct)
        .await
        .text()
        .await
        .unwrap();
    let approved = sign_in_and_approve(&app, &browser, page, &user.email).await;
    let code = redirect_param(&approved, "code").expect("a code");
    assert_eq!(
        stored_grant(&app, &code).await.dpop_jkt.as_deref(),
        Some(jkt.as_str())
    );

    // At /par, the proof's key is the request's dpop_jkt.
    let htu = format!("{}/par", app.config.issuer);
    let proof = key.proof(ProofFor {
        method: "POST",
        uri: &htu,
        ..ProofFor::default()
    });
    let uri = pushed(
        app.http
            .post(app.url("/par"))
            .basic_auth(&client_id, secret.as_deref())
            .header("DPoP", proof)
            .form(&request(&client_id))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let query = [
        ("client_id", client_id.as_str()),
        ("request_uri", uri.as_str()),
    ];
    // Signed in, and the scope approved before: the code comes at once.
    let approved = authorize(&app, &browser, &query).await;
    let code = redirect_param(&approved, "code").expect("a code");
    assert_eq!(
        stored_grant(&app, &code).await.dpop_jkt.as_deref(),
        Some(jkt.as_str())
    );

    // The exchange must prove that key (RFC 9449 §10); a request without
    // a proof or with another key's leaves the code to its rightful client.
    let token_htu = format!("{}/token", app.config.issuer);
    let exchange_with = |proof: Option<String>| {
        let mut request = app
            .http
            .post(app.url("/token"))
            .basic_auth(&client_id, secret.as_deref())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ]);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        request.send()
    };
    let thief = DpopKey::ed25519().proof(ProofFor {
        method: "POST",
        uri: &token_htu,
        ..ProofFor::default()
    });
    for proof in [None, Some(thief)] {
        let refused = exchange_with(proof).await.unwrap();
        assert_oauth_error(refused, 400, "invalid_dpop_proof").await;
    }
    let rightful = key.proof(ProofFor {
        method: "POST",
        uri: &token_htu,
        ..ProofFor::default()
    });
    let tokens = body(exchange_with(Some(rightful)).await.unwrap()).await;
    assert_eq!(tokens["token_type"], "DPoP", "{tokens}");

    let other = DpopKey::ed25519();
    let cases = [
        (
            key.proof(ProofFor {
                method: "POST",
                uri: &htu,
                ..ProofFor::default()
            }),
            Some(other.thumbprint()),
        ),
        (
            key.proof(ProofFor {
                method: "POST",
                uri: &format!("{}/token", app.config.issuer),
                ..ProofFor::default()
            }),
            None,
        ),
        (
            key.proof(ProofFor {
                method: "GET",
                uri: &htu,
                ..ProofFor::default()
            }),
            None,
        ),
        (
            key.proof(ProofFor {
                method: "POST",
                uri: &htu,
                age: -3600,
                ..ProofFor::default()
            }),
            None,
        ),
        ("not-a-proof".to_owned(), None),
    ];
    for (proof, dpop_jkt) in cases {
        let mut form = request(&client_id);
        if let Some(jkt) = &dpop_jkt {
            form.push(("dpop_jkt".into(), jkt.clone()));
        }
        let refused = app
            .http
            .post(app.url("/par"))
            .basic_auth(&client_id, secret.as_deref())
            .header("DPoP", proof)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_oauth_error(refused, 400, "invalid_dpop_proof").await;
    }
}

/// A person may take longer than the 60 s a push waits to be opened:
/// once `/authorize` opened it, the sign-in has half an hour.
async fn a_started_sign_in_outlives_the_push_window(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("par-slow").await;
    let (client_id, secret) = client(&app, false, false).await;
    let browser = browser();
    let uri = pushed(push(&app, &client_id, secret.as_deref(), &request(&client_id)).await).await;
    let query = [
        ("client_id", client_id.as_str()),
        ("request_uri", uri.as_str()),
    ];
    let page = authorize(&app, &browser, &query)
        .await
        .text()
        .await
        .unwrap();
    app.clock.advance(600);
    let approved = sign_in_and_approve(&app, &browser, page, &user.email).await;
    let code = redirect_param(&approved, "code").expect("a code");
    let tokens = exchange(&app, &client_id, secret.as_deref(), &code).await;
    assert_eq!(tokens.status(), StatusCode::OK);
    // Used up: opening it again is the error page.
    assert!(
        error_page(authorize(&app, &browser, &query).await)
            .await
            .contains(GONE)
    );
}

/// Anyone can push as a public client: pushes are bounded in size and,
/// per address, in rate (RFC 9126 §7.2 spirit: the store must not fill).
async fn public_pushes_are_bounded(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (client_id, _) = client(&app, true, false).await;
    let long = "s".repeat(3000);
    let too_long = with(request(&client_id), &[("state", long.as_str())]);
    let refused = push(&app, &client_id, None, &too_long).await;
    let error = assert_oauth_error(refused, 400, "invalid_request").await;
    assert!(!error.to_string().contains(&long));
    let mut throttled = None;
    for _ in 0..200 {
        let response = push(&app, &client_id, None, &request(&client_id)).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let throttled = throttled.expect("a public client's pushes are limited");
    assert!(throttled.headers().contains_key("retry-after"));
    // A confidential client authenticates: not limited.
    let (confidential, secret) = client(&app, false, false).await;
    for _ in 0..70 {
        let response = push(
            &app,
            &confidential,
            secret.as_deref(),
            &request(&confidential),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

crate::on_every_backend!(
    a_confidential_client_pushes_its_request,
    a_public_client_pushes_its_request,
);

/// Runs each named `async fn(Backend)` on the embedded store and on Redis.
macro_rules! on_sqlite_and_redis {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test] async fn $name() { super::$name(crate::common::Backend::Sqlite).await })*
        }
        mod on_redis {
            $(#[tokio::test] async fn $name() { super::$name(crate::common::Backend::Redis).await })*
        }
    };
}

on_sqlite_and_redis!(
    one_request_uri_never_gives_two_codes,
    request_uris_that_cannot_be_used,
    pushes_that_are_refused,
    a_client_can_be_required_to_push,
    the_server_can_require_par,
    dpop_jkt_binds_the_code,
    a_started_sign_in_outlives_the_push_window,
    public_pushes_are_bounded,
);
