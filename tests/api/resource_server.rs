//! `examples/resource_server.rs`, in process, against a spawned Tessera's
//! JWKS over HTTP (RemoteJwks) and its `/introspect` (Introspection).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use reqwest::StatusCode;
use tessera::domain::clients::NewClient;
use tessera_resource::{AccessTokenVerifier, Introspection, RemoteJwks};
use tower::ServiceExt;

use crate::common::{TestApp, body, free_port};

#[allow(dead_code)]
#[path = "../../examples/resource_server.rs"]
mod example;

async fn call(router: &axum::Router, path: &str, token: Option<&str>) -> axum::response::Response {
    let mut request = Request::builder().uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn challenge(response: &axum::response::Response) -> String {
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A confidential service client and a `client_credentials` token for it.
async fn service(app: &TestApp, scope: &str) -> (String, String, String) {
    let (id, secret) = app
        .client(NewClient {
            name: "orders api".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["items:read".into(), "items:write".into()],
            ..NewClient::default()
        })
        .await;
    let secret = secret.unwrap();
    let tokens = app
        .post_form(
            "/token",
            Some((&id, &secret)),
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
    assert_eq!(tokens.status(), StatusCode::OK);
    let token = body(tokens).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, secret, token)
}

fn remote(app: &TestApp, audience: &str) -> AccessTokenVerifier {
    AccessTokenVerifier::new(
        Arc::new(RemoteJwks::new(app.url("/.well-known/jwks.json"))),
        &app.config.issuer,
        audience,
    )
}

#[tokio::test]
async fn the_example_api_accepts_and_refuses_tokens() {
    let app = TestApp::spawn().await;
    let router = example::app(Arc::new(remote(&app, app.config.audience())));
    let (_, _, reader) = service(&app, "items:read").await;
    let (_, _, writer) = service(&app, "items:write").await;
    let user = app.user("resource").await;

    assert_eq!(
        call(&router, "/health", None).await.status(),
        StatusCode::OK
    );
    let ok = call(&router, "/items", Some(&reader)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        call(&router, "/me", Some(&user.access_token))
            .await
            .status(),
        StatusCode::OK
    );

    let missing = call(&router, "/items", None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&missing).starts_with("Bearer error=\"invalid_token\""));
    let garbage = call(&router, "/me", Some("a.b.c")).await;
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);

    for short in [&writer, &user.access_token] {
        let refused = call(&router, "/items", Some(short)).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            challenge(&refused),
            "Bearer error=\"insufficient_scope\", scope=\"items:read\""
        );
    }

    // The same tokens at an API that is another audience.
    let elsewhere = example::app(Arc::new(remote(&app, "https://elsewhere.example")));
    let refused = call(&elsewhere, "/items", Some(&reader)).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // Tokens of another Tessera (its own keys) are refused.
    let other = TestApp::spawn().await;
    let (_, _, foreign) = service(&other, "items:read").await;
    assert_eq!(
        call(&router, "/items", Some(&foreign)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn introspection_refuses_revoked_tokens_and_fails_closed() {
    let app = TestApp::spawn().await;
    let (id, secret, token) = service(&app, "items:read").await;
    let introspection = Introspection::new(app.url("/introspect"), &id, &secret)
        .cache_ttl(std::time::Duration::ZERO);
    let router = example::app(Arc::new(
        remote(&app, app.config.audience()).revocation(Arc::new(introspection)),
    ));
    assert_eq!(
        call(&router, "/items", Some(&token)).await.status(),
        StatusCode::OK
    );

    let revoked = app
        .post_form("/revoke", Some((&id, &secret)), &[("token", &token)])
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let refused = call(&router, "/items", Some(&token)).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&refused).contains("token revoked"));

    // `/introspect` unreachable: 503 by default, accepted when fail-open.
    let (_, _, fresh) = service(&app, "items:read").await;
    let nowhere = format!("http://127.0.0.1:{}/introspect", free_port());
    let closed =
        example::app(Arc::new(remote(&app, app.config.audience()).revocation(
            Arc::new(Introspection::new(nowhere.clone(), &id, &secret)),
        )));
    assert_eq!(
        call(&closed, "/items", Some(&fresh)).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let open = example::app(Arc::new(remote(&app, app.config.audience()).revocation(
        Arc::new(Introspection::new(nowhere, &id, &secret).fail_open(true)),
    )));
    assert_eq!(
        call(&open, "/items", Some(&fresh)).await.status(),
        StatusCode::OK
    );

    // Wrong client credentials at /introspect are an outage too, not a pass.
    let wrong = example::app(Arc::new(remote(&app, app.config.audience()).revocation(
        Arc::new(Introspection::new(
            app.url("/introspect"),
            &id,
            "not-the-secret",
        )),
    )));
    assert_eq!(
        call(&wrong, "/items", Some(&fresh)).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}
