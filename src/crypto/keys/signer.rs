//! A key parsed once, ready to sign: the private half, the public JWK and
//! the RFC 7638 thumbprint that names it.

use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{KeyError, KeyMeta};
use crate::config::SigningAlg;

/// The parsed private half of a key.
pub(super) enum Signer {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One key, parsed once, ready to sign.
pub struct SigningKey {
    pub meta: KeyMeta,
    signer: Arc<Signer>,
    /// The public JWK (with `kid`, `alg`, `use`).
    pub jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.meta.kid)
            .field("alg", &self.meta.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.meta.kid
    }

    pub fn alg(&self) -> SigningAlg {
        self.meta.alg
    }

    /// The JWS signature over `message` (`base64url(header).base64url(payload)`).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self.signer.as_ref() {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(|_| KeyError::Signing)?;
                Ok(signature)
            }
            Signer::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Signing),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// Parses a PKCS#8 DER private key of `alg`.
    pub(super) fn from_pkcs8(meta: KeyMeta, der: &[u8]) -> Option<Self> {
        let signer = parse_signer(meta.alg, der)?;
        let jwk = public_jwk(&signer, &meta);
        // A kid that is not the thumbprint means the files were mixed up.
        (thumbprint(&signer) == meta.kid).then(|| Self {
            meta,
            signer: Arc::new(signer),
            jwk,
        })
    }

    /// The same parsed key with updated lifecycle metadata.
    pub(super) fn with_meta(&self, meta: KeyMeta) -> Self {
        Self {
            meta,
            signer: self.signer.clone(),
            jwk: self.jwk.clone(),
        }
    }
}

/// The members RFC 7638 hashes, in lexicographic order.
fn thumbprint_members(signer: &Signer) -> serde_json::Value {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match signer {
        Signer::Rsa(pair) => {
            let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            json!({"e": b64(&components.e), "kty": "RSA", "n": b64(&components.n)})
        }
        Signer::Ecdsa(pair) => {
            // Uncompressed point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            json!({"crv": "P-256", "kty": "EC", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
        }
        Signer::Ed25519(pair) => {
            json!({"crv": "Ed25519", "kty": "OKP", "x": b64(pair.public_key().as_ref())})
        }
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url).
pub(super) fn thumbprint(signer: &Signer) -> String {
    // serde_json writes object keys sorted (no preserve_order feature), no spaces.
    let canonical = thumbprint_members(signer).to_string();
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn public_jwk(signer: &Signer, meta: &KeyMeta) -> serde_json::Value {
    let mut jwk = thumbprint_members(signer);
    jwk["kid"] = json!(meta.kid);
    jwk["alg"] = json!(meta.alg.as_str());
    jwk["use"] = json!("sig");
    jwk
}

pub(super) fn generate_pkcs8(alg: SigningAlg) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    let der = match alg {
        SigningAlg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| KeyError::Generation)?;
            let der: Pkcs8V1Der = pair.as_der().map_err(|_| KeyError::Generation)?;
            der.as_ref().to_vec()
        }
        SigningAlg::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec()
        }
        SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError::Generation)?
            .as_ref()
            .to_vec(),
    };
    Ok(der)
}

pub(super) fn parse_signer(alg: SigningAlg, der: &[u8]) -> Option<Signer> {
    Some(match alg {
        SigningAlg::RS256 => Signer::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(der).ok()?),
        SigningAlg::ES256 => Signer::Ecdsa(
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der).ok()?,
        ),
        SigningAlg::EdDSA => Signer::Ed25519(Ed25519KeyPair::from_pkcs8(der).ok()?),
    })
}
