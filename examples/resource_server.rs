//! A tiny API guarded by the `tessera-resource` crate: `GET /me` needs any
//! valid Tessera access token, `GET /items` one with the `items:read` scope.
//!
//! Start Tessera (`cargo run --release`), then:
//!
//! ```sh
//! TESSERA_ISSUER=http://localhost:3000 cargo run --example resource_server
//! # optional: revocation through /introspect, as a confidential client
//! INTROSPECT_CLIENT_ID=… INTROSPECT_CLIENT_SECRET=… cargo run --example resource_server
//! curl -H "Authorization: Bearer $TOKEN" http://localhost:4000/items
//! ```
//!
//! `TESSERA_AUDIENCE` defaults to the issuer (Tessera's default `aud`);
//! `RESOURCE_LISTEN` defaults to `127.0.0.1:4000`. The suite runs [`app`]
//! in-process (`tests/api/resource_server.rs`).

use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tessera_resource::{
    AccessTokenVerifier, Authenticated, Introspection, RemoteJwks, RequireScope, Scope,
};

/// The scope `GET /items` needs.
pub struct ItemsRead;
impl Scope for ItemsRead {
    const SCOPE: &'static str = "items:read";
}

#[derive(Clone, FromRef)]
struct ApiState {
    verifier: Arc<AccessTokenVerifier>,
}

async fn me(auth: Authenticated) -> Json<Value> {
    Json(json!({"sub": auth.claims.sub, "scope": auth.claims.scope}))
}

async fn items(auth: RequireScope<ItemsRead>) -> Json<Value> {
    Json(json!({"owner": auth.claims.sub, "items": ["tessera", "mosaic"]}))
}

/// The API's router, guarded by `verifier`.
pub fn app(verifier: Arc<AccessTokenVerifier>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/me", get(me))
        .route("/items", get(items))
        .with_state(ApiState { verifier })
}

/// The verifier for `issuer`: its JWKS over HTTP and, with client
/// credentials, revocation through its `/introspect`.
pub fn verifier(
    issuer: &str,
    audience: &str,
    introspect_as: Option<(String, String)>,
) -> AccessTokenVerifier {
    let issuer = issuer.trim_end_matches('/');
    let jwks = RemoteJwks::new(format!("{issuer}/.well-known/jwks.json"));
    let verifier = AccessTokenVerifier::new(Arc::new(jwks), issuer, audience);
    match introspect_as {
        Some((id, secret)) => verifier.revocation(Arc::new(Introspection::new(
            format!("{issuer}/introspect"),
            id,
            secret,
        ))),
        None => verifier,
    }
}

#[allow(dead_code)] // the suite includes this file for `app` only
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let issuer = var("TESSERA_ISSUER").unwrap_or_else(|| "http://localhost:3000".into());
    let audience = var("TESSERA_AUDIENCE").unwrap_or_else(|| issuer.clone());
    let introspect_as = var("INTROSPECT_CLIENT_ID").zip(var("INTROSPECT_CLIENT_SECRET"));
    let listen = var("RESOURCE_LISTEN").unwrap_or_else(|| "127.0.0.1:4000".into());
    let verifier = Arc::new(verifier(&issuer, &audience, introspect_as));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("resource server on http://{listen}, trusting {issuer}");
    axum::serve(listener, app(verifier)).await
}
