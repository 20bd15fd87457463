//! Pushed authorization requests (RFC 9126): what `/par` stored under the
//! hash of its `request_uri`, until `/authorize` issues a code for it.

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::crypto::secret::TokenHash;
use crate::store::StoreError;

/// A request's parameters by name (the same type as the domain's
/// `grants::Params`; the store does not depend on the domain).
pub type Params = std::collections::BTreeMap<String, String>;

/// An authorization request a client pushed, authenticated, to `/par`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedRequest {
    /// The client that pushed it (and authenticated doing so).
    pub client_id: String,
    /// The request's parameters, as `/authorize` would have received them.
    pub params: Params,
    pub expires_at: UnixTime,
}

/// Pushed authorization requests, each kept until it expires and used at
/// most once. The handle is the SHA-256 of the `request_uri`'s random part:
/// the store never holds a value that works at `/authorize`.
#[async_trait]
pub trait PushedRequestStore: Send + Sync {
    /// Stores a pushed request until `request.expires_at`.
    async fn put_pushed(
        &self,
        handle: &TokenHash,
        request: &PushedRequest,
    ) -> Result<(), StoreError>;
    /// The request, if it is stored, unexpired and not taken, without
    /// taking it (the sign-in and consent pages show it).
    async fn pushed(
        &self,
        handle: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PushedRequest>, StoreError>;
    /// Takes the request, unexpired: at most once ever, even when two
    /// callers race (the code is issued only to the one that got it).
    async fn take_pushed(
        &self,
        handle: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PushedRequest>, StoreError>;
}

/// The stored form of `params`: a JSON object of strings.
pub(crate) fn params_to_json(params: &Params) -> Result<String, serde_json::Error> {
    serde_json::to_string(params)
}

/// `params` back from their stored form.
pub(crate) fn params_from_json(text: &str) -> Result<Params, serde_json::Error> {
    serde_json::from_str(text)
}
