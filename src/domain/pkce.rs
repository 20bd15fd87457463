//! PKCE (RFC 7636) as Tessera applies it — the whole rule in one place:
//! only `S256`; required of public clients (they cannot keep a secret, so
//! the code must be bound to the one who asked for it); and no downgrade
//! (RFC 9700 §4.8.2): a `code_verifier` for a code issued without a
//! challenge means someone stripped the challenge, and is refused.
//!
//! Our own few lines on `sha2` and `subtle` rather than oxide-auth's `Pkce`:
//! that one accepts the downgrade, defaults to `plain`, and keeps the rule
//! split between it and us (docs/architecture.md).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::crypto::secret::constant_time_eq;

/// Why a challenge cannot be accepted at the authorization endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("PKCE (code_challenge with S256) is required")]
    Required,
    #[error("code_challenge_method must be S256")]
    MethodNotS256,
    #[error("code_challenge must be a base64url SHA-256 digest")]
    Malformed,
}

/// Why a code exchange fails PKCE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    #[error("a code_verifier was sent but the authorization request had no code_challenge")]
    Downgrade,
    #[error("the code_verifier is required")]
    Missing,
    #[error("the code_verifier does not match the code_challenge")]
    Mismatch,
}

/// The challenge to store with a code: `None` when a confidential client
/// sent none. `method` defaults to `plain` when omitted (RFC 7636 §4.3),
/// which is refused.
pub fn accept_challenge(
    public_client: bool,
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<String>, ChallengeError> {
    let Some(challenge) = challenge else {
        return if public_client {
            Err(ChallengeError::Required)
        } else {
            Ok(None)
        };
    };
    if method != Some("S256") {
        return Err(ChallengeError::MethodNotS256);
    }
    if !is_s256_digest(challenge) {
        return Err(ChallengeError::Malformed);
    }
    Ok(Some(challenge.to_owned()))
}

/// Checks the exchange's `code_verifier` against the stored challenge.
pub fn verify(stored: Option<&str>, verifier: Option<&str>) -> Result<(), VerifierError> {
    match (stored, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(VerifierError::Downgrade),
        (Some(_), None) => Err(VerifierError::Missing),
        (Some(challenge), Some(verifier)) => {
            // RFC 7636 §4.1: 43 to 128 unreserved characters.
            let well_formed = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if well_formed && constant_time_eq(computed.as_bytes(), challenge.as_bytes()) {
                Ok(())
            } else {
                Err(VerifierError::Mismatch)
            }
        }
    }
}

/// RFC 7636 §4.2: 43 characters of base64url for a SHA-256 digest.
fn is_s256_digest(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_example_verifies() {
        let stored = accept_challenge(true, Some(CHALLENGE), Some("S256")).unwrap();
        assert_eq!(verify(stored.as_deref(), Some(VERIFIER)), Ok(()));
        assert_eq!(
            verify(stored.as_deref(), Some(&VERIFIER.replace('d', "e"))),
            Err(VerifierError::Mismatch)
        );
        assert_eq!(verify(stored.as_deref(), None), Err(VerifierError::Missing));
    }

    #[test]
    fn only_s256_and_required_of_public_clients() {
        assert_eq!(
            accept_challenge(true, None, None),
            Err(ChallengeError::Required)
        );
        assert_eq!(accept_challenge(false, None, None), Ok(None));
        assert_eq!(
            accept_challenge(false, Some(CHALLENGE), None),
            Err(ChallengeError::MethodNotS256)
        );
        assert_eq!(
            accept_challenge(false, Some(CHALLENGE), Some("plain")),
            Err(ChallengeError::MethodNotS256)
        );
        assert_eq!(
            accept_challenge(false, Some("short"), Some("S256")),
            Err(ChallengeError::Malformed)
        );
    }

    #[test]
    fn a_verifier_without_a_challenge_is_a_downgrade() {
        assert_eq!(verify(None, Some(VERIFIER)), Err(VerifierError::Downgrade));
        assert_eq!(verify(None, None), Ok(()));
    }

    #[test]
    fn malformed_verifiers_never_match() {
        // A verifier whose digest matches but which is too short is refused.
        let short = "abc";
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(short.as_bytes()));
        assert_eq!(
            verify(Some(&challenge), Some(short)),
            Err(VerifierError::Mismatch)
        );
    }
}
