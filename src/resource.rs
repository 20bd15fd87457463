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
    AccessClaims, AccessTokenVerifier, AuthRejection, AuthScheme, Authenticated, BearerLayer,
    BearerRejection, Confirmation, DpopRejection, Introspection, KeySource, MemoryReplay,
    ProofReplay, RemoteJwks, RequireScope, RevocationCheck, Scope, ScopeRejection, VerifyError,
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

/// The resource layer's DPoP replay cache: the token store's, shared by
/// every node (RFC 9449 §11.1), so a proof used at one node is refused at
/// all of them.
pub struct StoreReplay {
    store: Arc<dyn crate::store::TokenStore>,
    clock: crate::clock::Clock,
}

impl StoreReplay {
    pub fn new(store: Arc<dyn crate::store::TokenStore>, clock: crate::clock::Clock) -> Self {
        Self { store, clock }
    }
}

#[async_trait]
impl ProofReplay for StoreReplay {
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, VerifyError> {
        let expires_at = i64::try_from(expires_at).unwrap_or(i64::MAX);
        self.store
            .first_use(key, self.clock.now(), expires_at)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "DPoP replay cache unavailable");
                VerifyError::Unavailable
            })
    }
}

#[async_trait]
impl KeySource for LocalKeys {
    async fn key(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)> {
        self.ring.current().decoding_key(kid)
    }
}
