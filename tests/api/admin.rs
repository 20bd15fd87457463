//! `/api/admin/clients`, the `clients` CLI, and a real OAuth client library
//! (the `oauth2` crate) talking to Tessera through its metadata document.

use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, ClientSecret, RefreshToken, Scope, TokenResponse, TokenUrl};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_invalid_token, assert_problem, body};

async fn admin_token(app: &TestApp, tag: &str) -> String {
    app.admin_token(tag).await
}

fn new_client_body() -> Value {
    json!({
        "name": "Reporting",
        "grant_types": ["client_credentials"],
        "scopes": ["reports.read"],
        "access_token_ttl": 300
    })
}

#[tokio::test]
async fn admin_api_manages_clients() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app, "admin").await;
    let created = app
        .http
        .post(app.url("/api/admin/clients"))
        .bearer_auth(&admin)
        .json(&new_client_body())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body(created).await;
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(created["public"], false);
    assert!(created.get("secret_hash").is_none());

    // The new client works at /token with its per-client lifetime.
    let tokens = app
        .post_form(
            "/token",
            Some((&id, &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(body(tokens).await["expires_in"], 300);

    let listed = body(app.get_auth("/api/admin/clients", &admin).await).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_id"] == id.as_str())
    );
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once"
    );
    let shown = body(
        app.get_auth(&format!("/api/admin/clients/{id}"), &admin)
            .await,
    )
    .await;
    assert_eq!(shown["name"], "Reporting");

    let deleted = app
        .http
        .delete(app.url(&format!("/api/admin/clients/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get_auth(&format!("/api/admin/clients/{id}"), &admin)
            .await,
        404,
        "client_not_found",
    )
    .await;
    let tokens = app
        .post_form(
            "/token",
            Some((&id, &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(tokens.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_api_refuses_non_admins_and_bad_input() {
    let app = TestApp::spawn().await;
    let user = app.user("not-admin").await;
    assert_invalid_token(app.get("/api/admin/clients").await).await;
    // A non-admin's login token does not carry the `admin` scope.
    let refused = app.get_auth("/api/admin/clients", &user.access_token).await;
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"admin\""
    );
    assert_problem(refused, 403, "insufficient_scope").await;

    let admin = admin_token(&app, "admin2").await;
    let cases = [
        (
            json!({"name": "x", "grant_types": ["password"], "scopes": ["a"]}),
            "grant_types",
        ),
        (
            json!({"name": "x", "grant_types": ["authorization_code"], "scopes": ["a"]}),
            "redirect_uris",
        ),
        (
            json!({"name": "x", "grant_types": ["authorization_code"], "redirect_uris": ["http://evil.example/cb"], "scopes": ["a"]}),
            "redirect_uris",
        ),
        (
            json!({"name": "x", "public": true, "grant_types": ["client_credentials"], "scopes": ["a"]}),
            "grant_types",
        ),
        (
            json!({"name": "", "grant_types": ["client_credentials"], "scopes": ["a"]}),
            "name",
        ),
        (
            json!({"name": "x", "grant_types": ["client_credentials"], "scopes": ["a\"b"]}),
            "scopes",
        ),
        (
            json!({"name": "x", "grant_types": ["client_credentials"], "scopes": ["a"], "secret_hash": "x"}),
            "secret_hash",
        ),
        // account and admin are for first-party clients only (API §8).
        (
            json!({"name": "x", "grant_types": ["client_credentials"], "scopes": ["admin"]}),
            "scopes",
        ),
        (
            json!({"name": "x", "grant_types": ["authorization_code"], "redirect_uris": ["https://app.example/cb"], "scopes": ["profile", "account"]}),
            "scopes",
        ),
    ];
    for (request, field) in cases {
        let response = app
            .http
            .post(app.url("/api/admin/clients"))
            .bearer_auth(&admin)
            .json(&request)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert!(problem["errors"][field].is_string(), "{field}: {problem}");
    }
    assert_problem(
        app.get_auth("/api/admin/clients/nope", &admin).await,
        404,
        "client_not_found",
    )
    .await;
}

#[tokio::test]
async fn the_oauth2_crate_uses_tessera_through_its_metadata() {
    let app = TestApp::spawn().await;
    let meta = body(app.get("/.well-known/oauth-authorization-server").await).await;
    // The metadata names the issuer's URLs; this test server listens elsewhere.
    let local = |url: &Value| url.as_str().unwrap().replace(&app.config.issuer, &app.base);
    let token_url = TokenUrl::new(local(&meta["token_endpoint"])).unwrap();
    let auth_url = AuthUrl::new(local(&meta["authorization_endpoint"])).unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // client_credentials with a confidential client (client_secret_basic).
    let (id, secret) = app
        .client(tessera::domain::clients::NewClient {
            name: "oauth2 crate".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["jobs.run".into()],
            ..Default::default()
        })
        .await;
    let confidential = BasicClient::new(ClientId::new(id.clone()))
        .set_client_secret(ClientSecret::new(secret.unwrap()))
        .set_auth_uri(auth_url.clone())
        .set_token_uri(token_url.clone());
    let token = confidential
        .exchange_client_credentials()
        .add_scope(Scope::new("jobs.run".into()))
        .request_async(&http)
        .await
        .expect("client_credentials through the oauth2 crate");
    let claims = app
        .state
        .verifier
        .verify(token.access_token().secret())
        .await
        .unwrap();
    assert_eq!(claims.sub, id);

    // refresh_token with the public first-party client.
    let user = app.user("oauth2-crate").await;
    let public = BasicClient::new(ClientId::new("tessera".into()))
        .set_auth_uri(auth_url)
        .set_token_uri(token_url)
        .set_auth_type(oauth2::AuthType::RequestBody);
    let refreshed = public
        .exchange_refresh_token(&RefreshToken::new(user.refresh_token.clone()))
        .request_async(&http)
        .await
        .expect("refresh through the oauth2 crate");
    let next = refreshed
        .refresh_token()
        .expect("rotated refresh token")
        .secret()
        .clone();
    assert_ne!(next, user.refresh_token);
    let again = public
        .exchange_refresh_token(&RefreshToken::new(user.refresh_token))
        .request_async(&http)
        .await;
    assert!(again.is_err(), "a rotated refresh token is refused");
}
