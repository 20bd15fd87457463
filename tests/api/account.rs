//! Self-service (API.md §10, JSON): sessions, consents, email
//! verification and account deletion, on every backend, through HTTP.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tessera::config::{Config, SmtpSecurity};
use tessera::domain::clients::NewClient;
use tessera::store::{OtpCheck, OtpPurpose};

use crate::common::{
    Backend, PASSWORD, RedisServer, SmtpServer, TestApp, TestUser, assert_invalid_token,
    assert_oauth_error, assert_problem, body, free_port, otp_in, smtp_server,
};
use crate::on_every_backend;

const REDIRECT: &str = "https://prints.example/callback";
const VERIFIER: &str = "a-long-enough-code-verifier-for-the-account-tests-0123";

/// Mail through the test SMTP server, and the test's own client address
/// (see [`address_of`]).
fn with_smtp(server: &SmtpServer) -> impl FnOnce(&mut Config) {
    let port = server.port;
    move |c: &mut Config| {
        c.smtp_host = Some("127.0.0.1".into());
        c.smtp_port = port;
        c.smtp_security = SmtpSecurity::None;
        c.trusted_proxies = Some("127.0.0.1/32".into());
    }
}

/// A client address of the app's own (from its port), sent as
/// `X-Forwarded-For`: the per-address code limits are kept in the token
/// store, which the apps of parallel tests on Redis share. Ignored by apps
/// that trust no proxy.
fn address_of(app: &TestApp) -> String {
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    format!("10.{}.{}.1", port / 256, port % 256)
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, token: &str) -> Response {
    app.http
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("x-forwarded-for", address_of(app))
        .send()
        .await
        .expect("request")
}

async fn send_json(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    json: &Value,
) -> Response {
    app.http
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("x-forwarded-for", address_of(app))
        .json(json)
        .send()
        .await
        .expect("request")
}

/// `DELETE /api/users/me` with `password`.
async fn delete_me(app: &TestApp, token: &str, password: &str) -> Response {
    send_json(
        app,
        reqwest::Method::DELETE,
        "/api/users/me",
        token,
        &json!({ "password": password }),
    )
    .await
}

/// A request with a raw body of `content_type`.
async fn raw(
    app: &TestApp,
    token: &str,
    path: &str,
    method: reqwest::Method,
    content_type: &str,
    body: Vec<u8>,
) -> Response {
    app.http
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request")
}

/// A JSON POST without a token, from the app's own address.
async fn post_from(app: &TestApp, path: &str, json: &Value) -> Response {
    app.http
        .post(app.url(path))
        .header("x-forwarded-for", address_of(app))
        .json(json)
        .send()
        .await
        .expect("request")
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app.get_auth("/api/users/sessions", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await.as_array().expect("a list").clone()
}

async fn refresh(app: &TestApp, client_id: &str, refresh_token: &str) -> Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// The `fid` claim of an access token (its session id in the list).
fn family_of(access_token: &str) -> String {
    use base64::Engine;
    let payload = access_token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("JSON claims");
    claims["fid"].as_str().expect("fid").to_owned()
}

/// Another login of `user`: (access token, refresh token).
async fn login_again(app: &TestApp, user: &TestUser) -> (String, String) {
    let tokens = body(app.login(&user.email, PASSWORD).await).await;
    (
        tokens["access_token"].as_str().expect("access").to_owned(),
        tokens["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
    )
}

/// A third-party web client (not first party: no `account` scope).
async fn prints_client(app: &TestApp) -> String {
    app.client(NewClient {
        name: "Photo Prints".into(),
        public: true,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec![REDIRECT.into()],
        scopes: vec!["profile".into(), "email".into()],
        ..NewClient::default()
    })
    .await
    .0
}

/// A browser (cookies kept, redirects not followed) going through
/// `/authorize` of a third-party client.
struct Browser {
    http: reqwest::Client,
    base: String,
    client_id: String,
}

impl Browser {
    fn new(app: &TestApp, client_id: &str) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: app.base.clone(),
            client_id: client_id.to_owned(),
        }
    }

    async fn authorize(&self) -> Response {
        use base64::Engine;
        use sha2::Digest;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
        self.http
            .get(format!("{}/authorize", self.base))
            .query(&[
                ("response_type", "code"),
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", REDIRECT),
                ("scope", "profile email"),
                ("state", "s"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .unwrap()
    }

    /// Submits the page's form (its hidden fields plus `extra`).
    async fn submit(&self, page: Response, extra: &[(&str, &str)]) -> Response {
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        let mut form: Vec<(String, String)> = html
            .split("<input type=\"hidden\" ")
            .skip(1)
            .map(|input| {
                let attr = |name: &str| {
                    let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                    let end = start + input[start..].find('"').unwrap();
                    input[start..end]
                        .replace("&#x2f;", "/")
                        .replace("&amp;", "&")
                };
                (attr("name"), attr("value"))
            })
            .collect();
        form.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.http
            .post(format!("{}/authorize", self.base))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Signs `user` in and approves: the client's token response.
    async fn sign_in_and_approve(&self, app: &TestApp, user: &TestUser) -> Value {
        let login = self.authorize().await;
        let consent = self
            .submit(login, &[("email", &user.email), ("password", PASSWORD)])
            .await;
        let approved = self.submit(consent, &[("decision", "approve")]).await;
        self.exchange(app, approved).await
    }

    /// The tokens for the code a redirect carries.
    async fn exchange(&self, app: &TestApp, redirect: Response) -> Value {
        assert_eq!(redirect.status(), StatusCode::SEE_OTHER);
        let target = url::Url::parse(redirect.headers()["location"].to_str().unwrap()).unwrap();
        let code = target
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("a code");
        let tokens = app
            .post_form(
                "/token",
                None,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", &self.client_id),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await;
        assert_eq!(tokens.status(), StatusCode::OK);
        body(tokens).await
    }
}

fn string(value: &Value, key: &str) -> String {
    value[key].as_str().expect(key).to_owned()
}

/// The audit events of `kind` about `user_id`, as an admin reads them.
async fn events_of(app: &TestApp, kind: &str, user_id: &str) -> Vec<Value> {
    let admin = app.admin_token(&format!("auditor-{kind}")).await;
    let response = app
        .get_auth(
            &format!("/api/admin/events?type={kind}&user_id={user_id}"),
            &admin,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await["items"].as_array().unwrap().clone()
}

async fn sessions_are_listed_newest_first_with_names_and_current(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("sessions").await;
    app.clock.advance(5);
    let (second_access, _) = login_again(&app, &user).await;
    app.clock.advance(5);
    let client_id = prints_client(&app).await;
    let third_party = Browser::new(&app, &client_id)
        .sign_in_and_approve(&app, &user)
        .await;
    // A refresh of the first login moves its "last used".
    app.clock.advance(5);
    let refreshed = refresh(&app, "tessera", &user.refresh_token).await;
    assert_eq!(refreshed.status(), StatusCode::OK);

    let listed = sessions(&app, &second_access).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    let ids: Vec<String> = listed.iter().map(|s| string(s, "id")).collect();
    assert_eq!(
        ids,
        [
            family_of(&string(&third_party, "access_token")),
            family_of(&second_access),
            family_of(&user.access_token),
        ]
    );
    assert_eq!(listed[0]["client_id"], client_id.as_str());
    assert_eq!(listed[0]["client_name"], "Photo Prints");
    assert_eq!(listed[1]["client_id"], "tessera");
    assert_eq!(listed[1]["client_name"], "Tessera user API");
    let current: Vec<bool> = listed.iter().map(|s| s["current"] == true).collect();
    assert_eq!(current, [false, true, false]);
    for session in &listed {
        let mut keys: Vec<&String> = session.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "client_id",
                "client_name",
                "created_at",
                "current",
                "id",
                "last_used_at"
            ]
        );
    }
    let first = &listed[2];
    assert_ne!(first["last_used_at"], first["created_at"], "refreshed");
    assert_eq!(listed[1]["last_used_at"], listed[1]["created_at"]);
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(parse(&first["last_used_at"]) > parse(&first["created_at"]));
    assert!(parse(&listed[0]["created_at"]) > parse(&listed[1]["created_at"]));
}

async fn revoking_one_session_leaves_the_others(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("revoke-one").await;
    let (access, refresh_token) = login_again(&app, &user).await;
    let first = family_of(&user.access_token);

    let path = format!("/api/users/sessions/{first}");
    let revoked = send(&app, reqwest::Method::DELETE, &path, &access).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_oauth_error(
        refresh(&app, "tessera", &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;
    // The other session lives on.
    assert_eq!(
        refresh(&app, "tessera", &refresh_token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_auth("/api/users/me", &access).await.status(),
        StatusCode::OK
    );
    let listed = sessions(&app, &access).await;
    assert!(listed.iter().all(|s| s["id"] != first.as_str()));
    // Recorded: by the user themselves (no actor), with the address.
    let recorded = events_of(&app, "session_revoked", &user.id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["client_id"], "tessera");
    assert_eq!(recorded[0]["detail"]["session"], first.as_str());
    assert!(recorded[0]["detail"].get("actor").is_none());
    assert!(recorded[0]["ip"].is_string());
    // An ended session is gone: 404.
    assert_problem(
        send(&app, reqwest::Method::DELETE, &path, &access).await,
        404,
        "not_found",
    )
    .await;
}

async fn another_users_session_is_not_found_and_untouched(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let owner = app.user("owner").await;
    let intruder = app.user("intruder").await;
    let theirs = format!("/api/users/sessions/{}", family_of(&owner.access_token));
    let foreign = assert_problem(
        send(
            &app,
            reqwest::Method::DELETE,
            &theirs,
            &intruder.access_token,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let unknown = assert_problem(
        send(
            &app,
            reqwest::Method::DELETE,
            "/api/users/sessions/0123456789abcdef01234567",
            &intruder.access_token,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(foreign, unknown, "one answer for both");
    assert_eq!(
        app.get_auth("/api/users/me", &owner.access_token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        refresh(&app, "tessera", &owner.refresh_token)
            .await
            .status(),
        StatusCode::OK
    );
    // The intruder's list never shows the owner's session.
    let listed = sessions(&app, &intruder.access_token).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["current"], true);
}

async fn signing_out_everywhere_ends_every_token(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("everywhere").await;
    let (access, refresh_token) = login_again(&app, &user).await;
    let response = send(
        &app,
        reqwest::Method::DELETE,
        "/api/users/sessions",
        &access,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for token in [&user.access_token, &access] {
        assert_invalid_token(app.get_auth("/api/users/me", token).await).await;
    }
    for token in [&user.refresh_token, &refresh_token] {
        assert_oauth_error(refresh(&app, "tessera", token).await, 400, "invalid_grant").await;
    }
    // A sign-in after it lives, and is the only session listed.
    let (fresh, _) = login_again(&app, &user).await;
    let listed = sessions(&app, &fresh).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], family_of(&fresh).as_str());
}

async fn revoking_a_consent_asks_again_and_ends_that_clients_sessions(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("consent").await;
    let client_id = prints_client(&app).await;
    let browser = Browser::new(&app, &client_id);
    let before = app.clock.now();
    let third_party = browser.sign_in_and_approve(&app, &user).await;

    let consents = app
        .get_auth("/api/users/consents", &user.access_token)
        .await;
    assert_eq!(consents.status(), StatusCode::OK);
    let consents = body(consents).await;
    assert_eq!(consents.as_array().unwrap().len(), 1, "{consents}");
    let consent = &consents[0];
    assert_eq!(consent["client_id"], client_id.as_str());
    assert_eq!(consent["client_name"], "Photo Prints");
    assert_eq!(consent["scopes"], json!(["email", "profile"]));
    let granted = time::OffsetDateTime::parse(
        consent["granted_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!((before..=app.clock.now()).contains(&granted), "{consent}");

    let path = format!("/api/users/consents/{client_id}");
    let revoked = send(&app, reqwest::Method::DELETE, &path, &user.access_token).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    // That client's session is over; the user's own login is not.
    assert_oauth_error(
        refresh(&app, &client_id, &string(&third_party, "refresh_token")).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        refresh(&app, "tessera", &user.refresh_token).await.status(),
        StatusCode::OK
    );
    let listed = body(
        app.get_auth("/api/users/consents", &user.access_token)
            .await,
    )
    .await;
    assert_eq!(listed, json!([]));
    let recorded = events_of(&app, "consent_revoked", &user.id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["client_id"], client_id.as_str());
    // The browser session lives, but the client must ask again.
    let again = browser.authorize().await;
    assert_eq!(again.status(), StatusCode::OK, "the consent page, no code");
    assert!(again.text().await.unwrap().contains("Allow access?"));
    // Nothing left to revoke.
    assert_problem(
        send(&app, reqwest::Method::DELETE, &path, &user.access_token).await,
        404,
        "not_found",
    )
    .await;
}

/// Requests a verification code and returns it (the `n`th mail to the user).
async fn mailed_verification_code(
    app: &TestApp,
    smtp: &SmtpServer,
    user: &TestUser,
    n: usize,
) -> String {
    let response = send(
        app,
        reqwest::Method::POST,
        "/api/users/verifyemail",
        &user.access_token,
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let message = smtp.wait_for(&user.email, n).await.remove(n - 1);
    assert!(message.contains("verify the email address"), "{message}");
    otp_in(&message)
}

async fn verify(app: &TestApp, user: &TestUser, otp: &str) -> Response {
    send_json(
        app,
        reqwest::Method::POST,
        "/api/users/verifyemailotps",
        &user.access_token,
        &json!({ "otp": otp }),
    )
    .await
}

fn wrong_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

async fn email_verification_with_a_mailed_code(backend: Backend) {
    let smtp = smtp_server();
    let app = TestApp::spawn_on_with(backend, with_smtp(smtp)).await;
    let user = app.user("verify").await;
    let me = body(app.get_auth("/api/users/me", &user.access_token).await).await;
    assert_eq!(me["email_verified"], false);

    let code = mailed_verification_code(&app, smtp, &user, 1).await;
    assert_problem(
        verify(&app, &user, wrong_code(&code)).await,
        400,
        "invalid_otp",
    )
    .await;
    let verified = verify(&app, &user, &code).await;
    assert_eq!(verified.status(), StatusCode::OK);
    let verified = body(verified).await;
    assert_eq!(verified["email_verified"], true);
    assert_eq!(verified["id"], user.id.as_str());
    assert!(verified.get("password_hash").is_none() && verified.get("password").is_none());
    // Single use.
    assert_problem(verify(&app, &user, &code).await, 400, "invalid_otp").await;
    let me = body(app.get_auth("/api/users/me", &user.access_token).await).await;
    assert_eq!(me["email_verified"], true);
    let recorded = events_of(&app, "email_verified", &user.id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(!recorded[0].to_string().contains(&code));
}

async fn verification_codes_burn_and_expire(backend: Backend) {
    let smtp = smtp_server();
    let app = TestApp::spawn_on_with(backend, with_smtp(smtp)).await;
    let user = app.user("verify-burn").await;
    let code = mailed_verification_code(&app, smtp, &user, 1).await;
    for _ in 0..5 {
        assert_problem(
            verify(&app, &user, wrong_code(&code)).await,
            400,
            "invalid_otp",
        )
        .await;
    }
    assert_problem(verify(&app, &user, &code).await, 400, "invalid_otp").await;

    // Past ten minutes a code is dead.
    app.clock.advance(61);
    let code = mailed_verification_code(&app, smtp, &user, 2).await;
    app.clock.advance(10 * 60 + 1);
    assert_problem(verify(&app, &user, &code).await, 400, "invalid_otp").await;
    let me = body(app.get_auth("/api/users/me", &user.access_token).await).await;
    assert_eq!(me["email_verified"], false);
}

async fn codes_of_one_purpose_never_serve_the_other(backend: Backend) {
    let smtp = smtp_server();
    let app = TestApp::spawn_on_with(backend, with_smtp(smtp)).await;
    let user = app.user("purposes").await;

    // A verification code cannot reset the password…
    let verification = mailed_verification_code(&app, smtp, &user, 1).await;
    let reset = |otp: String| {
        let app = &app;
        let email = user.email.clone();
        async move {
            post_from(
                app,
                "/api/users/resetpasswordotps",
                &json!({"email": email, "otp": otp, "new_password": "a brand new password"}),
            )
            .await
        }
    };
    assert_problem(reset(verification.clone()).await, 400, "invalid_otp").await;
    // …and the request limits are shared: a reset code right after is 429.
    let forgot = post_from(
        &app,
        "/api/users/forgotpasswords",
        &json!({"email": user.email}),
    )
    .await;
    assert_problem(forgot, 429, "too_many_requests").await;

    // A reset code cannot verify the email.
    app.clock.advance(61);
    let forgot = post_from(
        &app,
        "/api/users/forgotpasswords",
        &json!({"email": user.email}),
    )
    .await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);
    let reset_code = otp_in(&smtp.wait_for(&user.email, 2).await[1]);
    if reset_code != verification {
        assert_problem(verify(&app, &user, &reset_code).await, 400, "invalid_otp").await;
    }
    // Each still serves its own purpose.
    assert_eq!(
        verify(&app, &user, &verification).await.status(),
        StatusCode::OK
    );
    assert_eq!(reset(reset_code).await.status(), StatusCode::OK);
}

/// A confidential client that may introspect.
async fn introspector(app: &TestApp) -> (String, String) {
    let (id, secret) = app
        .client(NewClient {
            name: "resource server".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["api.read".into()],
            ..NewClient::default()
        })
        .await;
    (id, secret.expect("a secret"))
}

async fn deleting_the_account_leaves_nothing_alive(backend: Backend) {
    let smtp = smtp_server();
    let app = TestApp::spawn_on_with(backend, with_smtp(smtp)).await;
    let user = app.user("delete").await;
    let (access, _) = login_again(&app, &user).await;
    let client_id = prints_client(&app).await;
    let third_party = Browser::new(&app, &client_id)
        .sign_in_and_approve(&app, &user)
        .await;
    // A reset code in flight.
    let forgot = post_from(
        &app,
        "/api/users/forgotpasswords",
        &json!({"email": user.email}),
    )
    .await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);
    let reset_code = otp_in(&smtp.wait_for(&user.email, 1).await[0]);

    assert_problem(
        delete_me(&app, &access, "not the password").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.get_auth("/api/users/me", &access).await.status(),
        StatusCode::OK,
        "a wrong password deletes nothing"
    );
    assert_eq!(
        delete_me(&app, &access, PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );

    // Every token is dead, at the resource layer and at introspection.
    let (rs_id, rs_secret) = introspector(&app).await;
    for token in [
        user.access_token.clone(),
        access.clone(),
        string(&third_party, "access_token"),
    ] {
        assert_invalid_token(app.get_auth("/api/users/me", &token).await).await;
    }
    for token in [
        user.access_token.clone(),
        string(&third_party, "access_token"),
        user.refresh_token.clone(),
        string(&third_party, "refresh_token"),
    ] {
        let answer = app
            .post_form(
                "/introspect",
                Some((&rs_id, &rs_secret)),
                &[("token", &token)],
            )
            .await;
        assert_eq!(body(answer).await, json!({"active": false}));
    }
    assert_oauth_error(
        refresh(&app, "tessera", &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(
        refresh(&app, &client_id, &string(&third_party, "refresh_token")).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_problem(
        app.login(&user.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    // The token-store state is gone, but for the epoch that refuses the tokens.
    let store = &app.state.token_store;
    let now = app.clock.now();
    assert!(store.user_families(&user.id, now).await.unwrap().is_empty());
    assert!(store.consents(&user.id, now).await.unwrap().is_empty());
    assert_eq!(
        store
            .check_otp(&user.id, OtpPurpose::PasswordReset, "x", now, 5)
            .await
            .unwrap(),
        OtpCheck::NoCode
    );
    assert!(store.credential_epoch(&user.id).await.unwrap() > 0);
    // Recorded with the deletion, by the user themselves.
    let recorded = events_of(&app, "user_deleted", &user.id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(recorded[0]["detail"].get("actor").is_none());
    assert!(!recorded[0].to_string().contains(PASSWORD));
    assert_problem(
        post_from(
            &app,
            "/api/users/resetpasswordotps",
            &json!({"email": user.email, "otp": reset_code, "new_password": "a brand new password"}),
        )
        .await,
        400,
        "invalid_otp",
    )
    .await;

    // The email can sign up again: a new account that no old token reaches.
    let again = app.signup(&user.email, PASSWORD).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let again = body(again).await;
    assert_ne!(again["id"], user.id.as_str());
    assert_eq!(again["email_verified"], false);
    assert_invalid_token(app.get_auth("/api/users/me", &access).await).await;
    let fresh = body(app.login(&user.email, PASSWORD).await).await;
    let me = app
        .get_auth("/api/users/me", &string(&fresh, "access_token"))
        .await;
    assert_eq!(body(me).await["id"], again["id"]);
    let listed = sessions(&app, &string(&fresh, "access_token")).await;
    assert_eq!(listed.len(), 1);
    let consents = app
        .get_auth("/api/users/consents", &string(&fresh, "access_token"))
        .await;
    assert_eq!(body(consents).await, json!([]));
}

on_every_backend!(
    sessions_are_listed_newest_first_with_names_and_current,
    revoking_one_session_leaves_the_others,
    another_users_session_is_not_found_and_untouched,
    signing_out_everywhere_ends_every_token,
    revoking_a_consent_asks_again_and_ends_that_clients_sessions,
    email_verification_with_a_mailed_code,
    verification_codes_burn_and_expire,
    codes_of_one_purpose_never_serve_the_other,
    deleting_the_account_leaves_nothing_alive,
);

#[tokio::test]
async fn wrong_deletion_passwords_spend_the_login_budget() {
    let app = TestApp::spawn().await;
    let user = app.user("delete-budget").await;
    let delete = |password: &'static str| delete_me(&app, &user.access_token, password);
    // The account's login budget: 10 failures per window.
    for _ in 0..10 {
        assert_problem(delete("wrong password!").await, 401, "invalid_credentials").await;
    }
    let throttled = delete("wrong password!").await;
    assert!(throttled.headers().contains_key("retry-after"));
    assert_problem(throttled, 429, "too_many_requests").await;
    // Shared with login, and the right password waits too.
    assert_problem(
        app.login(&user.email, PASSWORD).await,
        429,
        "too_many_requests",
    )
    .await;
    assert_problem(delete(PASSWORD).await, 429, "too_many_requests").await;
    assert_eq!(
        app.get_auth("/api/users/me", &user.access_token)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_admin_deletion_needs_no_password_and_says_whether_it_deleted() {
    let app = TestApp::spawn().await;
    let user = app.user("admin-delete").await;
    assert!(
        app.state
            .account
            .delete_user(&user.id, tessera::domain::audit::Actor::Cli)
            .await
            .unwrap()
    );
    assert!(
        !app.state
            .account
            .delete_user(&user.id, tessera::domain::audit::Actor::Cli)
            .await
            .unwrap()
    );
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;
    assert!(
        !app.state
            .account
            .delete_user(
                "0123456789abcdef01234567",
                tessera::domain::audit::Actor::Cli
            )
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn tokens_without_the_account_scope_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.user("no-account").await;
    let client_id = prints_client(&app).await;
    let third_party = Browser::new(&app, &client_id)
        .sign_in_and_approve(&app, &user)
        .await;
    let token = string(&third_party, "access_token");
    let family = family_of(&user.access_token);
    use reqwest::Method;
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/users/sessions".into(), None),
        (Method::DELETE, "/api/users/sessions".into(), None),
        (
            Method::DELETE,
            format!("/api/users/sessions/{family}"),
            None,
        ),
        (Method::GET, "/api/users/consents".into(), None),
        (
            Method::DELETE,
            format!("/api/users/consents/{client_id}"),
            None,
        ),
        (Method::POST, "/api/users/verifyemail".into(), None),
        (
            Method::POST,
            "/api/users/verifyemailotps".into(),
            Some(json!({"otp": "123456"})),
        ),
        (
            Method::DELETE,
            "/api/users/me".into(),
            Some(json!({ "password": PASSWORD })),
        ),
    ];
    for (method, path, json) in calls {
        let response = match &json {
            Some(json) => send_json(&app, method.clone(), &path, &token, json).await,
            None => send(&app, method.clone(), &path, &token).await,
        };
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            challenge, "Bearer error=\"insufficient_scope\", scope=\"account\"",
            "{method} {path}"
        );
        assert_problem(response, 403, "insufficient_scope").await;
        // Without a token at all: 401.
        let anonymous = app
            .http
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_invalid_token(anonymous).await;
    }
    // Nothing happened.
    assert_eq!(
        app.get_auth("/api/users/me", &user.access_token)
            .await
            .status(),
        StatusCode::OK
    );
    let consents = body(
        app.get_auth("/api/users/consents", &user.access_token)
            .await,
    )
    .await;
    assert_eq!(consents.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn hostile_ids_and_bodies_are_refused_cleanly() {
    let app = TestApp::spawn().await;
    let user = app.user("hostile").await;
    let token = &user.access_token;
    use reqwest::Method;
    let long = "a".repeat(10 * 1024);
    for id in [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "%00",
        "%FF%FE",
        "0123456789ABCDEF0123456g",
        "'%20OR%201=1",
        long.as_str(),
    ] {
        for base in ["/api/users/sessions/", "/api/users/consents/"] {
            let response = send(&app, Method::DELETE, &format!("{base}{id}"), token).await;
            assert_problem(response, 404, "not_found").await;
        }
    }
    // The user's session survived all of it.
    assert_eq!(sessions(&app, token).await.len(), 1);

    let raw = |path: &'static str, method: Method, content_type: &'static str, body: Vec<u8>| {
        raw(&app, token, path, method, content_type, body)
    };
    for (path, method) in [
        ("/api/users/verifyemailotps", Method::POST),
        ("/api/users/me", Method::DELETE),
    ] {
        assert_problem(
            raw(path, method.clone(), "application/json", b"{".to_vec()).await,
            400,
            "malformed_json",
        )
        .await;
        assert_problem(
            raw(path, method.clone(), "text/plain", b"{}".to_vec()).await,
            415,
            "unsupported_media_type",
        )
        .await;
        let mut huge = b"{\"otp\": \"".to_vec();
        huge.extend(std::iter::repeat_n(b'1', 70 * 1024));
        huge.extend(b"\"}");
        assert_problem(
            raw(path, method.clone(), "application/json", huge).await,
            413,
            "payload_too_large",
        )
        .await;
        let missing = assert_problem(
            raw(path, method.clone(), "application/json", b"{}".to_vec()).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(missing["errors"].as_object().unwrap().len(), 1, "{missing}");
        let typed = raw(
            path,
            method.clone(),
            "application/json",
            br#"{"otp": {"$gt": ""}, "password": ["x"], "role": "admin"}"#.to_vec(),
        )
        .await;
        let typed = assert_problem(typed, 422, "validation_failed").await;
        assert!(!typed.to_string().contains("$gt"), "never echoes values");
    }
    // Codes that cannot be codes are wrong codes.
    for otp in ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12345\u{0}"] {
        let response = send_json(
            &app,
            Method::POST,
            "/api/users/verifyemailotps",
            token,
            &json!({ "otp": otp }),
        )
        .await;
        assert_problem(response, 400, "invalid_otp").await;
    }
    // A password over 72 bytes can never match (bcrypt would truncate).
    let long_password = format!("{PASSWORD}{}", "x".repeat(80));
    let response = send_json(
        &app,
        Method::DELETE,
        "/api/users/me",
        token,
        &json!({ "password": long_password }),
    )
    .await;
    assert_problem(response, 401, "invalid_credentials").await;
    assert_eq!(
        app.get_auth("/api/users/me", token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_token_store_outage_is_503_and_changes_nothing() {
    let redis = RedisServer::start(free_port());
    let url = redis.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.redis_url = Some(tessera::config::Secret::new(url));
    })
    .await;
    let user = app.user("outage").await;
    let token = &user.access_token;
    let family = family_of(token);

    redis.stop();
    use reqwest::Method;
    for (method, path, json) in [
        (Method::GET, "/api/users/sessions".to_owned(), None),
        (Method::DELETE, "/api/users/sessions".to_owned(), None),
        (
            Method::DELETE,
            format!("/api/users/sessions/{family}"),
            None,
        ),
        (Method::GET, "/api/users/consents".to_owned(), None),
        (Method::POST, "/api/users/verifyemail".to_owned(), None),
        (
            Method::DELETE,
            "/api/users/me".to_owned(),
            Some(json!({ "password": PASSWORD })),
        ),
    ] {
        let response = match &json {
            Some(json) => send_json(&app, method.clone(), &path, token, json).await,
            None => send(&app, method.clone(), &path, token).await,
        };
        let problem = assert_problem(response, 503, "backend_unavailable").await;
        assert!(!problem.to_string().contains("127.0.0.1"), "{problem}");
    }
    // The domain calls themselves answer a store outage, not a panic.
    assert!(matches!(
        app.state.account.sessions(&user.id).await,
        Err(tessera::domain::DomainError::Store(
            tessera::store::StoreError::Unavailable { .. }
        ))
    ));
    assert!(matches!(
        app.state
            .account
            .delete_user(&user.id, tessera::domain::audit::Actor::Cli)
            .await,
        Err(tessera::domain::DomainError::Store(
            tessera::store::StoreError::Unavailable { .. }
        ))
    ));

    // The restarted Redis is empty (as after a crash without persistence):
    // a new login, and the user is still there.
    let _back = RedisServer::start(redis.port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let fresh = loop {
        let response = app.login(&user.email, PASSWORD).await;
        if response.status() == StatusCode::OK {
            break body(response).await;
        }
        assert!(std::time::Instant::now() < deadline, "not recovered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let fresh = string(&fresh, "access_token");
    let me = body(app.get_auth("/api/users/me", &fresh).await).await;
    assert_eq!(me["id"], user.id.as_str(), "the user was not deleted");
    assert_eq!(sessions(&app, &fresh).await.len(), 1);
}

/// Redis only: members of a user's family index whose family expired away
/// long ago are pruned by the listing, a member whose family is being
/// created right now is not, and consents stored before grant times were
/// get an estimate.
#[tokio::test]
async fn the_redis_index_is_pruned_and_old_consents_are_estimated() {
    use ::redis::AsyncCommands;
    let app = TestApp::spawn_on(Backend::Redis).await;
    let user = app.user("redis-index").await;
    let client = ::redis::Client::open(app.config.redis_url.as_ref().unwrap().expose()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let index = format!("tu{{{}}}", user.id);
    // The set older versions kept in its place is read (and pruned) too.
    let legacy = format!("tessera:user:{{{}}}:fams", user.id);
    let now = app.clock.now();
    let long_gone = format!("{:08x}0000000000000000", now - 2 * 24 * 3600);
    let legacy_gone = format!("{:08x}0000000000000001", now - 2 * 24 * 3600);
    let in_creation = format!("{:08x}0000000000000000", now);
    let _: () = conn
        .hset_multiple(&index, &[(&long_gone, ""), (&in_creation, "")])
        .await
        .unwrap();
    let _: () = conn.sadd(&legacy, &legacy_gone).await.unwrap();

    let listed = sessions(&app, &user.access_token).await;
    assert_eq!(listed.len(), 1);
    // Text fields (the version before) and packed ones (this version).
    let mut members: Vec<Vec<u8>> = conn.hkeys(&index).await.unwrap();
    members.sort();
    let mut expected = vec![
        hex::decode(family_of(&user.access_token)).unwrap(),
        in_creation.into_bytes(),
    ];
    expected.sort();
    assert_eq!(members, expected);
    let legacy_members: Vec<String> = conn.smembers(&legacy).await.unwrap();
    assert!(legacy_members.is_empty(), "{legacy_members:?}");

    // A consent as older versions stored it: the expiry alone.
    let expires_at = now + 1000;
    let consents = format!("tessera:user:{{{}}}:consents", user.id);
    let _: () = conn
        .hset(&consents, "legacy-client email profile", expires_at)
        .await
        .unwrap();
    let listed = app.state.account.consents(&user.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].client_name, "legacy-client", "a deleted client");
    assert_eq!(listed[0].scopes, ["email", "profile"]);
    assert_eq!(
        listed[0].granted_at,
        expires_at - tessera::domain::authorize::CONSENT_TTL
    );
    app.state
        .account
        .revoke_consent(
            &user.id,
            "legacy-client",
            tessera::domain::audit::Actor::Cli,
        )
        .await
        .unwrap();
    let left: Vec<String> = conn.hkeys(&consents).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}
