//! Audit events on every backend: one for each action, with the right
//! actor and client address and no secret anywhere; the `/events` listing
//! (filters, keyset pages, hostile parameters); throttled floods writing
//! one event; retention; client changes, secret rotation with grace and
//! deletion, which the events record.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera::domain::clients::NewClient;

use crate::admin_users::{browser, code_of, exchange, form_of, page_login};
use crate::common::{
    Backend, PASSWORD, TestApp, assert_invalid_token, assert_oauth_error, assert_problem, body,
    unique_email,
};

const REDIRECT: &str = "https://app.example/callback";

async fn events(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    let response = app
        .get_auth(&format!("/api/admin/events?{query}"), admin)
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    body(response).await["items"].as_array().unwrap().clone()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

async fn admin_with_id(app: &TestApp, tag: &str) -> (String, String) {
    let token = app.admin_token(tag).await;
    let id = body(app.get_auth("/api/users/me", &token).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (token, id)
}

async fn client_credentials(app: &TestApp, id: &str, secret: &str) -> reqwest::Response {
    app.post_form(
        "/token",
        Some((id, secret)),
        &[("grant_type", "client_credentials")],
    )
    .await
}

async fn every_action_is_recorded_without_secrets(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (admin, admin_id) = admin_with_id(&app, "auditor").await;
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned(), admin.clone()];

    // A user: created, signed in, a failed sign-in, a password change.
    let user = app.user("audited").await;
    secrets.extend([user.access_token.clone(), user.refresh_token.clone()]);
    let wrong = "wrong password 123";
    secrets.push(wrong.to_owned());
    app.login(&user.email, wrong).await;
    let unknown = unique_email("nobody");
    app.login(&unknown, wrong).await;
    let new_password = "brand new password 9";
    secrets.push(new_password.to_owned());
    let changed = app
        .put_json_auth(
            "/api/users/updatepassword",
            &user.access_token,
            &json!({"old_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);

    // Refresh reuse: the first refresh rotates, the replay is reuse.
    let fresh = body(app.login(&user.email, new_password).await).await;
    let refresh = fresh["refresh_token"].as_str().unwrap().to_owned();
    secrets.extend([
        refresh.clone(),
        fresh["access_token"].as_str().unwrap().to_owned(),
    ]);
    for _ in 0..2 {
        let rotated = app
            .post_form(
                "/token",
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", "tessera"),
                    ("refresh_token", &refresh),
                ],
            )
            .await;
        if rotated.status() == StatusCode::OK {
            let rotated = body(rotated).await;
            secrets.push(rotated["refresh_token"].as_str().unwrap().to_owned());
        }
    }

    // Admin actions on the user.
    let patch = |change: Value| {
        let app = &app;
        let admin = admin.clone();
        let id = user.id.clone();
        async move {
            app.send_json_auth(
                Method::PATCH,
                &format!("/api/admin/users/{id}"),
                &admin,
                Some(&change),
            )
            .await
        }
    };
    assert_eq!(
        patch(json!({"role": "auditor"})).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        patch(json!({"disabled": true})).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        patch(json!({"disabled": false})).await.status(),
        StatusCode::OK
    );

    // Admin actions on a client: created, changed, rotated, deleted.
    let created = app
        .send_json_auth(
            Method::POST,
            "/api/admin/clients",
            &admin,
            Some(&json!({"name": "Reports", "grant_types": ["client_credentials"], "scopes": ["reports.read"]})),
        )
        .await;
    let created = body(created).await;
    let client_id = created["client_id"].as_str().unwrap().to_owned();
    secrets.push(created["client_secret"].as_str().unwrap().to_owned());
    let client_path = format!("/api/admin/clients/{client_id}");
    let updated = app
        .send_json_auth(
            Method::PATCH,
            &client_path,
            &admin,
            Some(&json!({"name": "Reports 2"})),
        )
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let rotated = app
        .send_json_auth(
            Method::POST,
            &format!("{client_path}/secret"),
            &admin,
            Some(&json!({"grace_seconds": 60})),
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    secrets.push(
        body(rotated).await["client_secret"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let deleted = app
        .send_json_auth(Method::DELETE, &client_path, &admin, None)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    // About the user, newest first.
    let about_user = events(&app, &admin, &format!("user_id={}&limit=100", user.id)).await;
    for kind in [
        "user_created",
        "login_succeeded",
        "login_failed",
        "password_changed",
        "role_changed",
        "user_disabled",
        "user_enabled",
    ] {
        assert!(
            !of_type(&about_user, kind).is_empty(),
            "{kind}: {about_user:?}"
        );
    }
    assert!(
        about_user
            .windows(2)
            .all(|w| w[0]["id"].as_str() > w[1]["id"].as_str())
    );
    let signup = of_type(&about_user, "user_created")[0];
    assert_eq!(signup["ip"], "127.0.0.1");
    let login = of_type(&about_user, "login_succeeded")[0];
    assert_eq!(login["client_id"], "tessera");
    assert_eq!(
        of_type(&about_user, "login_failed")[0]["detail"]["reason"],
        "invalid_credentials"
    );
    for kind in ["role_changed", "user_disabled", "user_enabled"] {
        let event = of_type(&about_user, kind)[0];
        assert_eq!(event["detail"]["actor"], admin_id.as_str(), "{kind}");
        assert_eq!(event["ip"], "127.0.0.1");
    }
    let role = of_type(&about_user, "role_changed")[0];
    assert_eq!(
        (
            role["detail"]["from"].as_str(),
            role["detail"]["to"].as_str()
        ),
        (Some("user"), Some("auditor"))
    );

    // A failed sign-in for an unknown email names no user.
    let failed = events(&app, &admin, "type=login_failed&limit=100").await;
    let anonymous = failed
        .iter()
        .find(|e| e["detail"]["email"] == unknown.as_str())
        .expect("the unknown email's failure");
    assert!(anonymous["user_id"].is_null());

    // About the client.
    let about_client = events(&app, &admin, &format!("client_id={client_id}")).await;
    let kinds: Vec<&str> = about_client
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "client_deleted",
            "client_secret_rotated",
            "client_updated",
            "client_created"
        ]
    );
    assert!(
        about_client
            .iter()
            .all(|e| e["detail"]["actor"] == admin_id.as_str())
    );
    assert_eq!(about_client[1]["detail"]["grace_seconds"], 60);
    assert_eq!(about_client[2]["detail"]["fields"], json!(["name"]));

    let reuse = events(&app, &admin, "type=refresh_reuse_detected").await;
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0]["client_id"], "tessera");

    // No secret in any field of any event (the admin's own included).
    let everything = events(&app, &admin, "limit=100").await;
    let text = serde_json::to_string(&everything).unwrap();
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret leaked into the events"
        );
    }
    assert!(!text.contains("$2"), "no bcrypt hash");
}

async fn the_listing_pages_filters_and_refuses_hostile_input(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("lister").await;
    let user = app.user("listed").await;
    for _ in 0..4 {
        app.login(&user.email, PASSWORD).await;
    }
    // Keyset pages of one event each: every event once, newest first.
    let all = events(&app, &admin, &format!("user_id={}", user.id)).await;
    assert!(all.len() >= 6, "{all:?}");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let query = format!("user_id={}&limit=1{cursor}", user.id);
        let page = body(
            app.get_auth(&format!("/api/admin/events?{query}"), &admin)
                .await,
        )
        .await;
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let ids: Vec<Value> = all.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(paged, ids);
    // Filters: type, since.
    let logins = events(
        &app,
        &admin,
        &format!("user_id={}&type=login_succeeded", user.id),
    )
    .await;
    assert_eq!(logins.len(), 5);
    let future = "2999-01-01T00:00:00Z";
    assert!(
        events(&app, &admin, &format!("since={future}"))
            .await
            .is_empty()
    );
    let past = "2000-01-01T00:00:00Z";
    assert!(
        !events(&app, &admin, &format!("since={past}"))
            .await
            .is_empty()
    );
    for (query, field) in [
        ("type=nope", "type"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=WyJ4Il0", "cursor"),
        ("user_id=a%00b", "user_id"),
        ("type=logout&type=logout", "type"),
        ("q=a", "query"),
    ] {
        let response = app
            .get_auth(&format!("/api/admin/events?{query}"), &admin)
            .await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert!(problem["errors"][field].is_string(), "{query}: {problem}");
    }
}

async fn secret_rotation_keeps_the_old_secret_for_its_grace(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("rotator").await;
    let (id, old) = app
        .client(NewClient {
            name: "Batch".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["batch".into()],
            ..NewClient::default()
        })
        .await;
    let old = old.unwrap();
    let path = format!("/api/admin/clients/{id}/secret");
    let rotated = app
        .send_json_auth(
            Method::POST,
            &path,
            &admin,
            Some(&json!({"grace_seconds": 60})),
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    let new = body(rotated).await["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    // During the grace both work…
    for secret in [&old, &new] {
        assert_eq!(
            client_credentials(&app, &id, secret).await.status(),
            StatusCode::OK
        );
    }
    // …after it, only the new one.
    app.clock.advance(61);
    assert_oauth_error(
        client_credentials(&app, &id, &old).await,
        401,
        "invalid_client",
    )
    .await;
    assert_eq!(
        client_credentials(&app, &id, &new).await.status(),
        StatusCode::OK
    );
    // Without a grace, the old secret stops at once.
    let again = app
        .send_json_auth(Method::POST, &path, &admin, Some(&json!({})))
        .await;
    let newest = body(again).await["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_oauth_error(
        client_credentials(&app, &id, &new).await,
        401,
        "invalid_client",
    )
    .await;
    assert_eq!(
        client_credentials(&app, &id, &newest).await.status(),
        StatusCode::OK
    );
    // No body at all is no grace too (grace_seconds defaults to 0).
    let bodyless = app.send_json_auth(Method::POST, &path, &admin, None).await;
    assert_eq!(bodyless.status(), StatusCode::OK);
    let last = body(bodyless).await["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        client_credentials(&app, &id, &newest).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        client_credentials(&app, &id, &last).await.status(),
        StatusCode::OK
    );

    let too_long = json!({"grace_seconds": 30 * 24 * 3600 + 1});
    let problem = assert_problem(
        app.send_json_auth(Method::POST, &path, &admin, Some(&too_long))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(problem["errors"]["grace_seconds"].is_string());
    for hostile in [
        json!({"grace_seconds": -1}),
        json!({"grace_seconds": "60"}),
        json!({"grace": 1}),
    ] {
        assert_problem(
            app.send_json_auth(Method::POST, &path, &admin, Some(&hostile))
                .await,
            422,
            "validation_failed",
        )
        .await;
    }
    let builtin = app
        .send_json_auth(
            Method::POST,
            "/api/admin/clients/tessera/secret",
            &admin,
            Some(&json!({})),
        )
        .await;
    assert_problem(builtin, 403, "builtin_client").await;
    let missing = app
        .send_json_auth(
            Method::POST,
            "/api/admin/clients/nope/secret",
            &admin,
            Some(&json!({})),
        )
        .await;
    assert_problem(missing, 404, "client_not_found").await;
    let public = app
        .client(NewClient {
            name: "Spa".into(),
            public: true,
            grant_types: vec!["authorization_code".into()],
            redirect_uris: vec![REDIRECT.into()],
            scopes: vec!["profile".into()],
            ..NewClient::default()
        })
        .await
        .0;
    let public = app
        .send_json_auth(
            Method::POST,
            &format!("/api/admin/clients/{public}/secret"),
            &admin,
            Some(&json!({})),
        )
        .await;
    assert_problem(public, 409, "public_client").await;
}

async fn web_client(app: &TestApp) -> String {
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

/// A session of `user` at `client_id` through the page: (access, refresh).
async fn web_session(app: &TestApp, client_id: &str, email: &str) -> (String, String) {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = page_login(app, &browser, client_id, email, PASSWORD).await;
    let location = url::Url::parse(signed_in.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let verifier = "a-long-enough-code-verifier-for-admin-tests-0123456789";
    let tokens = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await;
    let tokens = body(tokens).await;
    (
        tokens["access_token"].as_str().unwrap().to_owned(),
        tokens["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn clients_change_under_the_rules_of_registration(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("client-changer").await;
    let user = app.user("client-user").await;
    let client_id = web_client(&app).await;
    let path = format!("/api/admin/clients/{client_id}");
    let change = json!({
        "name": "Console 2",
        "redirect_uris": [REDIRECT, "https://app.example/other"],
        "post_logout_redirect_uris": ["https://app.example/bye"],
        "backchannel_logout_uri": "https://app.example/logout",
        "scopes": ["profile"],
        "access_token_ttl": 120,
    });
    let changed = app
        .send_json_auth(Method::PATCH, &path, &admin, Some(&change))
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let changed = body(changed).await;
    assert_eq!(changed["name"], "Console 2");
    assert_eq!(changed["scopes"], json!(["profile"]));
    assert_eq!(changed["access_token_ttl"], 120);
    assert_eq!(changed["public"], true);
    let cleared = app
        .send_json_auth(
            Method::PATCH,
            &path,
            &admin,
            Some(&json!({"backchannel_logout_uri": null, "access_token_ttl": null, "scopes": ["profile", "email"]})),
        )
        .await;
    let cleared = body(cleared).await;
    assert!(cleared["backchannel_logout_uri"].is_null());
    assert!(cleared["access_token_ttl"].is_null());

    for (change, field) in [
        (json!({}), "body"),
        (
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            "redirect_uris",
        ),
        (json!({"redirect_uris": []}), "redirect_uris"),
        (json!({"grant_types": ["password"]}), "grant_types"),
        (
            json!({"grant_types": ["client_credentials"]}),
            "grant_types",
        ),
        (json!({"scopes": ["a\"b"]}), "scopes"),
        (json!({"scopes": []}), "scopes"),
        (json!({"name": ""}), "name"),
        (json!({"access_token_ttl": 0}), "access_token_ttl"),
        (
            json!({"backchannel_logout_uri": "javascript:alert(1)"}),
            "backchannel_logout_uri",
        ),
        (json!({"secret_hash": "x"}), "secret_hash"),
        (json!({"public": false}), "public"),
    ] {
        let response = app
            .send_json_auth(Method::PATCH, &path, &admin, Some(&change))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}"
        );
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert!(problem["errors"][field].is_string(), "{change}: {problem}");
    }
    let builtin = app
        .send_json_auth(
            Method::PATCH,
            "/api/admin/clients/tessera",
            &admin,
            Some(&json!({"name": "x"})),
        )
        .await;
    assert_problem(builtin, 403, "builtin_client").await;
    let builtin = app
        .send_json_auth(Method::DELETE, "/api/admin/clients/tessera", &admin, None)
        .await;
    assert_problem(builtin, 403, "builtin_client").await;

    // Dropping refresh_token revokes the client's families and their tokens.
    let (access, refresh) = web_session(&app, &client_id, &user.email).await;
    assert_eq!(
        app.get_auth("/api/users/me", &access).await.status(),
        StatusCode::OK
    );
    let no_refresh = json!({"grant_types": ["authorization_code"]});
    let dropped = app
        .send_json_auth(Method::PATCH, &path, &admin, Some(&no_refresh))
        .await;
    assert_eq!(dropped.status(), StatusCode::OK);
    assert_invalid_token(app.get_auth("/api/users/me", &access).await).await;
    let refreshed = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", &refresh),
            ],
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::BAD_REQUEST);

    // Deleting a client revokes its families: their access tokens die at once.
    let other = web_client(&app).await;
    let (access, _) = web_session(&app, &other, &user.email).await;
    let deleted = app
        .send_json_auth(
            Method::DELETE,
            &format!("/api/admin/clients/{other}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_invalid_token(app.get_auth("/api/users/me", &access).await).await;
    let again = app
        .send_json_auth(
            Method::DELETE,
            &format!("/api/admin/clients/{other}"),
            &admin,
            None,
        )
        .await;
    assert_problem(again, 404, "client_not_found").await;
}

async fn old_events_are_pruned_after_the_retention(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("pruner").await;
    assert!(!events(&app, &admin, "").await.is_empty());
    app.clock.advance(91 * 24 * 3600);
    let pruned = app
        .state
        .audit
        .prune(app.config.events_retention)
        .await
        .unwrap();
    assert!(pruned > 0);
    // A fresh admin token: the old one expired with the clock.
    let admin = app.admin_token("pruner2").await;
    let left = events(&app, &admin, "limit=100").await;
    assert!(left.iter().all(|e| e["at"].as_str().unwrap() > "2000"));
    assert!(of_type(&left, "user_created").len() == 1, "{left:?}");
}

async fn consents_logouts_and_password_changes_are_recorded(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("consent-auditor").await;
    let user = app.user("consenting").await;
    let client_id = app
        .client(NewClient {
            name: "Photo Prints".into(),
            public: true,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: vec![REDIRECT.into()],
            scopes: vec!["profile".into(), "email".into()],
            ..NewClient::default()
        })
        .await
        .0;
    let browser = browser();
    let consent = page_login(&app, &browser, &client_id, &user.email, PASSWORD).await;
    let html = consent.text().await.unwrap();
    let approved = browser
        .post(app.url("/authorize"))
        .form(&form_of(&html, &[("decision", "approve")]))
        .send()
        .await
        .unwrap();
    let code = code_of(&approved);
    assert_eq!(
        exchange(&app, &client_id, &code).await.status(),
        StatusCode::OK
    );
    // Approving the same request again (prompt=consent) within the window
    // writes no second event: a loop of approvals cannot fill the store.
    let mut query = crate::admin_users::authorize_query(&client_id);
    query.push(("prompt".into(), "consent".into()));
    let again = browser
        .get(app.url("/authorize"))
        .query(&query)
        .send()
        .await
        .unwrap();
    let html = again.text().await.unwrap();
    assert!(html.contains("decision"), "the consent page again");
    let approved = browser
        .post(app.url("/authorize"))
        .form(&form_of(&html, &[("decision", "approve")]))
        .send()
        .await
        .unwrap();
    assert!(approved.status().is_redirection());
    // Sign out on the confirmation page.
    let page = browser.get(app.url("/logout")).send().await.unwrap();
    let html = page.text().await.unwrap();
    let signed_out = browser
        .post(app.url("/logout"))
        .form(&form_of(&html, &[("action", "logout")]))
        .send()
        .await
        .unwrap();
    assert!(signed_out.status().is_success() || signed_out.status().is_redirection());
    let changed = app
        .put_json_auth(
            "/api/users/updatepassword",
            &user.access_token,
            &json!({"old_password": PASSWORD, "new_password": "another password 77"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);

    let about_user = events(&app, &admin, &format!("user_id={}", user.id)).await;
    let granted = of_type(&about_user, "consent_granted");
    assert_eq!(granted.len(), 1, "{about_user:?}");
    assert_eq!(granted[0]["client_id"], client_id.as_str());
    assert_eq!(granted[0]["detail"]["scope"], "email profile");
    let page_login = of_type(&about_user, "login_succeeded")
        .into_iter()
        .find(|e| e["client_id"] == client_id.as_str());
    assert!(page_login.is_some(), "the page sign-in names its client");
    let logout = of_type(&about_user, "logout");
    assert_eq!(logout.len(), 1, "{about_user:?}");
    assert_eq!(logout[0]["ip"], "127.0.0.1");
    assert_eq!(
        of_type(&about_user, "password_changed")[0]["ip"],
        "127.0.0.1"
    );
    let text = serde_json::to_string(&about_user).unwrap();
    assert!(!text.contains(&code) && !text.contains("another password 77"));
}

/// The DPoP and PAR registration settings (RFC 9449 §5.2, RFC 9126 §6):
/// false unless asked for, stored as given, shown under their RFC names,
/// and changed one at a time by a PATCH.
async fn dpop_and_par_settings_round_trip(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let admin = app.admin_token("settings-admin").await;
    let plain = web_client(&app).await;
    let shown = body(
        app.get_auth(&format!("/api/admin/clients/{plain}"), &admin)
            .await,
    )
    .await;
    assert_eq!(shown["dpop_bound_access_tokens"], false);
    assert_eq!(shown["require_pushed_authorization_requests"], false);
    let builtin = body(app.get_auth("/api/admin/clients/tessera", &admin).await).await;
    assert_eq!(builtin["dpop_bound_access_tokens"], false);
    assert_eq!(builtin["require_pushed_authorization_requests"], false);

    let created = app
        .http
        .post(app.url("/api/admin/clients"))
        .bearer_auth(&admin)
        .json(&json!({
            "name": "Bound",
            "public": true,
            "grant_types": ["authorization_code"],
            "redirect_uris": [REDIRECT],
            "scopes": ["profile"],
            "dpop_bound_access_tokens": true,
            "require_pushed_authorization_requests": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body(created).await;
    assert_eq!(created["dpop_bound_access_tokens"], true);
    assert_eq!(created["require_pushed_authorization_requests"], true);
    let id = created["client_id"].as_str().unwrap().to_owned();
    let path = format!("/api/admin/clients/{id}");
    let shown = body(app.get_auth(&path, &admin).await).await;
    assert_eq!(shown["dpop_bound_access_tokens"], true);
    assert_eq!(shown["require_pushed_authorization_requests"], true);

    let patched = app
        .send_json_auth(
            Method::PATCH,
            &path,
            &admin,
            Some(&json!({"dpop_bound_access_tokens": false})),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let shown = body(app.get_auth(&path, &admin).await).await;
    assert_eq!(shown["dpop_bound_access_tokens"], false);
    assert_eq!(shown["require_pushed_authorization_requests"], true);
    let patched = app
        .send_json_auth(
            Method::PATCH,
            &path,
            &admin,
            Some(&json!({"require_pushed_authorization_requests": false, "dpop_bound_access_tokens": true})),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let shown = body(app.get_auth(&path, &admin).await).await;
    assert_eq!(shown["dpop_bound_access_tokens"], true);
    assert_eq!(shown["require_pushed_authorization_requests"], false);
    let listed = body(app.get_auth("/api/admin/clients", &admin).await).await;
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["dpop_bound_access_tokens"], true);
    let changed = events(&app, &admin, &format!("client_id={id}&type=client_updated")).await;
    assert_eq!(
        changed[0]["detail"]["fields"],
        json!([
            "dpop_bound_access_tokens",
            "require_pushed_authorization_requests"
        ])
    );
    let not_bool = app
        .send_json_auth(
            Method::PATCH,
            &path,
            &admin,
            Some(&json!({"dpop_bound_access_tokens": "yes"})),
        )
        .await;
    assert!(not_bool.status().is_client_error());
}

crate::on_every_backend!(
    consents_logouts_and_password_changes_are_recorded,
    every_action_is_recorded_without_secrets,
    the_listing_pages_filters_and_refuses_hostile_input,
    secret_rotation_keeps_the_old_secret_for_its_grace,
    clients_change_under_the_rules_of_registration,
    dpop_and_par_settings_round_trip,
    old_events_are_pruned_after_the_retention,
);

/// Throttling counters are per address in the token store, shared by the
/// Redis tests: this one runs on the embedded store, where they are its own.
#[tokio::test]
async fn a_throttled_flood_writes_one_event() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token("flood").await;
    let user = app.user("flooded").await;
    let mut throttled = 0;
    for _ in 0..14 {
        if app.login(&user.email, "wrong password 42").await.status()
            == StatusCode::TOO_MANY_REQUESTS
        {
            throttled += 1;
        }
    }
    assert!(throttled >= 3, "{throttled}");
    let events = events(&app, &admin, "type=throttled").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["action"], "login");
    assert_eq!(events[0]["ip"], "127.0.0.1");
}

/// `TESSERA_BOOTSTRAP_ADMIN_EMAIL`: the first admin without a shell.
#[tokio::test]
async fn the_bootstrap_email_becomes_admin_at_start() {
    let mut app = TestApp::spawn().await;
    let email = unique_email("first-admin");
    assert_eq!(
        app.signup(&email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    app.config.bootstrap_admin_email = Some(email.clone());
    let app = app.restart().await;
    let tokens = body(app.login(&email, PASSWORD).await).await;
    assert!(
        tokens["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == "admin")
    );
    let admin = tokens["access_token"].as_str().unwrap();
    let made = events(&app, admin, "type=role_changed").await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["detail"]["actor"], "bootstrap");
}

/// `/openapi.json` documents every admin operation.
#[tokio::test]
async fn the_openapi_document_has_the_admin_api() {
    let app = TestApp::spawn().await;
    let document = body(app.get("/openapi.json").await).await;
    let paths = &document["paths"];
    for (path, method) in [
        ("/api/admin/users", "get"),
        ("/api/admin/users/{id}", "get"),
        ("/api/admin/users/{id}", "patch"),
        ("/api/admin/clients/{id}", "patch"),
        ("/api/admin/clients/{id}/secret", "post"),
        ("/api/admin/events", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path}");
    }
    let schemas = &document["components"]["schemas"];
    assert!(schemas["AdminUserView"]["properties"]["disabled"].is_object());
    assert!(schemas["EventView"]["properties"]["type"].is_object());
}
