//! DPoP at the authorization server (RFC 9449): a request's proof checked
//! statelessly by `tessera_resource::dpop`, then against what needs state —
//! the `jti` replay cache in the token store (shared by every node) and,
//! when configured, a server nonce (§8).
//!
//! Nonces need no state either: one is the number of a five-minute window
//! and a MAC over it, so every node that shares the token secret issues
//! and accepts the same ones, and a nonce lives one to two windows.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use tessera_resource::dpop::{DpopError, ProofCheck, verify_proof};

use crate::clock::Clock;
use crate::crypto::secret::{constant_time_eq, hmac_sha256};
use crate::domain::grants::GrantError;
use crate::store::{ClientRecord, TokenStore};

/// Seconds of one nonce window: a nonce is accepted in its window and the next.
const NONCE_WINDOW: i64 = 300;

/// Clock skew allowed for a proof made "in the future".
const FUTURE_SKEW: u64 = 5;

/// The key a request proved possession of: the RFC 7638 thumbprint that
/// `cnf.jkt` and a family's binding carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenKey {
    pub jkt: String,
}

/// What a DPoP-capable endpoint needs to know about a request.
#[derive(Clone, Copy, Debug)]
pub struct ProofRequest<'a> {
    /// The `DPoP` header, if there was exactly one.
    pub proof: Option<&'a str>,
    pub method: &'a str,
    /// The endpoint's path (the issuer is the origin `htu` is compared with).
    pub path: &'a str,
}

/// Checks DPoP proofs for the token endpoint and the user login.
pub struct DpopService {
    store: Arc<dyn TokenStore>,
    clock: Clock,
    issuer: String,
    max_age: u64,
    /// Present when proofs must carry a server nonce.
    nonce_key: Option<[u8; 32]>,
    /// `TESSERA_DPOP_REQUIRED_FOR_PUBLIC_CLIENTS`.
    required_for_public_clients: bool,
}

impl DpopService {
    pub fn new(
        store: Arc<dyn TokenStore>,
        clock: Clock,
        issuer: &str,
        max_age: u64,
        nonce_key: Option<[u8; 32]>,
        required_for_public_clients: bool,
    ) -> Self {
        Self {
            store,
            clock,
            issuer: issuer.trim_end_matches('/').to_owned(),
            max_age,
            nonce_key,
            required_for_public_clients,
        }
    }

    /// Whether `client`'s token requests must prove a DPoP key (RFC 9449
    /// §5.2): it registered `dpop_bound_access_tokens`, or it is public and
    /// the server requires DPoP of public clients.
    pub fn required_for(&self, client: &ClientRecord) -> bool {
        client.dpop_bound_access_tokens || (client.is_public() && self.required_for_public_clients)
    }

    /// [`verify`](Self::verify) for a token request of `client`: also
    /// refused without a proof when the client must send one.
    pub async fn verify_for(
        &self,
        client: &ClientRecord,
        request: ProofRequest<'_>,
    ) -> Result<Option<ProvenKey>, GrantError> {
        if request.proof.is_none() && self.required_for(client) {
            refused("required");
            return Err(GrantError::InvalidDpopProof(
                "this client must send a DPoP proof with every token request",
            ));
        }
        self.verify(request).await
    }

    /// The key `request`'s proof proves, `None` without a proof; refused
    /// when the proof fails a check of RFC 9449 §4.3, was seen before, or
    /// lacks a current nonce when nonces are on (`UseDpopNonce`).
    pub async fn verify(&self, request: ProofRequest<'_>) -> Result<Option<ProvenKey>, GrantError> {
        let Some(proof) = request.proof else {
            return Ok(None);
        };
        let now = self.clock.now();
        let htu = format!("{}{}", self.issuer, request.path);
        let check = ProofCheck::new(request.method, &htu, u64::try_from(now).unwrap_or(0))
            .max_age(self.max_age)
            .leeway(FUTURE_SKEW);
        let verified = verify_proof(proof, &check).map_err(|e| {
            refused("proof");
            refusal(e)
        })?;
        if let Some(key) = &self.nonce_key
            && !verified
                .nonce
                .as_deref()
                .is_some_and(|n| nonce_valid(key, n, now))
        {
            refused("nonce");
            return Err(GrantError::UseDpopNonce(issue_nonce(key, now)));
        }
        // Remembered while a proof with this `iat` could still be accepted.
        let expires_at = i64::try_from(verified.iat).unwrap_or(i64::MAX)
            + (self.max_age + FUTURE_SKEW) as i64
            + 1;
        let marker = replay_key(&verified.jkt, &verified.jti);
        if !self.store.first_use(&marker, now, expires_at).await? {
            refused("replay");
            return Err(GrantError::InvalidDpopProof(
                "the DPoP proof was already used",
            ));
        }
        Ok(Some(ProvenKey { jkt: verified.jkt }))
    }

    /// A fresh nonce for a `DPoP-Nonce` header, when nonces are on.
    pub fn fresh_nonce(&self) -> Option<String> {
        self.nonce_key
            .as_ref()
            .map(|key| issue_nonce(key, self.clock.now()))
    }
}

/// Counts a refused proof by why (`/metrics`): a burst of `replay` or
/// `proof` is someone trying stolen tokens or proofs.
fn refused(reason: &'static str) {
    metrics::counter!("tessera_dpop_refused_total", "reason" => reason).increment(1);
}

/// The replay cache's key for a proof: fixed length whatever the `jti`.
fn replay_key(jkt: &str, jti: &str) -> String {
    let digest = Sha256::new()
        .chain_update(jkt.as_bytes())
        .chain_update(b" ")
        .chain_update(jti.as_bytes())
        .finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

fn nonce_mac(key: &[u8; 32], window: i64) -> [u8; 16] {
    let mut message = b"tessera dpop nonce ".to_vec();
    message.extend_from_slice(&window.to_be_bytes());
    let mac = hmac_sha256(key, &message);
    let mut short = [0u8; 16];
    short.copy_from_slice(&mac[..16]);
    short
}

fn issue_nonce(key: &[u8; 32], now: i64) -> String {
    let window = now.div_euclid(NONCE_WINDOW);
    let mut bytes = window.to_be_bytes().to_vec();
    bytes.extend_from_slice(&nonce_mac(key, window));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `nonce` is one of ours from this window or the one before.
fn nonce_valid(key: &[u8; 32], nonce: &str, now: i64) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
        return false;
    };
    if bytes.len() != 24 {
        return false;
    }
    let window = i64::from_be_bytes(bytes[..8].try_into().unwrap_or_default());
    let current = now.div_euclid(NONCE_WINDOW);
    (window == current || window == current - 1)
        && constant_time_eq(&bytes[8..], &nonce_mac(key, window))
}

/// What the client is told about a refused proof (`invalid_dpop_proof`).
fn refusal(error: DpopError) -> GrantError {
    let description = match error {
        DpopError::Malformed => "the DPoP proof is malformed",
        DpopError::Type => "the DPoP proof's typ must be dpop+jwt",
        DpopError::Algorithm => "the DPoP proof's alg must be ES256, EdDSA, RS256 or PS256",
        DpopError::Key => "the DPoP proof's jwk is not a usable public key",
        DpopError::Critical => "the DPoP proof has a crit header",
        DpopError::Signature => "the DPoP proof's signature does not verify",
        DpopError::Claims => "the DPoP proof lacks jti, htm, htu or iat",
        DpopError::Method => "the DPoP proof's htm does not match the request",
        DpopError::Uri => "the DPoP proof's htu does not match the request",
        DpopError::Time => "the DPoP proof's iat is too old or in the future",
        DpopError::AccessTokenHash => "the DPoP proof's ath does not match",
    };
    GrantError::InvalidDpopProof(description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_lives_its_window_and_the_next() {
        let key = [7u8; 32];
        let nonce = issue_nonce(&key, 1_000_000);
        assert!(nonce_valid(&key, &nonce, 1_000_000));
        assert!(nonce_valid(&key, &nonce, 1_000_000 + NONCE_WINDOW));
        assert!(!nonce_valid(&key, &nonce, 1_000_000 + 2 * NONCE_WINDOW));
        assert!(!nonce_valid(&[8u8; 32], &nonce, 1_000_000), "another key");
    }

    #[test]
    fn a_forged_or_garbled_nonce_is_refused() {
        let key = [7u8; 32];
        let now = 1_000_000;
        let mut bytes = (now / NONCE_WINDOW).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 16]);
        assert!(!nonce_valid(&key, &URL_SAFE_NO_PAD.encode(&bytes), now));
        for garbage in ["", "!!!", "AAAA", &"A".repeat(4096)] {
            assert!(!nonce_valid(&key, garbage, now));
        }
    }

    #[test]
    fn replay_keys_are_fixed_length_and_distinct() {
        let a = replay_key("k1", "j");
        assert_eq!(a.len(), 43);
        assert_ne!(a, replay_key("k2", "j"));
        assert_ne!(a, replay_key("k1", "j2"));
        assert_eq!(replay_key("k1", &"x".repeat(256)).len(), 43);
    }
}
