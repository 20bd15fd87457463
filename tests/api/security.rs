//! Security round 2: each attack that worked against the earlier code, tried
//! again from outside (real HTTP, real concurrency, real stores).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera::domain::clients::{NewClient, first_party_client};
use tessera::domain::tokens::UserGrant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::common::{
    Backend, PASSWORD, TestApp, TestUser, assert_invalid_token, assert_oauth_error, assert_problem,
    body, unique_email,
};

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Sends `n` requests at once and returns their statuses.
async fn in_parallel<F, Fut>(n: usize, request: F) -> Vec<StatusCode>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..n {
        set.spawn(request(i));
    }
    let mut statuses = Vec::new();
    while let Some(response) = set.join_next().await {
        statuses.push(response.unwrap().status());
    }
    statuses
}

fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

// --- 1. Parallel guesses cannot pass the login budget -----------------------

async fn parallel_wrong_logins_verify_at_most_the_budget(backend: Backend) {
    // Cost 10: each verify takes long enough that all 96 guesses are in
    // flight together (the earlier code let every one of them through).
    let app = TestApp::spawn_on_with(backend, |c| c.bcrypt_cost = 10).await;
    let email = unique_email("parallel-guess");
    assert_eq!(app.signup(&email, PASSWORD).await.status(), 201);
    let (http, url) = (app.http.clone(), app.url("/api/users/login"));
    let statuses = in_parallel(96, |i| {
        let (http, url, email) = (http.clone(), url.clone(), email.clone());
        async move {
            http.post(url)
                .json(&json!({"email": email, "password": format!("guess-{i:04}")}))
                .send()
                .await
                .unwrap()
        }
    })
    .await;
    let verified = count(&statuses, StatusCode::UNAUTHORIZED);
    let refused = count(&statuses, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        verified <= 10,
        "{verified} guesses were verified: {statuses:?}"
    );
    assert_eq!(verified + refused, 96, "{statuses:?}");
    // The budget is spent for the right password too, until the window ends.
    assert_eq!(app.login(&email, PASSWORD).await.status(), 429);
    app.clock.advance(15 * 60);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
}

mod parallel_logins {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        parallel_wrong_logins_verify_at_most_the_budget(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        parallel_wrong_logins_verify_at_most_the_budget(Backend::Redis).await
    }
}

#[tokio::test]
async fn successful_logins_do_not_spend_the_budget() {
    let app = TestApp::spawn().await;
    let user = app.user("many-logins").await;
    for _ in 0..30 {
        assert_eq!(app.login(&user.email, PASSWORD).await.status(), 200);
    }
}

// --- 5. updatepassword has an attempt budget --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_token_cannot_guess_the_current_password() {
    let app = TestApp::spawn_with(|c| c.bcrypt_cost = 10).await;
    let user = app.user("pw-guess").await;
    let (http, url, token) = (
        app.http.clone(),
        app.url("/api/users/updatepassword"),
        user.access_token.clone(),
    );
    let statuses = in_parallel(40, |i| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            http.put(url)
                .bearer_auth(token)
                .json(&json!({"old_password": format!("guess-{i:04}"), "new_password": "a new password 1"}))
                .send()
                .await
                .unwrap()
        }
    })
    .await;
    let verified = count(&statuses, StatusCode::FORBIDDEN);
    assert!(
        verified <= 5,
        "{verified} guesses were verified: {statuses:?}"
    );
    assert_eq!(
        verified + count(&statuses, StatusCode::TOO_MANY_REQUESTS),
        40
    );
    let refused = app
        .put_json_auth(
            "/api/users/updatepassword",
            &user.access_token,
            &json!({"old_password": PASSWORD, "new_password": "a new password 1"}),
        )
        .await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, 429, "too_many_requests").await;
}

// --- 2. Only admin-scoped first-party tokens reach the admin API ------------

/// A token a third-party client obtained for `user` with scope `email`, as
/// `/authorize` + `/token` would issue it.
async fn third_party_token(app: &TestApp, user: &TestUser, role: &str) -> String {
    let (client_id, _) = app
        .client(NewClient {
            name: "Third party".into(),
            public: true,
            grant_types: vec!["authorization_code".into()],
            redirect_uris: vec!["https://third.example/cb".into()],
            scopes: vec!["email".into(), "profile".into()],
            ..NewClient::default()
        })
        .await;
    let client = app.state.clients.get(&client_id).await.unwrap().unwrap();
    let epoch = app.state.tokens.credential_epoch(&user.id).await.unwrap();
    let issued = app
        .state
        .tokens
        .start_session(
            UserGrant {
                user_id: &user.id,
                role,
                client: &client,
                scope: "email profile",
                with_refresh: false,
                epoch,
                session_id: "0123456789abcdef01234567",
                auth_time: 0,
                nonce: None,
                jkt: None,
            },
            app.state.tokens.new_family_id(),
        )
        .await
        .unwrap();
    issued.access_token
}

#[tokio::test]
async fn a_third_party_token_of_an_admin_cannot_administer() {
    let app = TestApp::spawn().await;
    let admin = app.user("3p-admin").await;
    app.state
        .admin
        .set_role_by_email(&admin.email, "admin")
        .await
        .unwrap();
    let token = third_party_token(&app, &admin, "admin").await;
    assert_eq!(claims_of(&token)["role"], "admin");
    let listed = app.get_auth("/api/admin/clients", &token).await;
    assert_eq!(
        listed.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"admin\""
    );
    assert_problem(listed, 403, "insufficient_scope").await;
    let created = app
        .http
        .post(app.url("/api/admin/clients"))
        .bearer_auth(&token)
        .json(
            &json!({"name": "Evil", "first_party": true, "grant_types": ["authorization_code"],
                      "redirect_uris": ["https://evil.example/cb"], "scopes": ["account"]}),
        )
        .send()
        .await
        .unwrap();
    assert_problem(created, 403, "insufficient_scope").await;
    // Nor may it change the account: that needs `account`.
    let changed = app
        .put_json_auth(
            "/api/users/updateusers",
            &token,
            &json!({"fname": "Mallory"}),
        )
        .await;
    assert_problem(changed, 403, "insufficient_scope").await;
    // Reading with `profile` still works.
    assert_eq!(app.get_auth("/api/users/me", &token).await.status(), 200);
}

#[tokio::test]
async fn a_demoted_admin_loses_the_admin_api_at_once() {
    let app = TestApp::spawn().await;
    let token = app.admin_token("demoted").await;
    assert_eq!(
        app.get_auth("/api/admin/clients", &token).await.status(),
        200
    );
    let email = app
        .state
        .users
        .profile(claims_of(&token)["sub"].as_str().unwrap())
        .await
        .unwrap()
        .email;
    app.state
        .admin
        .set_role_by_email(&email, "user")
        .await
        .unwrap();
    assert_problem(
        app.get_auth("/api/admin/clients", &token).await,
        403,
        "forbidden",
    )
    .await;
    // And its next token no longer carries `admin`.
    let tokens = body(app.login(&email, PASSWORD).await).await;
    assert!(!tokens["scope"].as_str().unwrap().contains("admin"));
}

// --- 3. /revoke cannot be forged from a family id ---------------------------

async fn a_forged_refresh_token_revokes_nothing(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("forged-revoke").await;
    let fid = claims_of(&user.access_token)["fid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(user.refresh_token.contains(&fid));
    // The same shape as a real token of the family: `tsr_` + fid + 43 chars.
    let forged = format!(
        "tsr_{fid}{}",
        "A".repeat(user.refresh_token.len() - 4 - fid.len())
    );
    let answered = app
        .post_form(
            "/revoke",
            None,
            &[("token", &forged), ("client_id", "tessera")],
        )
        .await;
    assert_eq!(answered.status(), 200);
    // The user is still signed in.
    assert_eq!(
        app.get_auth("/api/users/me", &user.access_token)
            .await
            .status(),
        200
    );
    let refreshed = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &user.refresh_token),
                ("client_id", "tessera"),
            ],
        )
        .await;
    assert_eq!(refreshed.status(), 200);
}

// --- 4. A password change ends everything that began before it --------------

async fn change_password(app: &TestApp, user: &TestUser, new: &str) {
    let changed = app
        .put_json_auth(
            "/api/users/updatepassword",
            &user.access_token,
            &json!({"old_password": PASSWORD, "new_password": new}),
        )
        .await;
    assert_eq!(changed.status(), 200);
}

/// Whole-second `iat` cannot order a token and a password change within
/// one second; the credential epoch can. Run until the old token, the
/// change and the new login fall in the same second, then: the token from
/// before dies and the login from after lives.
async fn the_epoch_is_exact_within_one_second(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let user = app.user("same-second").await;
        let before = body(app.login(&user.email, PASSWORD).await).await;
        change_password(&app, &user, "a new password 1").await;
        let after = body(app.login(&user.email, "a new password 1").await).await;
        let token_before = before["access_token"].as_str().unwrap();
        let token_after = after["access_token"].as_str().unwrap();
        if claims_of(token_before)["iat"] != claims_of(token_after)["iat"] {
            assert!(Instant::now() < deadline, "never within one second");
            continue;
        }
        assert_invalid_token(app.get_auth("/api/users/me", token_before).await).await;
        assert_eq!(
            app.get_auth("/api/users/me", token_after).await.status(),
            200
        );
        let old_refresh = app
            .post_form(
                "/token",
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", before["refresh_token"].as_str().unwrap()),
                    ("client_id", "tessera"),
                ],
            )
            .await;
        assert_oauth_error(old_refresh, 400, "invalid_grant").await;
        let new_refresh = app
            .post_form(
                "/token",
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", after["refresh_token"].as_str().unwrap()),
                    ("client_id", "tessera"),
                ],
            )
            .await;
        assert_eq!(new_refresh.status(), 200);
        return;
    }
}

crate::on_every_backend!(
    a_forged_refresh_token_revokes_nothing,
    the_epoch_is_exact_within_one_second
);

#[tokio::test]
async fn a_login_that_checked_the_old_password_starts_no_session() {
    let app = TestApp::spawn().await;
    let user = app.user("in-flight").await;
    let client = "127.0.0.1".parse().unwrap();
    // The password is checked (and the epoch read) …
    let signed_in = app
        .state
        .users
        .authenticate(
            &user.email,
            PASSWORD,
            tessera::domain::users::SignInFrom {
                ip: client,
                client_id: "tessera",
            },
        )
        .await
        .unwrap();
    // … the password changes while that login is still in flight …
    change_password(&app, &user, "a new password 1").await;
    // … and its session never starts.
    let tessera = first_party_client();
    let started = app
        .state
        .tokens
        .start_session(
            UserGrant {
                user_id: &user.id,
                role: &signed_in.user.role,
                client: &tessera,
                scope: "email profile",
                with_refresh: true,
                epoch: signed_in.epoch,
                session_id: &signed_in.session_id,
                auth_time: signed_in.auth_time,
                nonce: None,
                jkt: None,
            },
            app.state.tokens.new_family_id(),
        )
        .await;
    assert!(started.is_err(), "a session started after the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_a_password_change_over_http_ends_dead() {
    // Cost 12: the login's verify and the change's verify + hash overlap.
    let app = Arc::new(TestApp::spawn_with(|c| c.bcrypt_cost = 12).await);
    let user = app.user("race").await;
    let login = {
        let app = app.clone();
        let email = user.email.clone();
        tokio::spawn(async move { app.login(&email, PASSWORD).await })
    };
    change_password(&app, &user, "a new password 1").await;
    let login = login.await.unwrap();
    // Whatever the interleaving, nothing of the old password survives.
    if login.status() == StatusCode::OK {
        let tokens = body(login).await;
        assert_invalid_token(
            app.get_auth("/api/users/me", tokens["access_token"].as_str().unwrap())
                .await,
        )
        .await;
        let refreshed = app
            .post_form(
                "/token",
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                    ("client_id", "tessera"),
                ],
            )
            .await;
        assert_oauth_error(refreshed, 400, "invalid_grant").await;
    } else {
        assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    }
}

// --- 6. Floods: half-sent requests, slow bodies, signups, the bcrypt queue --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_half_sent_requests_are_dropped_while_healthz_answers() {
    let app = TestApp::spawn_with(|c| c.header_read_timeout = 2).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut half_open = Vec::new();
    // Some send nothing at all (hyper's own timer only starts once it
    // knows the protocol from the first bytes).
    for _ in 0..20 {
        half_open.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        half_open.push(stream);
    }
    // The server still answers everyone else, at once.
    let start = Instant::now();
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert!(start.elapsed() < Duration::from_secs(1));
    // Every half-sent request is closed by the server within the header
    // timeout (a generous deadline for a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(15);
    for mut stream in half_open {
        let mut buf = [0u8; 512];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {} // EOF, a 408, or a reset: closed.
            Err(_) => panic!("a half-sent request was still open after the header timeout"),
        }
    }
}

#[tokio::test]
async fn a_trickled_body_is_answered_408() {
    let app = TestApp::spawn_with(|c| c.request_timeout = 1).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/users/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\"",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "the connection was held");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bcrypt_queue_answers_503_at_once_while_healthz_stays_fast() {
    let app = TestApp::spawn_with(|c| {
        c.bcrypt_cost = 12;
        c.bcrypt_queue = 2;
    })
    .await;
    let (http, url) = (app.http.clone(), app.url("/api/users/signup"));
    let mut set = JoinSet::new();
    for i in 0..24 {
        let (http, url) = (http.clone(), url.clone());
        set.spawn(async move {
            let start = Instant::now();
            let response = http
                .post(url)
                .json(
                    &json!({"email": unique_email(&format!("flood{i}")), "password": PASSWORD,
                              "fname": "F", "lname": "L"}),
                )
                .send()
                .await
                .unwrap();
            (response, start.elapsed())
        });
    }
    let health = Instant::now();
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert!(health.elapsed() < Duration::from_millis(500));
    let mut busy = 0;
    while let Some(done) = set.join_next().await {
        let (response, took) = done.unwrap();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            busy += 1;
            assert_eq!(response.headers()["retry-after"], "1");
            // Refused at once, not after waiting for the queue.
            assert!(took < Duration::from_millis(500), "503 after {took:?}");
            assert_problem(response, 503, "overloaded").await;
        } else {
            assert_eq!(response.status(), StatusCode::CREATED);
        }
    }
    assert!(busy > 0, "the queue never filled");
}

#[tokio::test]
async fn signups_have_a_budget_per_address() {
    let app = TestApp::spawn_with(|c| c.signups_per_address = 3).await;
    for i in 0..3 {
        let email = unique_email(&format!("budget{i}"));
        assert_eq!(app.signup(&email, PASSWORD).await.status(), 201);
    }
    let refused = app.signup(&unique_email("budget4"), PASSWORD).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, 429, "too_many_requests").await;
}

// --- 7. The smaller ones ----------------------------------------------------

#[tokio::test]
async fn introspection_reports_an_expired_token_inactive_at_once() {
    let app = TestApp::spawn().await;
    let user = app.user("introspect-exp").await;
    let (resource, secret) = app
        .client(NewClient {
            name: "API".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["api".into()],
            ..NewClient::default()
        })
        .await;
    let secret = secret.unwrap();
    let exp = claims_of(&user.access_token)["exp"].as_i64().unwrap();
    app.clock.advance(exp - app.clock.now() + 1); // 1 s past exp, within the leeway
    let answer = body(
        app.post_form(
            "/introspect",
            Some((&resource, &secret)),
            &[("token", &user.access_token)],
        )
        .await,
    )
    .await;
    assert_eq!(answer, json!({"active": false}));
}

#[tokio::test]
async fn a_wrong_client_cannot_burn_someone_elses_code() {
    use sha2::{Digest, Sha256};
    use tessera::domain::grants::{AuthorizationRequest, issue_code};
    let app = TestApp::spawn().await;
    let user = app.user("code-burn").await;
    let public = |name: &str| NewClient {
        name: name.into(),
        public: true,
        grant_types: vec!["authorization_code".into()],
        redirect_uris: vec!["https://app.example/cb".into()],
        scopes: vec!["profile".into()],
        ..NewClient::default()
    };
    let (victim, _) = app.client(public("Victim")).await;
    let (attacker, _) = app.client(public("Attacker")).await;
    let verifier = "a-long-enough-code-verifier-for-pkce-tests-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let client = app.state.clients.get(&victim).await.unwrap().unwrap();
    let code = issue_code(
        &app.state.grants,
        AuthorizationRequest {
            client: &client,
            user_id: &user.id,
            epoch: 0,
            session_id: "0123456789abcdef01234567",
            auth_time: 0,
            nonce: None,
            redirect_uri: None,
            scope: "profile",
            code_challenge: Some(&challenge),
            code_challenge_method: Some("S256"),
            dpop_jkt: None,
        },
    )
    .await
    .unwrap();
    let exchange = |client_id: &str, verifier: &str| {
        let form = vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.clone()),
            ("client_id".to_owned(), client_id.to_owned()),
            ("code_verifier".to_owned(), verifier.to_owned()),
        ];
        app.http.post(app.url("/token")).form(&form).send()
    };
    // The wrong client, then the right client with a wrong verifier …
    assert_oauth_error(
        exchange(&attacker, verifier).await.unwrap(),
        400,
        "invalid_grant",
    )
    .await;
    let wrong = "b-long-enough-code-verifier-for-pkce-tests-0123456789";
    assert_oauth_error(
        exchange(&victim, wrong).await.unwrap(),
        400,
        "invalid_grant",
    )
    .await;
    // … and the code still works for its client.
    assert_eq!(exchange(&victim, verifier).await.unwrap().status(), 200);
}

#[tokio::test]
async fn otp_guesses_are_capped_per_day_across_codes() {
    let app = TestApp::spawn().await;
    let user = app.user("otp-cap").await;
    let mut wrong_tries = 0;
    for round in 0..2 {
        if round > 0 {
            app.clock.advance(61); // the per-email request limit
        }
        let asked = app
            .post_json("/api/users/forgotpasswords", &json!({"email": user.email}))
            .await;
        assert_eq!(asked.status(), 202);
        for _ in 0..5 {
            let tried = app
                .post_json(
                    "/api/users/resetpasswordotps",
                    &json!({"email": user.email, "otp": "000000", "new_password": "a new password 1"}),
                )
                .await;
            assert_eq!(tried.status(), 400);
            wrong_tries += 1;
        }
    }
    assert_eq!(wrong_tries, 10);
    // A third code: the day's budget is spent, even for the right code.
    app.clock.advance(61);
    assert_eq!(
        app.post_json("/api/users/forgotpasswords", &json!({"email": user.email}))
            .await
            .status(),
        202
    );
    let code = mailed_code(&app, &user.email, 3).await;
    let refused = app
        .post_json(
            "/api/users/resetpasswordotps",
            &json!({"email": user.email, "otp": code, "new_password": "a new password 1"}),
        )
        .await;
    assert_problem(refused, 429, "too_many_requests").await;
}

/// The code of the `nth` mail (counting from 1) to `email` in the app's
/// `.eml` folder, waiting for it to be written.
async fn mailed_code(app: &TestApp, email: &str, nth: usize) -> String {
    let dir = app.config.data_dir.join("mail");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut mails: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let modified = e.metadata().ok()?.modified().ok()?;
                text.contains(email).then_some((modified, text))
            })
            .collect();
        if mails.len() >= nth {
            mails.sort_by_key(|(at, _)| *at);
            return crate::common::otp_in(&mails[nth - 1].1);
        }
        assert!(Instant::now() < deadline, "mail {nth} never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_mail_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    let user = app.user("modes").await;
    app.post_json("/api/users/forgotpasswords", &json!({"email": user.email}))
        .await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let data = &app.config.data_dir;
    assert_eq!(mode(data), 0o700);
    assert_eq!(mode(&data.join("tessera.db")), 0o600);
    assert_eq!(mode(&data.join("mail")), 0o700);
    let deadline = Instant::now() + Duration::from_secs(30);
    let eml = loop {
        let found = std::fs::read_dir(data.join("mail"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"));
        if let Some(eml) = found {
            // The mailer restricts the file right after writing it.
            if mode(&eml) == 0o600 {
                break eml;
            }
        }
        assert!(Instant::now() < deadline, "no private .eml file appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(mode(&eml), 0o600);
}

#[tokio::test]
async fn revocation_markers_outlive_the_leeway() {
    let app = TestApp::spawn_on(Backend::Redis).await;
    let user = app.user("marker-ttl").await;
    let claims = claims_of(&user.access_token);
    let answered = app
        .post_form(
            "/revoke",
            None,
            &[("token", &user.access_token), ("client_id", "tessera")],
        )
        .await;
    assert_eq!(answered.status(), 200);
    let client = ::redis::Client::open(crate::common::redis_server().url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("tessera:at:{{{}}}", claims["jti"].as_str().unwrap());
    let expires: i64 = ::redis::cmd("EXPIRETIME")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    assert_eq!(expires, exp + app.config.clock_leeway as i64);
    // The family is kept while access tokens minted from it may live.
    let family = format!("tf{{{}}}", claims["fid"].as_str().unwrap());
    let family_expires: i64 = ::redis::cmd("EXPIRETIME")
        .arg(&family)
        .query_async(&mut conn)
        .await
        .unwrap();
    let absolute = claims["iat"].as_i64().unwrap() + app.config.refresh_absolute_ttl as i64;
    assert!(
        family_expires >= absolute + app.config.retired_key_window() as i64,
        "{family_expires} < {absolute} + window"
    );
}

#[tokio::test]
async fn a_revoked_family_is_remembered_past_its_expiry_on_the_embedded_store() {
    // Families may end before the access tokens minted from them (per-client
    // lifetimes); purging must not forget that a family was revoked.
    let app = TestApp::spawn_with(|c| {
        c.access_token_ttl = 900;
        c.refresh_idle_ttl = 900;
        c.refresh_absolute_ttl = 900;
    })
    .await;
    let user = app.user("remembered").await;
    let answered = app
        .post_form(
            "/revoke",
            None,
            &[("token", &user.refresh_token), ("client_id", "tessera")],
        )
        .await;
    assert_eq!(answered.status(), 200);
    app.clock.advance(901);
    app.state
        .token_store
        .purge_expired(app.clock.now())
        .await
        .unwrap();
    let claims = claims_of(&user.access_token);
    let check = tessera::store::AccessCheck {
        jti: claims["jti"].as_str().unwrap(),
        sub: claims["sub"].as_str().unwrap(),
        family: claims["fid"].as_str(),
        epoch: claims["cep"].as_u64().unwrap(),
    };
    assert!(
        app.state
            .token_store
            .is_access_revoked(&check)
            .await
            .unwrap()
    );
}
