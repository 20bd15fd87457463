//! Pushed authorization requests (RFC 9126): the `request_uri` handed out
//! by `/par`, the pushed request behind it, and why a push is refused.
//!
//! A pushed request is stored under the SHA-256 of its `request_uri`'s
//! random part, for [`PUSHED_REQUEST_TTL`] seconds, and is used at most
//! once: `/authorize` only peeks at it while the user signs in and
//! consents, and takes it when it issues the code. Each time the browser
//! opens `/authorize` with it (the first time, a reload, the way back from
//! sign-up) it is given [`AUTHORIZATION_SESSION_TTL`] from then: 60 s to
//! start, not to finish signing in.

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::Clock;
use crate::crypto::secret::{TokenHash, random_token, sha256_hex};
use crate::domain::authorize::{AuthorizeError, REQUEST_PARAMS};
use crate::domain::dpop::ProvenKey;
use crate::domain::grants::Params;
use crate::domain::throttle::{Limit, Throttle, ThrottleError, address_bucket};
use crate::store::{ClientRecord, PushedRequest, StoreError, TokenStore};

/// The prefix of every `request_uri` of ours (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// How long a pushed request waits for `/authorize` (RFC 9126 §2.2: short;
/// the browser is sent there at once).
pub const PUSHED_REQUEST_TTL: i64 = 60;

/// How long a pushed request lives once `/authorize` has opened it: as
/// long as a person may take to sign in (or sign up) and consent.
pub const AUTHORIZATION_SESSION_TTL: i64 = 30 * 60;

/// The longest value of one pushed parameter, and of all of them together:
/// a push is kept in the token store, so its size is bounded.
pub const MAX_PUSHED_VALUE: usize = 2048;
pub const MAX_PUSHED_TOTAL: usize = 8192;

/// The page shown for a `request_uri` that is unknown, expired, used, or
/// another client's. Never a redirect: without the pushed request, nothing
/// says which redirect URI could be trusted.
pub const PUSHED_REQUEST_GONE: &str =
    "The authorization request has expired or was already used. Start again from the application.";

/// A `request_uri` of ours as a browser presented it. Its `Debug` hides the
/// value: it stands for a pending authorization request until used.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestUri(String);

impl RequestUri {
    /// A new one: the prefix and 256 random bits.
    fn generate() -> Self {
        Self(format!("{REQUEST_URI_PREFIX}{}", random_token::<32>()))
    }

    /// `raw` if it has our prefix (other `request_uri` values are request
    /// objects by reference, which are not supported).
    pub fn parse(raw: &str) -> Option<Self> {
        raw.starts_with(REQUEST_URI_PREFIX)
            .then(|| Self(raw.to_owned()))
    }

    /// The store's handle: the SHA-256 of the random part, so the store
    /// never holds a value that works at `/authorize`.
    pub fn handle(&self) -> TokenHash {
        let random = &self.0[REQUEST_URI_PREFIX.len()..];
        TokenHash::from_stored(sha256_hex(random.as_bytes()))
    }

    /// The value, for the client (once) and the pages' forms.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RequestUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestUri(***)")
    }
}

/// Why `/par` refuses a request (RFC 9126 §2.3).
#[derive(Debug)]
pub enum PushError {
    /// `request_uri` in the push itself (§2.1), or another malformed part.
    InvalidRequest(&'static str),
    /// A request object (`request`): not supported.
    RequestNotSupported,
    /// The `DPoP` header is not a valid proof for this request, or its key
    /// is not the `dpop_jkt` the request names (RFC 9449 §10.1).
    InvalidDpopProof(&'static str),
    /// What `/authorize` would have refused, with the same error.
    Authorize(AuthorizeError),
    /// A public client pushed too often from one address.
    Throttled(std::time::Duration),
}

impl From<ThrottleError> for PushError {
    fn from(e: ThrottleError) -> Self {
        match e {
            ThrottleError::Throttled(retry) => PushError::Throttled(retry),
            ThrottleError::Store(e) => e.into(),
        }
    }
}

impl From<AuthorizeError> for PushError {
    fn from(e: AuthorizeError) -> Self {
        PushError::Authorize(e)
    }
}

impl From<StoreError> for PushError {
    fn from(e: StoreError) -> Self {
        PushError::Authorize(AuthorizeError::Store(e))
    }
}

/// A stored pushed request's `request_uri` and lifetime, for the client.
#[derive(Debug)]
pub struct Pushed {
    pub request_uri: RequestUri,
    pub expires_in: i64,
}

/// Pushes a public client may make from one address (IPv6: one /64) per
/// minute. Anyone can push as a public client (its id is public), and each
/// push is kept a while: without a limit `/par` would fill the token store.
/// Confidential clients authenticate with a secret and are not limited.
pub const PUBLIC_PUSHES: Limit = Limit {
    max: 60,
    window: 60,
};

/// Stores, finds and takes pushed requests.
pub struct PushedRequests {
    store: Arc<dyn TokenStore>,
    clock: Clock,
    throttle: Throttle,
}

impl PushedRequests {
    pub fn new(store: Arc<dyn TokenStore>, clock: Clock) -> Self {
        Self {
            throttle: Throttle::new(store.clone(), clock.clone()),
            store,
            clock,
        }
    }

    /// Counts a push of `client` from `from` against [`PUBLIC_PUSHES`]
    /// when the client is public.
    pub async fn admit(&self, client: &ClientRecord, from: IpAddr) -> Result<(), PushError> {
        if !client.is_public() {
            return Ok(());
        }
        let key = format!("par:{}:{}", client.id, address_bucket(from));
        Ok(self.throttle.admit(&key, PUBLIC_PUSHES).await?)
    }

    /// Stores the (validated) request of `client_id` and returns its new
    /// `request_uri`.
    pub async fn store(&self, client_id: &str, params: Params) -> Result<Pushed, StoreError> {
        let request_uri = RequestUri::generate();
        let request = PushedRequest {
            client_id: client_id.to_owned(),
            params,
            expires_at: self.clock.now() + PUSHED_REQUEST_TTL,
        };
        self.store
            .put_pushed(&request_uri.handle(), &request)
            .await?;
        Ok(Pushed {
            request_uri,
            expires_in: PUSHED_REQUEST_TTL,
        })
    }

    /// The parameters of the live request behind `uri`, if `client_id`
    /// pushed it; the request stays for the pages that follow.
    pub async fn find(
        &self,
        uri: &RequestUri,
        client_id: &str,
    ) -> Result<Option<Params>, StoreError> {
        let found = self.store.pushed(&uri.handle(), self.clock.now()).await?;
        Ok(found
            .filter(|pushed| pushed.client_id == client_id)
            .map(|pushed| pushed.params))
    }

    /// [`find`](Self::find), and gives the request
    /// [`AUTHORIZATION_SESSION_TTL`] from now: the browser has opened it.
    /// Taken and stored again, so a request that a code used up meanwhile
    /// never comes back; another client's is put back as it was.
    pub async fn open(
        &self,
        uri: &RequestUri,
        client_id: &str,
    ) -> Result<Option<Params>, StoreError> {
        let handle = uri.handle();
        let now = self.clock.now();
        let Some(mut pushed) = self.store.take_pushed(&handle, now).await? else {
            return Ok(None);
        };
        let ours = pushed.client_id == client_id;
        if ours {
            pushed.expires_at = pushed.expires_at.max(now + AUTHORIZATION_SESSION_TTL);
        }
        self.store.put_pushed(&handle, &pushed).await?;
        Ok(ours.then_some(pushed.params))
    }

    /// Uses the request behind `uri` up: true for the one caller that got
    /// it (live, and pushed by `client_id`), false for every other.
    pub async fn take(&self, uri: &RequestUri, client_id: &str) -> Result<bool, StoreError> {
        let taken = self
            .store
            .take_pushed(&uri.handle(), self.clock.now())
            .await?;
        Ok(taken.is_some_and(|pushed| pushed.client_id == client_id))
    }
}

/// Refuses what a push may not carry: a `request_uri` (RFC 9126 §2.1) or
/// a request object (not supported).
pub fn check_push_form(form: &Params) -> Result<(), PushError> {
    if form.contains_key("request_uri") {
        return Err(PushError::InvalidRequest(
            "request_uri cannot be pushed (RFC 9126 §2.1)",
        ));
    }
    if form.contains_key("request") {
        return Err(PushError::RequestNotSupported);
    }
    let kept = request_params(form);
    if kept.values().any(|v| v.len() > MAX_PUSHED_VALUE) {
        return Err(PushError::InvalidRequest(
            "a parameter of the request is too long (at most 2048 bytes)",
        ));
    }
    if kept.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_PUSHED_TOTAL {
        return Err(PushError::InvalidRequest(
            "the request is too large (at most 8192 bytes of parameters)",
        ));
    }
    Ok(())
}

/// The parameters of a push that make up the authorization request: those
/// `/authorize` reads, and nothing else (never the client's credentials).
pub fn request_params(form: &Params) -> Params {
    REQUEST_PARAMS
        .iter()
        .filter_map(|name| form.get(*name).map(|v| ((*name).to_owned(), v.clone())))
        .collect()
}

/// The `dpop_jkt` of a push (RFC 9449 §10.1): the thumbprint of the key
/// its DPoP proof proved (checked by `DpopService`, replay and nonce
/// included), if it came with one; a `dpop_jkt` parameter must then name
/// that same key.
pub fn bound_key(
    proven: Option<ProvenKey>,
    requested: Option<&str>,
) -> Result<Option<String>, PushError> {
    let Some(proven) = proven else {
        return Ok(requested.map(str::to_owned));
    };
    if requested.is_some_and(|jkt| jkt != proven.jkt) {
        return Err(PushError::InvalidDpopProof(
            "dpop_jkt is not the thumbprint of the DPoP proof's key",
        ));
    }
    Ok(Some(proven.jkt))
}

/// Whether `jkt` looks like an RFC 7638 SHA-256 thumbprint: 43 base64url
/// characters (RFC 9449 §10).
pub fn is_thumbprint(jkt: &str) -> bool {
    jkt.len() == 43
        && jkt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uris_are_random_and_hashed_without_their_prefix() {
        let one = RequestUri::generate();
        let two = RequestUri::generate();
        assert_ne!(one, two);
        assert!(one.expose().starts_with(REQUEST_URI_PREFIX));
        assert_eq!(one.expose().len(), REQUEST_URI_PREFIX.len() + 43);
        assert_eq!(RequestUri::parse(one.expose()), Some(one.clone()));
        assert_eq!(one.handle(), one.clone().handle());
        assert_ne!(one.handle(), two.handle());
        assert_eq!(
            one.handle().as_str(),
            sha256_hex(&one.expose().as_bytes()[REQUEST_URI_PREFIX.len()..])
        );
        assert_eq!(format!("{one:?}"), "RequestUri(***)");
        assert!(RequestUri::parse("https://app.example/request.jwt").is_none());
    }

    #[test]
    fn only_the_request_is_kept_from_a_push() {
        let form: Params = [
            ("client_id", "c"),
            ("client_secret", "tss_secret"),
            ("response_type", "code"),
            ("dpop_jkt", "x"),
            ("unknown", "y"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let kept = request_params(&form);
        assert_eq!(
            kept.keys().map(String::as_str).collect::<Vec<_>>(),
            ["client_id", "dpop_jkt", "response_type"]
        );
    }

    #[test]
    fn thumbprints_are_43_base64url_characters() {
        assert!(is_thumbprint("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"));
        assert!(!is_thumbprint("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9X"));
        assert!(!is_thumbprint(
            "NzbLsXh8uDCcd+6MNwXF4W/7noWXFZAfHkxZsRGC9Xs"
        ));
        assert!(!is_thumbprint(
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs="
        ));
        assert!(!is_thumbprint(""));
    }
}
