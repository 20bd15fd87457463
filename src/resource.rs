//! The resource layer: verifies Tessera access tokens for an axum service.
//!
//! The implementation is the [`tessera_resource`] crate (in
//! `crates/tessera-resource`), which other Rust services depend on directly;
//! this module re-exports it and adds [`LocalKeys`], the key source over the
//! node's own [`KeyRing`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get, extract::FromRef};
//! use tessera::resource::{AccessTokenVerifier, Authenticated, RemoteJwks};
//!
//! #[derive(Clone, FromRef)]
//! struct State { verifier: Arc<AccessTokenVerifier> }
//!
//! async fn hello(auth: Authenticated) -> String { format!("hello {}", auth.claims.sub) }
//!
//! # async fn run() {
//! let jwks = RemoteJwks::new("https://auth.example.com/.well-known/jwks.json");
//! let verifier = AccessTokenVerifier::new(Arc::new(jwks), "https://auth.example.com", "https://auth.example.com");
//! let app: Router = Router::new().route("/hello", get(hello)).with_state(State { verifier: Arc::new(verifier) });
//! # }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey};

pub use tessera_resource::{
    AccessClaims, AccessTokenVerifier, Authenticated, BearerLayer, BearerRejection, Introspection,
    KeySource, RemoteJwks, RequireScope, RevocationCheck, Scope, ScopeRejection, VerifyError,
};

use crate::crypto::keys::KeyRing;

/// Tessera's own keys, in process: follows the node's [`KeyRing`], so a
/// rotation is seen by the resource layer the moment it is loaded.
pub struct LocalKeys {
    ring: Arc<KeyRing>,
}

impl LocalKeys {
    pub fn new(ring: Arc<KeyRing>) -> Self {
        Self { ring }
    }
}

#[async_trait]
impl KeySource for LocalKeys {
    async fn key(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)> {
        self.ring.current().decoding_key(kid)
    }
}
