//! The OAuth endpoints — /token, /revoke, /introspect — run against both
//! token stores (embedded SQLite and a real redis-server).

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera::domain::clients::NewClient;
use tessera::domain::grants::{AuthorizationRequest, issue_code};

use crate::common::{
    Backend, PASSWORD, TestApp, TestUser, assert_invalid_token, assert_oauth_error, body,
};
use crate::on_every_backend;

fn service_client() -> NewClient {
    NewClient {
        name: "billing service".into(),
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["api.read".into(), "api.write".into()],
        ..NewClient::default()
    }
}

fn web_client(public: bool) -> NewClient {
    NewClient {
        name: "web app".into(),
        public,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec!["https://app.example/callback".into()],
        scopes: vec!["profile".into(), "email".into()],
        ..NewClient::default()
    }
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tessera"),
            ("refresh_token", token),
        ],
    )
    .await
}

/// A refresh asking for the narrower scope `email`.
async fn refresh_narrowed(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tessera"),
            ("refresh_token", token),
            ("scope", "email"),
        ],
    )
    .await
}

fn string(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_owned()
}

async fn client_credentials(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (id, secret) = app.client(service_client()).await;
    let secret = secret.expect("confidential clients get a secret");
    assert!(secret.starts_with("tss_") && secret.len() >= 4 + 43);

    // client_secret_basic, full scope by default.
    let response = app
        .post_form(
            "/token",
            Some((&id, &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let tokens = body(response).await;
    assert_eq!(tokens["scope"], "api.read api.write");
    assert!(
        tokens.get("refresh_token").is_none(),
        "no refresh token for client_credentials"
    );
    let claims = app
        .state
        .verifier
        .verify(&string(&tokens, "access_token"))
        .await
        .unwrap();
    assert_eq!(claims.sub, id);
    assert_eq!(claims.client_id, id);
    assert!(claims.role.is_none() && claims.sid.is_none());

    // client_secret_post with a narrowed scope.
    let response = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "api.read"),
            ],
        )
        .await;
    assert_eq!(body(response).await["scope"], "api.read");

    let widened = app
        .post_form(
            "/token",
            Some((&id, &secret)),
            &[("grant_type", "client_credentials"), ("scope", "api.admin")],
        )
        .await;
    assert_oauth_error(widened, 400, "invalid_scope").await;
}

async fn client_authentication_failures(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (id, secret) = app.client(service_client()).await;
    let secret = secret.unwrap();
    let form = [("grant_type", "client_credentials")];

    // Basic with a wrong secret: 401 and a Basic challenge.
    let response = app
        .post_form("/token", Some((&id, "tss_wrong")), &form)
        .await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    assert_oauth_error(response, 401, "invalid_client").await;
    // Unknown client via Basic: identical answer.
    let response = app
        .post_form("/token", Some(("nobody", &secret)), &form)
        .await;
    assert_oauth_error(response, 401, "invalid_client").await;
    // client_secret_post with a wrong secret: 401 without a Basic challenge.
    let response = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "x"),
            ],
        )
        .await;
    assert!(response.headers().get("www-authenticate").is_none());
    assert_oauth_error(response, 401, "invalid_client").await;
    // A confidential client that shows no secret.
    let response = app
        .post_form(
            "/token",
            None,
            &[("grant_type", "client_credentials"), ("client_id", &id)],
        )
        .await;
    assert_oauth_error(response, 401, "invalid_client").await;
    // No client at all.
    let response = app.post_form("/token", None, &form).await;
    assert_oauth_error(response, 401, "invalid_client").await;
    // Two methods at once.
    let response = app
        .post_form(
            "/token",
            Some((&id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_oauth_error(response, 400, "invalid_request").await;
    // A grant the client is not registered for.
    let response = app
        .post_form(
            "/token",
            Some((&id, &secret)),
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
    assert_oauth_error(response, 400, "unauthorized_client").await;
    // A public client cannot use client_credentials.
    let response = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "tessera"),
            ],
        )
        .await;
    assert_oauth_error(response, 400, "unauthorized_client").await;
}

async fn malformed_token_requests(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (id, secret) = app.client(service_client()).await;
    let secret = secret.unwrap();
    let auth = Some((id.as_str(), secret.as_str()));
    assert_oauth_error(
        app.post_form("/token", auth, &[("grant_type", "password")])
            .await,
        400,
        "unsupported_grant_type",
    )
    .await;
    assert_oauth_error(
        app.post_form("/token", auth, &[("scope", "api.read")])
            .await,
        400,
        "invalid_request",
    )
    .await;
    // A repeated parameter.
    let response = app
        .post_form(
            "/token",
            auth,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "api.read"),
                ("scope", "api.write"),
            ],
        )
        .await;
    assert_oauth_error(response, 400, "invalid_request").await;
    // JSON instead of a form.
    let response = app
        .http
        .post(app.url("/token"))
        .basic_auth(&id, Some(&secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "invalid_request").await;
    // Invalid UTF-8 and an oversized body.
    let response = app
        .http
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(b"grant_type=\xff\xfe".to_vec())
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "invalid_request").await;
    let huge = format!("grant_type=client_credentials&x={}", "a".repeat(70 * 1024));
    let response = app
        .http
        .post(app.url("/token"))
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 413, "invalid_request").await;
    // Garbage refresh tokens of every shape.
    for token in [
        "",
        "garbage",
        "tsr_",
        &format!("tsr_{}", "0".repeat(67)),
        &"x".repeat(10_000),
    ] {
        let response = refresh(&app, token).await;
        let status = response.status().as_u16();
        let error = body(response).await["error"].clone();
        assert!(
            status == 400 && (error == "invalid_grant" || error == "invalid_request"),
            "{token:.20}: {error}"
        );
    }
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("rotate").await;

    let first = refresh(&app, &user.refresh_token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = body(first).await;
    let second_token = string(&first, "refresh_token");
    assert_ne!(second_token, user.refresh_token);
    assert_eq!(first["scope"], "account email openid phone profile");
    let access = string(&first, "access_token");
    assert_eq!(
        app.get_auth("/api/users/me", &access).await.status(),
        StatusCode::OK
    );

    // The presented token stopped working: presenting it again is reuse,
    // which revokes the whole family, newest token and access tokens included.
    assert_oauth_error(
        refresh(&app, &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(refresh(&app, &second_token).await, 400, "invalid_grant").await;
    assert_invalid_token(app.get_auth("/api/users/me", &access).await).await;
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;

    // Another session of the same user is untouched.
    let other = body(app.login(&user.email, PASSWORD).await).await;
    assert_eq!(
        refresh(&app, &string(&other, "refresh_token"))
            .await
            .status(),
        StatusCode::OK
    );
}

async fn refresh_scope_may_narrow_never_widen(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("narrow").await;
    let widened = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tessera"),
                ("refresh_token", &user.refresh_token),
                ("scope", "email offline_access"),
            ],
        )
        .await;
    assert_oauth_error(widened, 400, "invalid_scope").await;
    // The refused request did not rotate: the token still works, narrowed.
    let narrowed = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tessera"),
                ("refresh_token", &user.refresh_token),
                ("scope", "email"),
            ],
        )
        .await;
    assert_eq!(narrowed.status(), StatusCode::OK);
    let narrowed = body(narrowed).await;
    assert_eq!(narrowed["scope"], "email");
    // The family keeps its original scope.
    let again = body(refresh(&app, &string(&narrowed, "refresh_token")).await).await;
    assert_eq!(again["scope"], "account email openid phone profile");
}

/// A refresh with `scope` of a spent token is still reuse (the family is
/// revoked) or, within the grace, still the same successor: the scope
/// check before rotating must not answer first.
async fn a_scope_never_skips_reuse_detection_or_the_grace(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("scope-reuse").await;
    // The thief refreshes first; the victim's replay, with a scope, is reuse.
    let stolen = body(refresh(&app, &user.refresh_token).await).await;
    let thief_token = string(&stolen, "refresh_token");
    let thief_access = string(&stolen, "access_token");
    assert_oauth_error(
        refresh_narrowed(&app, &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(refresh(&app, &thief_token).await, 400, "invalid_grant").await;
    assert_invalid_token(app.get_auth("/api/users/me", &thief_access).await).await;

    // Within the grace, a replay with a scope gets the same successor.
    let app = TestApp::spawn_on_with(backend, |c| c.refresh_reuse_grace = 30).await;
    let user = app.user("scope-grace").await;
    let first = string(
        &body(refresh(&app, &user.refresh_token).await).await,
        "refresh_token",
    );
    let replay = refresh_narrowed(&app, &user.refresh_token).await;
    assert_eq!(replay.status(), StatusCode::OK);
    let replay = body(replay).await;
    assert_eq!(string(&replay, "refresh_token"), first, "no fork");
    assert_eq!(replay["scope"], "email");
    assert_eq!(refresh(&app, &first).await.status(), StatusCode::OK);
}

async fn refresh_tokens_are_bound_to_their_client(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("bound").await;
    let mut other = web_client(true);
    other.grant_types = vec!["refresh_token".into(), "authorization_code".into()];
    let (other_id, _) = app.client(other).await;
    let stolen = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &other_id),
                ("refresh_token", &user.refresh_token),
            ],
        )
        .await;
    assert_oauth_error(stolen, 400, "invalid_grant").await;
    // Nothing changed for the rightful client.
    assert_eq!(
        refresh(&app, &user.refresh_token).await.status(),
        StatusCode::OK
    );
}

async fn parallel_refreshes_never_fork_a_family(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    for round in 0..10 {
        let user = app.user(&format!("race{round}")).await;
        let responses = parallel_refreshes(&app, &user.refresh_token, 20).await;
        let mut winners = Vec::new();
        for response in responses {
            match response.status() {
                StatusCode::OK => winners.push(string(&body(response).await, "refresh_token")),
                StatusCode::BAD_REQUEST => {
                    assert_eq!(body(response).await["error"], "invalid_grant")
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert!(
            winners.len() <= 1,
            "round {round}: {} successes",
            winners.len()
        );
        // The losers were replays: the family is revoked, the winner's token too.
        for token in winners {
            assert_oauth_error(refresh(&app, &token).await, 400, "invalid_grant").await;
        }
    }
}

async fn grace_period_replays_get_the_same_successor(backend: Backend) {
    let app = TestApp::spawn_on_with(backend, |c| c.refresh_reuse_grace = 10).await;
    let user = app.user("grace").await;
    let responses = parallel_refreshes(&app, &user.refresh_token, 20).await;
    let mut successors = std::collections::HashSet::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
        successors.insert(string(&body(response).await, "refresh_token"));
    }
    assert_eq!(successors.len(), 1, "one successor: the family never forks");
    let successor = successors.into_iter().next().unwrap();

    // Past the grace period, a replay of the rotated token is reuse.
    app.clock.advance(11);
    assert_oauth_error(
        refresh(&app, &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(refresh(&app, &successor).await, 400, "invalid_grant").await;
}

async fn grace_replay_of_an_older_generation_is_reuse(backend: Backend) {
    let app = TestApp::spawn_on_with(backend, |c| c.refresh_reuse_grace = 10).await;
    let user = app.user("grace-old").await;
    let second = string(
        &body(refresh(&app, &user.refresh_token).await).await,
        "refresh_token",
    );
    let third = string(&body(refresh(&app, &second).await).await, "refresh_token");
    // The first token's successor is no longer current: no replay, reuse.
    assert_oauth_error(
        refresh(&app, &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(refresh(&app, &third).await, 400, "invalid_grant").await;
}

async fn idle_and_absolute_lifetimes(backend: Backend) {
    let configure = |c: &mut tessera::config::Config| {
        c.access_token_ttl = 60;
        c.refresh_idle_ttl = 100;
        c.refresh_absolute_ttl = 250;
    };
    let app = TestApp::spawn_on_with(backend, configure).await;
    // Idle: unused for longer than the idle lifetime.
    let idle = app.user("idle").await;
    app.clock.advance(101);
    assert_oauth_error(
        refresh(&app, &idle.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;

    // Absolute: used often enough, but the family is too old.
    let user = app.user("absolute").await;
    let mut token = user.refresh_token.clone();
    for _ in 0..2 {
        app.clock.advance(90);
        let response = refresh(&app, &token).await;
        assert_eq!(response.status(), StatusCode::OK);
        token = string(&body(response).await, "refresh_token");
    }
    app.clock.advance(90);
    assert_oauth_error(refresh(&app, &token).await, 400, "invalid_grant").await;
}

async fn authorization_code_with_pkce(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("code").await;
    let (client_id, _) = app.client(web_client(true)).await;
    let client = app.state.clients.get(&client_id).await.unwrap().unwrap();
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"; // RFC 7636 appendix B
    let request =
        |challenge: Option<&'static str>, method: Option<&'static str>| AuthorizationRequest {
            client: &client,
            user_id: &user.id,
            epoch: 0,
            session_id: "0123456789abcdef01234567",
            auth_time: 0,
            nonce: None,
            redirect_uri: Some("https://app.example/callback"),
            scope: "email profile",
            code_challenge: challenge,
            code_challenge_method: method,
            dpop_jkt: None,
        };
    // A public client must use PKCE, and only S256.
    assert!(
        issue_code(&app.state.grants, request(None, None))
            .await
            .is_err()
    );
    assert!(
        issue_code(&app.state.grants, request(Some(challenge), Some("plain")))
            .await
            .is_err()
    );
    assert!(
        issue_code(&app.state.grants, request(Some(challenge), None))
            .await
            .is_err()
    );

    let exchange = |code: String, verifier: &'static str, redirect: &'static str| {
        let app = &app;
        let client_id = client_id.clone();
        async move {
            app.post_form(
                "/token",
                None,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", &client_id),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ],
            )
            .await
        }
    };
    let redirect = "https://app.example/callback";

    // Wrong verifier, wrong redirect_uri: refused (and the code is spent).
    let code = issue_code(&app.state.grants, request(Some(challenge), Some("S256")))
        .await
        .unwrap();
    assert_oauth_error(
        exchange(
            code,
            "wrong-verifier-wrong-verifier-wrong-verifier",
            redirect,
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;
    let code = issue_code(&app.state.grants, request(Some(challenge), Some("S256")))
        .await
        .unwrap();
    assert_oauth_error(
        exchange(code, verifier, "https://app.example/other").await,
        400,
        "invalid_grant",
    )
    .await;

    // The happy path.
    let code = issue_code(&app.state.grants, request(Some(challenge), Some("S256")))
        .await
        .unwrap();
    let response = exchange(code.clone(), verifier, redirect).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = body(response).await;
    let access = string(&tokens, "access_token");
    let refresh_token = string(&tokens, "refresh_token");
    let claims = app.state.verifier.verify(&access).await.unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.client_id.as_str()),
        (user.id.as_str(), client_id.as_str())
    );
    assert_eq!(
        app.get_auth("/api/users/me", &access).await.status(),
        StatusCode::OK
    );

    // Replaying the code fails and revokes what it issued.
    assert_oauth_error(
        exchange(code, verifier, redirect).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_invalid_token(app.get_auth("/api/users/me", &access).await).await;
    let response = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", &refresh_token),
            ],
        )
        .await;
    assert_oauth_error(response, 400, "invalid_grant").await;

    // Codes live 60 seconds.
    let code = issue_code(&app.state.grants, request(Some(challenge), Some("S256")))
        .await
        .unwrap();
    app.clock.advance(61);
    assert_oauth_error(
        exchange(code, verifier, redirect).await,
        400,
        "invalid_grant",
    )
    .await;
}

async fn revoke_refresh_and_access_tokens(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("revoke").await;
    let form = |token: &str| {
        vec![
            ("client_id", "tessera".to_owned()),
            ("token", token.to_owned()),
        ]
    };
    let post = |token: &str| {
        let app = &app;
        let form = form(token);
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.post_form("/revoke", None, &pairs).await
        }
    };
    // Revoking the refresh token revokes its family, access tokens included.
    assert_eq!(post(&user.refresh_token).await.status(), StatusCode::OK);
    assert_oauth_error(
        refresh(&app, &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;

    // Revoking one access token leaves the session's refresh token alive.
    let session = body(app.login(&user.email, PASSWORD).await).await;
    let access = string(&session, "access_token");
    assert_eq!(post(&access).await.status(), StatusCode::OK);
    assert_invalid_token(app.get_auth("/api/users/me", &access).await).await;
    assert_eq!(
        refresh(&app, &string(&session, "refresh_token"))
            .await
            .status(),
        StatusCode::OK
    );

    // Unknown and already revoked tokens: still 200.
    for token in ["nonsense", &access, &user.refresh_token] {
        assert_eq!(post(token).await.status(), StatusCode::OK);
    }
    // No token parameter.
    assert_oauth_error(
        app.post_form("/revoke", None, &[("client_id", "tessera")])
            .await,
        400,
        "invalid_request",
    )
    .await;
    // Another client's token is not this client's to revoke.
    let (id, secret) = app.client(service_client()).await;
    let fresh = body(app.login(&user.email, PASSWORD).await).await;
    let response = app
        .post_form(
            "/revoke",
            Some((&id, &secret.unwrap())),
            &[("token", &string(&fresh, "refresh_token"))],
        )
        .await;
    assert_oauth_error(response, 400, "unauthorized_client").await;
    assert_eq!(
        refresh(&app, &string(&fresh, "refresh_token"))
            .await
            .status(),
        StatusCode::OK
    );
}

async fn introspection(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("introspect").await;
    let (id, secret) = app.client(service_client()).await;
    let secret = secret.unwrap();
    let introspect = |token: String| {
        let (app, id, secret) = (&app, id.clone(), secret.clone());
        async move {
            app.post_form("/introspect", Some((&id, &secret)), &[("token", &token)])
                .await
        }
    };

    let access = body(introspect(user.access_token.clone()).await).await;
    assert_eq!(access["active"], true);
    assert_eq!(access["sub"], user.id);
    assert_eq!(access["client_id"], "tessera");
    assert_eq!(access["scope"], "account email openid phone profile");
    assert_eq!(access["iss"], app.config.issuer);
    assert_eq!(access["token_type"], "Bearer");
    assert!(access["exp"].is_i64() && access["iat"].is_i64());

    let refresh_info = body(introspect(user.refresh_token.clone()).await).await;
    assert_eq!(refresh_info["active"], true);
    assert_eq!(refresh_info["token_type"], "refresh_token");
    assert_eq!(refresh_info["sub"], user.id);

    for dead in [
        "garbage".to_owned(),
        format!("{}x", user.access_token),
        "tsr_nothing".to_owned(),
    ] {
        assert_eq!(body(introspect(dead).await).await, json!({"active": false}));
    }
    // After a rotation the old refresh token is inactive.
    refresh(&app, &user.refresh_token).await;
    assert_eq!(
        body(introspect(user.refresh_token.clone()).await).await,
        json!({"active": false})
    );

    // Public clients and unauthenticated callers cannot introspect.
    let response = app
        .post_form(
            "/introspect",
            None,
            &[("client_id", "tessera"), ("token", &user.access_token)],
        )
        .await;
    assert_oauth_error(response, 401, "invalid_client").await;
    let response = app
        .post_form("/introspect", None, &[("token", &user.access_token)])
        .await;
    assert_oauth_error(response, 401, "invalid_client").await;
}

async fn password_change_kills_refresh_families(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user: TestUser = app.user("pwchange").await;
    let changed = app
        .put_json_auth(
            "/api/users/updatepassword",
            &user.access_token,
            &json!({"old_password": PASSWORD, "new_password": "brand new password"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_oauth_error(
        refresh(&app, &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;
}

async fn tokens_survive_a_restart(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("restart").await;
    let app = app.restart().await;
    let response = refresh(&app, &user.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let next = string(&body(response).await, "refresh_token");
    let app = app.restart().await;
    assert_eq!(refresh(&app, &next).await.status(), StatusCode::OK);
    assert_oauth_error(
        refresh(&app, &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
}

/// RFC 9700 §4.8.2: a confidential client may skip PKCE, but a
/// code_verifier for a code issued without a challenge is a stripped
/// challenge (a downgrade) and is refused.
#[tokio::test]
async fn pkce_downgrade_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.user("downgrade").await;
    let (client_id, secret) = app.client(web_client(false)).await;
    let secret = secret.unwrap();
    let client = app.state.clients.get(&client_id).await.unwrap().unwrap();
    let code = || {
        issue_code(
            &app.state.grants,
            AuthorizationRequest {
                client: &client,
                user_id: &user.id,
                epoch: 0,
                session_id: "0123456789abcdef01234567",
                auth_time: 0,
                nonce: None,
                redirect_uri: Some("https://app.example/callback"),
                scope: "profile",
                code_challenge: None,
                code_challenge_method: None,
                dpop_jkt: None,
            },
        )
    };
    let exchange = async |code: &str, verifier: Option<&str>| {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "https://app.example/callback"),
        ];
        form.extend(verifier.map(|v| ("code_verifier", v)));
        app.post_form("/token", Some((&client_id, &secret)), &form)
            .await
    };
    let stripped = code().await.unwrap();
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    assert_oauth_error(
        exchange(&stripped, Some(verifier)).await,
        400,
        "invalid_grant",
    )
    .await;
    let plain = code().await.unwrap();
    assert_eq!(exchange(&plain, None).await.status(), StatusCode::OK);
}

/// Failed client authentications from one address are counted in the
/// token store; past the limit they answer 429 with `Retry-After`, while
/// the right secret keeps working (a flood cannot lock a client out).
#[tokio::test]
async fn failed_client_authentications_are_throttled_per_address() {
    use tessera::domain::clients::CLIENT_AUTH_FAILURES_PER_ADDRESS as LIMIT;
    let app = TestApp::spawn().await;
    let (id, secret) = app.client(service_client()).await;
    let secret = secret.unwrap();
    let form = [("grant_type", "client_credentials")];
    for _ in 0..LIMIT.max {
        let wrong = app
            .post_form("/token", Some((&id, "tss_wrong")), &form)
            .await;
        assert_oauth_error(wrong, 401, "invalid_client").await;
    }
    for path in ["/token", "/introspect", "/revoke"] {
        let throttled = app
            .post_form(
                path,
                Some((&id, "tss_wrong")),
                &[("grant_type", "client_credentials"), ("token", "x")],
            )
            .await;
        let retry: u64 = throttled.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=LIMIT.window).contains(&retry), "{retry}");
        assert_oauth_error(throttled, 429, "invalid_client").await;
    }
    let right = app.post_form("/token", Some((&id, &secret)), &form).await;
    assert_eq!(right.status(), StatusCode::OK);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("tessera_client_auth_failures_total"));
    app.clock.advance(LIMIT.window as i64);
    let wrong = app
        .post_form("/token", Some((&id, "tss_wrong")), &form)
        .await;
    assert_oauth_error(wrong, 401, "invalid_client").await;
}

on_every_backend!(
    client_credentials,
    client_authentication_failures,
    malformed_token_requests,
    refresh_rotates_and_reuse_revokes_the_family,
    refresh_scope_may_narrow_never_widen,
    a_scope_never_skips_reuse_detection_or_the_grace,
    refresh_tokens_are_bound_to_their_client,
    parallel_refreshes_never_fork_a_family,
    grace_period_replays_get_the_same_successor,
    grace_replay_of_an_older_generation_is_reuse,
    idle_and_absolute_lifetimes,
    authorization_code_with_pkce,
    revoke_refresh_and_access_tokens,
    introspection,
    password_change_kills_refresh_families,
    tokens_survive_a_restart,
);

/// `n` refreshes of one token, sent at the same time from separate tasks.
async fn parallel_refreshes(app: &TestApp, token: &str, n: usize) -> Vec<reqwest::Response> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, url, token) = (app.http.clone(), app.url("/token"), token.to_owned());
            tokio::spawn(async move {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("client_id", "tessera"),
                    ("refresh_token", token.as_str()),
                ];
                http.post(url).form(&form).send().await.expect("request")
            })
        })
        .collect();
    let mut responses = Vec::with_capacity(n);
    for task in tasks {
        responses.push(task.await.expect("task"));
    }
    responses
}
