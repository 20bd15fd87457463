//! `/api/admin/users` on every backend: prefix listing with keyset pages
//! (stable under concurrent signups), show, role and disabled changes, and
//! what disabling does to every way in (tokens, refresh, codes, the browser
//! session, logins, password resets); a user's sessions and deletion.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tessera::domain::clients::NewClient;

use crate::common::{
    Backend, PASSWORD, TestApp, TestUser, assert_invalid_token, assert_oauth_error, assert_problem,
    body,
};

const REDIRECT: &str = "https://app.example/callback";
const VERIFIER: &str = "a-long-enough-code-verifier-for-admin-tests-0123456789";

/// A prefix no other test's emails start with.
fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}{nanos:x}-")
}

async fn signup_as(app: &TestApp, email: &str) -> String {
    let created = app.signup(email, PASSWORD).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    body(created).await["id"].as_str().unwrap().to_owned()
}

async fn patch_user(app: &TestApp, admin: &str, id: &str, change: &Value) -> reqwest::Response {
    app.send_json_auth(
        Method::PATCH,
        &format!("/api/admin/users/{id}"),
        admin,
        Some(change),
    )
    .await
}

async fn list(app: &TestApp, admin: &str, query: &str) -> reqwest::Response {
    app.get_auth(&format!("/api/admin/users?{query}"), admin)
        .await
}

async fn pages_lists_each_user_once_under_concurrent_signups(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("pager").await;
    let prefix = unique_prefix("pg");
    let mut existing = Vec::new();
    for i in 0..7 {
        let email = format!("{prefix}{i:02}@example.com");
        signup_as(&app, &email).await;
        existing.push(email);
    }
    // Signups with the same prefix land between and around the pages.
    let (http, signup_url) = (app.http.clone(), app.url("/api/users/signup"));
    let concurrent_prefix = prefix.clone();
    let writer = tokio::spawn(async move {
        for i in 0..8 {
            // Sorted before, between and after the existing emails.
            let email = format!("{concurrent_prefix}{:02}x{i}@example.com", (i * 3) % 10);
            let response = http
                .post(&signup_url)
                .json(&json!({"email": email, "password": PASSWORD, "fname": "C", "lname": "C"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = format!("q={}&limit=2", urlencode(&prefix.to_uppercase()));
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let page = list(&app, &admin, &query).await;
        assert_eq!(page.status(), StatusCode::OK);
        let page = body(page).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for item in items {
            assert!(item.get("password").is_none() && item.get("password_hash").is_none());
            assert_eq!(item["disabled"], false);
            seen.push(item["email"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    writer.await.unwrap();
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "no user is listed twice");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "pages come in email order");
    for email in &existing {
        assert!(seen.contains(email), "{email} was skipped");
    }
    assert!(seen.iter().all(|e| e.starts_with(&prefix)));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn hostile_listing_parameters_are_422(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("hostile-list").await;
    let forged = URL_SAFE_NO_PAD.encode(br#"["a@example.com","not-an-id"]"#);
    let long_q = "a".repeat(300);
    let huge_cursor = "A".repeat(5000);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=bm90IGpzb24", "cursor"),
        (&format!("cursor={forged}") as &str, "cursor"),
        (&format!("cursor={huge_cursor}"), "cursor"),
        (&format!("q={long_q}"), "q"),
        ("q=a%00b", "q"),
        ("limit=1&limit=2", "limit"),
        ("sort=email", "query"),
    ] {
        let problem =
            assert_problem(list(&app, &admin, query).await, 422, "validation_failed").await;
        assert!(problem["errors"][field].is_string(), "{query}: {problem}");
    }
    // The largest page is allowed.
    assert_eq!(
        list(&app, &admin, "limit=100").await.status(),
        StatusCode::OK
    );
}

async fn admins_show_and_change_users(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("changer").await;
    let admin_id = body(app.get_auth("/api/users/me", &admin).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = app.user("changed").await;
    let shown = body(
        app.get_auth(&format!("/api/admin/users/{}", user.id), &admin)
            .await,
    )
    .await;
    assert_eq!(shown["email"], user.email.as_str());
    assert_eq!(shown["disabled"], false);
    assert!(shown.get("password").is_none());
    for missing in ["0123456789abcdef01234567", "nope", "zz%20zz"] {
        assert_problem(
            app.get_auth(&format!("/api/admin/users/{missing}"), &admin)
                .await,
            404,
            "user_not_found",
        )
        .await;
    }

    let changed = patch_user(&app, &admin, &user.id, &json!({"role": "auditor"})).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(body(changed).await["role"], "auditor");

    for (change, field) in [
        (json!({}), "body"),
        (json!({"role": "ad min"}), "role"),
        (json!({"role": ""}), "role"),
        (json!({"role": "x".repeat(33)}), "role"),
        (json!({"disabled": "yes"}), "disabled"),
        (json!({"password_hash": "x"}), "password_hash"),
    ] {
        let problem = assert_problem(
            patch_user(&app, &admin, &user.id, &change).await,
            422,
            "validation_failed",
        )
        .await;
        assert!(problem["errors"][field].is_string(), "{change}: {problem}");
    }
    // An admin cannot lock themselves out.
    let own = patch_user(&app, &admin, &admin_id, &json!({"disabled": true})).await;
    assert_problem(own, 422, "validation_failed").await;
    let missing = patch_user(
        &app,
        &admin,
        "0123456789abcdef01234567",
        &json!({"disabled": true}),
    )
    .await;
    assert_problem(missing, 404, "user_not_found").await;
    let malformed = app
        .http
        .patch(app.url(&format!("/api/admin/users/{}", user.id)))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, 400, "malformed_json").await;
    let wrong_type = app
        .http
        .patch(app.url(&format!("/api/admin/users/{}", user.id)))
        .bearer_auth(&admin)
        .body(r#"{"disabled": true}"#)
        .send()
        .await
        .unwrap();
    assert_problem(wrong_type, 415, "unsupported_media_type").await;
    let oversized = json!({"role": "a".repeat(70 * 1024)});
    assert_problem(
        patch_user(&app, &admin, &user.id, &oversized).await,
        413,
        "payload_too_large",
    )
    .await;
}

/// A cookie-keeping client that does not follow redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The hidden fields of a page's form, plus `extra`.
pub fn form_of(html: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for input in html.split("<input type=\"hidden\" ").skip(1) {
        let attr = |name: &str| {
            let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            let end = start + input[start..].find('"').unwrap();
            input[start..end]
                .replace("&amp;", "&")
                .replace("&#x2f;", "/")
                .replace("&#x27;", "'")
                .replace("&quot;", "\"")
        };
        fields.push((attr("name"), attr("value")));
    }
    fields.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    fields
}

pub fn authorize_query(client_id: &str) -> Vec<(String, String)> {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "profile email"),
        ("state", "s"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// Signs in on the `/authorize` page; the response after the login form.
pub async fn page_login(
    app: &TestApp,
    browser: &reqwest::Client,
    client_id: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let page = browser
        .get(app.url("/authorize"))
        .query(&authorize_query(client_id))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    browser
        .post(app.url("/authorize"))
        .form(&form_of(&html, &[("email", email), ("password", password)]))
        .send()
        .await
        .unwrap()
}

pub fn code_of(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code")
}

pub async fn exchange(app: &TestApp, client_id: &str, code: &str) -> reqwest::Response {
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

async fn first_party_web_client(app: &TestApp) -> String {
    app.client(NewClient {
        name: "Console".into(),
        public: true,
        first_party: true,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec![REDIRECT.into()],
        scopes: vec!["profile".into(), "email".into()],
        ..NewClient::default()
    })
    .await
    .0
}

async fn refresh(app: &TestApp, user: &TestUser) -> reqwest::Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tessera"),
            ("refresh_token", &user.refresh_token),
        ],
    )
    .await
}

async fn disabling_ends_every_way_in(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("disabler").await;
    let user = app.user("disabled").await;
    let client_id = first_party_web_client(&app).await;
    let browser = browser();
    // A browser session, and a code issued in it but not yet exchanged.
    let signed_in = page_login(&app, &browser, &client_id, &user.email, PASSWORD).await;
    let code = code_of(&signed_in);

    let disabled = patch_user(&app, &admin, &user.id, &json!({"disabled": true})).await;
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_eq!(body(disabled).await["disabled"], true);

    // The access token fails at the resource layer at once…
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;
    // …its refresh token and the pending code are dead…
    assert_oauth_error(refresh(&app, &user).await, 400, "invalid_grant").await;
    assert_oauth_error(
        exchange(&app, &client_id, &code).await,
        400,
        "invalid_grant",
    )
    .await;
    // …the browser session is gone (the password is asked again)…
    let page = browser
        .get(app.url("/authorize"))
        .query(&authorize_query(&client_id))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("name=\"password\""));
    // …and signing in is refused: account_disabled only after the right password.
    assert_problem(
        app.login(&user.email, PASSWORD).await,
        401,
        "account_disabled",
    )
    .await;
    assert_problem(
        app.login(&user.email, "a wrong password").await,
        401,
        "invalid_credentials",
    )
    .await;
    let on_page = page_login(&app, &browser, &client_id, &user.email, PASSWORD).await;
    assert_eq!(on_page.status(), StatusCode::FORBIDDEN);
    // A reset code is not even sent: the same 202 as for anyone.
    let forgot = app
        .post_json("/api/users/forgotpasswords", &json!({"email": user.email}))
        .await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);

    let enabled = patch_user(&app, &admin, &user.id, &json!({"disabled": false})).await;
    assert_eq!(body(enabled).await["disabled"], false);
    assert_eq!(
        app.login(&user.email, PASSWORD).await.status(),
        StatusCode::OK
    );
}

async fn non_admin_and_third_party_tokens_are_refused(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("plain").await;
    let admin = app.admin_token("third").await;
    let admin_email = body(app.get_auth("/api/users/me", &admin).await).await["email"]
        .as_str()
        .unwrap()
        .to_owned();
    // A client's own token, and an admin's token obtained by a third party.
    let (service, secret) = app
        .client(NewClient {
            name: "Service".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["reports.read".into()],
            ..NewClient::default()
        })
        .await;
    let service_token = body(
        app.post_form(
            "/token",
            Some((&service, &secret.unwrap())),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let third_party = app
        .client(NewClient {
            name: "Photo Prints".into(),
            public: true,
            grant_types: vec!["authorization_code".into()],
            redirect_uris: vec![REDIRECT.into()],
            scopes: vec!["profile".into(), "email".into()],
            ..NewClient::default()
        })
        .await
        .0;
    let browser = browser();
    let consent = page_login(&app, &browser, &third_party, &admin_email, PASSWORD).await;
    let html = consent.text().await.unwrap();
    let approved = browser
        .post(app.url("/authorize"))
        .form(&form_of(&html, &[("decision", "approve")]))
        .send()
        .await
        .unwrap();
    let code = code_of(&approved);
    let third_party_token = body(exchange(&app, &third_party, &code).await).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let id = &user.id;
    let paths = [
        "/api/admin/users".to_owned(),
        format!("/api/admin/users/{id}"),
        "/api/admin/events".to_owned(),
    ];
    for path in &paths {
        assert_invalid_token(app.get(path).await).await;
        for token in [&user.access_token, &service_token, &third_party_token] {
            assert_problem(app.get_auth(path, token).await, 403, "insufficient_scope").await;
        }
    }
    let patched = patch_user(&app, &user.access_token, id, &json!({"role": "admin"})).await;
    assert_problem(patched, 403, "insufficient_scope").await;
    // A demoted admin's live token stops working at once.
    let admin_id = body(app.get_auth("/api/users/me", &admin).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.state
        .admin
        .set_role_by_email(&admin_email, "user")
        .await
        .unwrap();
    assert_problem(
        app.get_auth(&format!("/api/admin/users/{admin_id}"), &admin)
            .await,
        403,
        "forbidden",
    )
    .await;
}

async fn bootstrap_admin_is_made_at_start_once(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = crate::common::unique_email("bootstrap");
    let id = signup_as(&app, &email).await;
    let made = app.state.admin.bootstrap_admin(&email).await.unwrap();
    // Made only when no admin exists: other tests share some stores.
    let user = app.state.admin.user(&id).await.unwrap();
    assert_eq!(made, user.role == "admin");
    // Never twice, and never for an unknown email.
    assert!(!app.state.admin.bootstrap_admin(&email).await.unwrap());
    assert!(
        !app.state
            .admin
            .bootstrap_admin("nobody-here@example.com")
            .await
            .unwrap()
    );
}

async fn admin_events(app: &TestApp, admin: &str, kind: &str, user_id: &str) -> Vec<Value> {
    let response = app
        .get_auth(
            &format!("/api/admin/events?type={kind}&user_id={user_id}"),
            admin,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await["items"].as_array().unwrap().clone()
}

async fn id_of(app: &TestApp, token: &str) -> String {
    body(app.get_auth("/api/users/me", token).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn admins_see_and_end_a_users_sessions(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("session-admin").await;
    let admin_id = id_of(&app, &admin).await;
    let user = app.user("sessions-by-admin").await;
    let second = body(app.login(&user.email, PASSWORD).await).await;
    let path = format!("/api/admin/users/{}/sessions", user.id);

    let listed = app.get_auth(&path, &admin).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed = body(listed).await;
    let items = listed.as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    for session in items {
        assert_eq!(session["client_id"], "tessera");
        assert_eq!(session["current"], false, "the admin's token is not theirs");
        assert!(session["created_at"].is_string() && session["last_used_at"].is_string());
    }
    // Not with the user's own token, nor for a user that does not exist.
    assert_problem(
        app.get_auth(&path, &user.access_token).await,
        403,
        "insufficient_scope",
    )
    .await;
    let nobody = "/api/admin/users/0123456789abcdef01234567/sessions";
    assert_problem(app.get_auth(nobody, &admin).await, 404, "user_not_found").await;
    assert_problem(
        app.send_json_auth(Method::DELETE, nobody, &admin, None)
            .await,
        404,
        "user_not_found",
    )
    .await;

    let ended = app
        .send_json_auth(Method::DELETE, &path, &admin, None)
        .await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;
    assert_oauth_error(refresh(&app, &user).await, 400, "invalid_grant").await;
    let second_refresh = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tessera"),
                ("refresh_token", second["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_oauth_error(second_refresh, 400, "invalid_grant").await;
    assert_eq!(body(app.get_auth(&path, &admin).await).await, json!([]));
    // The user can sign in again: ending sessions is not disabling.
    assert_eq!(
        app.login(&user.email, PASSWORD).await.status(),
        StatusCode::OK
    );

    let recorded = admin_events(&app, &admin, "session_revoked", &user.id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["detail"]["actor"], admin_id.as_str());
    assert_eq!(recorded[0]["detail"]["session"], "all");
}

async fn admins_delete_users(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("deleting-admin").await;
    let admin_id = id_of(&app, &admin).await;
    let user = app.user("deleted-by-admin").await;
    let path = format!("/api/admin/users/{}", user.id);

    // Not with the user's own token; never the admin's own account.
    assert_problem(
        app.send_json_auth(Method::DELETE, &path, &user.access_token, None)
            .await,
        403,
        "insufficient_scope",
    )
    .await;
    let own = format!("/api/admin/users/{admin_id}");
    assert_problem(
        app.send_json_auth(Method::DELETE, &own, &admin, None).await,
        422,
        "validation_failed",
    )
    .await;

    // The id as stored, never another spelling of it: an upper-case id is
    // no user (MongoDB would parse it, but the token store keys by the id).
    let upper = format!("/api/admin/users/{}", user.id.to_uppercase());
    for (method, path, body) in [
        (Method::DELETE, upper.clone(), None),
        (Method::GET, format!("{upper}/sessions"), None),
        (Method::DELETE, format!("{upper}/sessions"), None),
        (
            Method::PATCH,
            upper.clone(),
            Some(json!({"disabled": true})),
        ),
    ] {
        let response = app
            .send_json_auth(method.clone(), &path, &admin, body.as_ref())
            .await;
        assert_problem(response, 404, "user_not_found").await;
    }
    assert_eq!(
        app.get_auth("/api/users/me", &user.access_token)
            .await
            .status(),
        StatusCode::OK
    );

    let deleted = app
        .send_json_auth(Method::DELETE, &path, &admin, None)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;
    assert_oauth_error(refresh(&app, &user).await, 400, "invalid_grant").await;
    assert_problem(
        app.login(&user.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_problem(app.get_auth(&path, &admin).await, 404, "user_not_found").await;
    assert_problem(
        app.send_json_auth(Method::DELETE, &path, &admin, None)
            .await,
        404,
        "user_not_found",
    )
    .await;
    for hostile in ["../../etc/passwd", "%00", &"a".repeat(10_000)] {
        let response = app
            .send_json_auth(
                Method::DELETE,
                &format!("/api/admin/users/{hostile}"),
                &admin,
                None,
            )
            .await;
        assert!(
            matches!(response.status().as_u16(), 404 | 414 | 431),
            "{hostile:.20}: {}",
            response.status()
        );
    }

    let recorded = admin_events(&app, &admin, "user_deleted", &user.id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["detail"]["actor"], admin_id.as_str());
    assert!(recorded[0]["ip"].is_string());
}

crate::on_every_backend!(
    pages_lists_each_user_once_under_concurrent_signups,
    hostile_listing_parameters_are_422,
    admins_show_and_change_users,
    disabling_ends_every_way_in,
    non_admin_and_third_party_tokens_are_refused,
    bootstrap_admin_is_made_at_start_once,
    admins_see_and_end_a_users_sessions,
    admins_delete_users,
);
