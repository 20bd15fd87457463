//! Health, readiness, persistence across restarts, request ids.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{PASSWORD, TestApp, body};

#[tokio::test]
async fn healthz_and_readyz() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        body(ready).await,
        json!({"status": "ready", "backends": {"sqlite": "ok"}})
    );
}

#[tokio::test]
async fn data_and_keys_survive_a_restart() {
    let app = TestApp::spawn().await;
    let user = app.user("restart").await;
    let jwks_before = body(app.get("/.well-known/jwks.json").await).await;
    let app = app.restart().await;
    // The same key signs, so tokens issued before the restart still verify.
    assert_eq!(
        body(app.get("/.well-known/jwks.json").await).await,
        jwks_before
    );
    let me = app.get_auth("/api/users/me", &user.access_token).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        app.login(&user.email, PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.signup(&user.email, PASSWORD).await.status(),
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let app = TestApp::spawn().await;
    let user = app.user("revoked-restart").await;
    let changed = app
        .put_json_auth(
            "/api/users/updatepassword",
            &user.access_token,
            &json!({"old_password": PASSWORD, "new_password": "another password"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let app = app.restart().await;
    assert_eq!(
        app.get_auth("/api/users/me", &user.access_token)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn request_ids_are_set_and_propagated() {
    let app = TestApp::spawn().await;
    let generated = app.get("/healthz").await;
    assert!(!generated.headers()["x-request-id"].is_empty());
    let response = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
}

#[cfg(unix)]
#[tokio::test]
async fn the_first_key_is_generated_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    let pems: Vec<_> = std::fs::read_dir(&app.config.keys_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    assert_eq!(pems.len(), 1);
    let mode = std::fs::metadata(&pems[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn openapi_document_covers_every_endpoint() {
    let app = TestApp::spawn().await;
    let doc = body(app.get("/openapi.json").await).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/users/signup",
        "/api/users/login",
        "/api/users/me",
        "/api/users/updateusers",
        "/api/users/updatepassword",
        "/api/users/updatemobile",
        "/api/users/forgotpasswords",
        "/api/users/resetpasswordotps",
        "/token",
        "/revoke",
        "/introspect",
        "/authorize",
        "/account",
        "/account/signup",
        "/account/forgot",
        "/account/reset",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/api/admin/clients",
        "/api/admin/clients/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}
