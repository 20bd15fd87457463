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

/// Property tests of the resource layer's JOSE header handling, with tokens
/// really signed by the verifier's own key: whatever the header holds (kid
/// path tricks, jku/x5u/jwk/x5c pointing elsewhere, crit, cty, odd alg and
/// typ values, unicode, huge strings), verification never panics, never
/// follows a URL, and accepts exactly the headers RFC 9068 allows.
mod jose_headers {
    use std::sync::Arc;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};
    use tessera::config::SigningAlg;
    use tessera::crypto::keys::{KeyDir, KeyRing};
    use tessera::resource::{AccessTokenVerifier, LocalKeys};

    const ISSUER: &str = "http://localhost:3000";

    struct Fixture {
        ring: Arc<KeyRing>,
        verifier: AccessTokenVerifier,
        runtime: tokio::runtime::Runtime,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let now = tessera::clock::Clock::system().now();
        let (ring, _) =
            KeyRing::load_or_init(KeyDir::new(dir.path()), SigningAlg::EdDSA, now, 3600).unwrap();
        let ring = Arc::new(ring);
        let verifier =
            AccessTokenVerifier::new(Arc::new(LocalKeys::new(ring.clone())), ISSUER, ISSUER);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Fixture {
            ring,
            verifier,
            runtime,
            _dir: dir,
        }
    }

    fn claims() -> Value {
        let now = tessera::clock::Clock::system().now();
        json!({"iss": ISSUER, "aud": ISSUER, "sub": "u1", "exp": now + 600, "iat": now,
               "jti": "j1", "client_id": "tessera", "scope": "user"})
    }

    /// `header.claims.signature`, the signature made by the ring's active key.
    fn signed(ring: &KeyRing, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = ring.current().active().sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn hostile_string() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("../../etc/passwd".to_owned()),
            Just("/dev/zero".to_owned()),
            Just("file:///etc/shadow".to_owned()),
            Just("http://127.0.0.1:1/jwks.json".to_owned()),
            Just("' OR 1=1 --".to_owned()),
            Just("\u{0}\u{202e}".to_owned()),
            Just("x".repeat(10_000)),
            ".{0,64}",
        ]
    }

    fn header_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            hostile_string().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            Just(Value::Null),
            Just(json!(["exp"])),
            Just(json!({"kty": "oct", "k": "AAAA"})),
        ]
    }

    /// A header: each standard member present or not, with a normal or a
    /// hostile value, plus members a verifier must never act on. Also says
    /// whether RFC 9068 allows it and whether it has such extra members.
    fn header() -> impl Strategy<Value = (Value, bool, bool)> {
        (
            prop_oneof![
                Just("EdDSA"),
                Just("RS256"),
                Just("HS256"),
                Just("none"),
                Just("eddsa")
            ],
            prop_oneof![
                Just(Some("at+jwt")),
                Just(Some("application/at+jwt")),
                Just(Some("JWT")),
                Just(None)
            ],
            proptest::option::of(header_value()),
            proptest::option::of(header_value()),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("jku"),
                    Just("x5u"),
                    Just("jwk"),
                    Just("x5c"),
                    Just("zip"),
                    Just("b64")
                ],
                header_value(),
                0..4,
            ),
        )
            .prop_map(|(alg, typ, crit, cty, extras)| {
                let mut header = Map::new();
                header.insert("alg".into(), json!(alg));
                if let Some(typ) = typ {
                    header.insert("typ".into(), json!(typ));
                }
                let has_extras = !extras.is_empty();
                for (name, value) in extras {
                    header.insert(name.into(), value);
                }
                let mut ok = alg == "EdDSA" && typ.is_some_and(|t| t != "JWT");
                if let Some(crit) = crit {
                    header.insert("crit".into(), crit);
                    ok = false;
                }
                if let Some(cty) = cty {
                    header.insert("cty".into(), cty);
                    ok = false;
                }
                (Value::Object(header), ok, has_extras)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn signed_tokens_with_any_header(
            (mut header, allowed, has_extras) in header(),
            real_kid in any::<bool>(),
            fake_kid in hostile_string(),
        ) {
            let f = fixture();
            let kid = if real_kid { f.ring.current().active().kid().to_owned() } else { fake_kid };
            header["kid"] = json!(kid);
            let allowed = allowed && real_kid;
            let token = signed(&f.ring, &header, &claims());
            let verified = f.runtime.block_on(f.verifier.verify(&token)).is_ok();
            // Never accepted when not allowed; always accepted when allowed,
            // unless an ignorable member is malformed (refusing is safe).
            prop_assert!(!verified || allowed, "accepted {}", header);
            prop_assert!(verified || !allowed || has_extras, "refused {}", header);
        }

        #[test]
        fn arbitrary_tokens_never_verify(
            parts in proptest::collection::vec("[A-Za-z0-9_\\-=+/.]{0,80}", 0..6),
        ) {
            let f = fixture();
            let token = parts.join(".");
            prop_assert!(f.runtime.block_on(f.verifier.verify(&token)).is_err());
        }
    }
}
