//! Malformed, hostile and oversized input: always a clear problem+json.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{PASSWORD, TestApp, assert_invalid_token, assert_problem, unique_email};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    for raw in [
        &b"{"[..],
        b"",
        b"[1,2",
        b"{\"email\": }",
        b"null x",
        b"\xff\xfe\xfd",
    ] {
        let response = app
            .http
            .post(app.url("/api/users/signup"))
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .unwrap();
        assert_problem(response, 400, "malformed_json").await;
    }
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
    ] {
        let mut request = app
            .http
            .post(app.url("/api/users/login"))
            .body(json!({"email": "a@b.co", "password": PASSWORD}).to_string());
        if let Some(value) = content_type {
            request = request.header("content-type", value);
        }
        assert_problem(request.send().await.unwrap(), 415, "unsupported_media_type").await;
    }
    // Parameters on the media type are fine.
    let response = app
        .http
        .post(app.url("/api/users/login"))
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"email": "a@b.co", "password": PASSWORD}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_types_and_operator_injection_are_422() {
    let app = TestApp::spawn().await;
    let cases = [
        json!({"email": {"$gt": ""}, "password": PASSWORD}),
        json!({"email": ["a@b.co"], "password": PASSWORD}),
        json!({"email": "a@b.co", "password": {"$ne": null}}),
        json!({"email": 42, "password": true}),
        json!("just a string"),
        json!([{"email": "a@b.co"}]),
    ];
    for request in cases {
        let response = app.post_json("/api/users/login", &request).await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        // The submitted value is never echoed back.
        assert!(!problem.to_string().contains("$gt") && !problem.to_string().contains("$ne"));
    }
    let response = app
        .post_json(
            "/api/users/signup",
            &json!({"email": {"$gt": ""}, "password": PASSWORD, "fname": "a", "lname": "b"}),
        )
        .await;
    let problem = assert_problem(response, 422, "validation_failed").await;
    assert!(problem["errors"]["email"].is_string());
}

#[tokio::test]
async fn bodies_over_64_kib_are_413() {
    let app = TestApp::spawn().await;
    let huge = json!({"email": unique_email("big"), "password": PASSWORD, "fname": "x".repeat(1024 * 1024), "lname": "b"});
    assert_problem(
        app.post_json("/api/users/signup", &huge).await,
        413,
        "payload_too_large",
    )
    .await;
    let user = app.user("big").await;
    let response = app
        .put_json_auth(
            "/api/users/updateusers",
            &user.access_token,
            &json!({"fname": "x".repeat(70 * 1024)}),
        )
        .await;
    assert_problem(response, 413, "payload_too_large").await;
    // Just under the limit but still an over-long name: a validation error, not a crash.
    let response = app
        .put_json_auth(
            "/api/users/updateusers",
            &user.access_token,
            &json!({"fname": "x".repeat(60 * 1024)}),
        )
        .await;
    assert_problem(response, 422, "validation_failed").await;
}

#[tokio::test]
async fn unicode_and_control_characters() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            "/api/users/signup",
            &json!({"email": unique_email("uni"), "password": "пароль-密码-🔑", "fname": "山田", "lname": "🦀"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .post_json(
            "/api/users/signup",
            &json!({"email": unique_email("ctl"), "password": PASSWORD, "fname": "a\u{0000}b", "lname": "\u{202e}x"}),
        )
        .await;
    assert_problem(response, 422, "validation_failed").await;
    let response = app
        .post_json("/api/users/signup", &json!({"email": "ä@bücher.de\u{0000}", "password": PASSWORD, "fname": "a", "lname": "b"}))
        .await;
    assert_problem(response, 422, "validation_failed").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    assert_problem(app.get("/api/users/nothing-here").await, 404, "not_found").await;
    assert_problem(
        app.get("/api/users/signup").await,
        405,
        "method_not_allowed",
    )
    .await;
    let response = app
        .http
        .delete(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn oversized_and_odd_authorization_headers() {
    let app = TestApp::spawn().await;
    let long = format!("Bearer {}", "a".repeat(16 * 1024));
    let response = app
        .http
        .get(app.url("/api/users/me"))
        .header("authorization", long)
        .send()
        .await
        .unwrap();
    assert_invalid_token(response).await;
    let user = app.user("dup-auth").await;
    // Two Authorization headers: ambiguous, refused.
    let response = app
        .http
        .get(app.url("/api/users/me"))
        .header("authorization", format!("Bearer {}", user.access_token))
        .header("authorization", "Bearer other")
        .send()
        .await
        .unwrap();
    assert_invalid_token(response).await;
    // Non-UTF-8 bytes in the header.
    let response = app
        .http
        .get(app.url("/api/users/me"))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_invalid_token(response).await;
}

#[tokio::test]
async fn errors_never_leak_internals() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            "/api/users/login",
            &json!({"email": "a@b.co", "password": PASSWORD, "x": 1}),
        )
        .await;
    let text = response.text().await.unwrap();
    for leak in ["serde", "rusqlite", "src/", "panicked", PASSWORD] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}
