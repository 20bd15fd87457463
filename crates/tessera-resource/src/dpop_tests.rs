use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::json;

use super::*;

const NOW: u64 = 1_700_000_000;
const TOKEN_URI: &str = "https://auth.example.com/token";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A client's proof key, signing compact JWSs by hand so that tests can
/// put anything in the header.
pub(crate) enum ClientKey {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, bool),
}

impl ClientKey {
    pub(crate) fn es256() -> Self {
        let der = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .expect("generates");
        Self::Es256(
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref())
                .expect("parses"),
        )
    }

    pub(crate) fn ed25519() -> Self {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generates");
        Self::Ed25519(Ed25519KeyPair::from_pkcs8(der.as_ref()).expect("parses"))
    }

    pub(crate) fn rsa(size: KeySize, pss: bool) -> Self {
        let pair = RsaKeyPair::generate(size).expect("generates");
        let der: Pkcs8V1Der = pair.as_der().expect("encodes");
        Self::Rsa(RsaKeyPair::from_pkcs8(der.as_ref()).expect("parses"), pss)
    }

    pub(crate) fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
            Self::Rsa(_, false) => "RS256",
            Self::Rsa(_, true) => "PS256",
        }
    }

    pub(crate) fn jwk(&self) -> Value {
        match self {
            Self::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Self::Ed25519(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
            Self::Rsa(pair, _) => {
                let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "e": b64(&components.e), "n": b64(&components.n)})
            }
        }
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Es256(pair) => pair.sign(&rng, message).expect("signs").as_ref().to_vec(),
            Self::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Self::Rsa(pair, pss) => {
                let padding = if *pss {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut out).expect("signs");
                out
            }
        }
    }

    pub(crate) fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()})
    }

    pub(crate) fn proof_with(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        format!("{input}.{}", b64(&self.sign(input.as_bytes())))
    }

    pub(crate) fn proof(&self, claims: &Value) -> String {
        self.proof_with(&self.header(), claims)
    }

    /// The RFC 7638 thumbprint of the public key: the `cnf.jkt` of the
    /// tokens bound to it.
    pub(crate) fn thumbprint(&self) -> String {
        let jwk: Jwk = serde_json::from_value(self.jwk()).expect("a JWK");
        jwk_thumbprint(&jwk).expect("a thumbprint")
    }
}

fn claims() -> Value {
    json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": TOKEN_URI, "iat": NOW})
}

fn check() -> ProofCheck<'static> {
    ProofCheck::new("POST", TOKEN_URI, NOW)
}

#[test]
fn a_proof_of_each_allowed_algorithm_verifies_and_binds_its_thumbprint() {
    for key in [
        ClientKey::es256(),
        ClientKey::ed25519(),
        ClientKey::rsa(KeySize::Rsa2048, false),
        ClientKey::rsa(KeySize::Rsa2048, true),
    ] {
        let verified = verify_proof(&key.proof(&claims()), &check())
            .unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
        let jwk: Jwk = serde_json::from_value(key.jwk()).expect("a JWK");
        assert_eq!(
            Some(verified.jkt.clone()),
            jwk_thumbprint(&jwk),
            "{}",
            key.alg()
        );
        assert_eq!(verified.jkt.len(), 43);
        assert_eq!(verified.jti, "e1j3V_bKic8-LAEB");
        assert_eq!(verified.iat, NOW);
        assert_eq!(verified.nonce, None);
    }
}

#[test]
fn the_thumbprint_is_the_rfc_7638_example() {
    // RFC 7638 §3.1.
    let jwk: Jwk = serde_json::from_value(json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    }))
    .expect("a JWK");
    assert_eq!(
        jwk_thumbprint(&jwk).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
}

#[test]
fn the_server_nonce_is_returned_for_the_caller_to_check() {
    let key = ClientKey::es256();
    let mut with_nonce = claims();
    with_nonce["nonce"] = json!("n-0S6_WzA2Mj");
    let verified = verify_proof(&key.proof(&with_nonce), &check()).expect("verifies");
    assert_eq!(verified.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
}

#[test]
fn htu_is_compared_without_query_fragment_or_default_port() {
    let key = ClientKey::es256();
    for htu in [
        "https://auth.example.com/token",
        "https://AUTH.example.com/token",
        "HTTPS://auth.example.com:443/token",
        "https://auth.example.com/token?x=1",
        "https://auth.example.com/token#frag",
        "https://auth.example.com/a/../token",
    ] {
        let mut c = claims();
        c["htu"] = json!(htu);
        assert!(verify_proof(&key.proof(&c), &check()).is_ok(), "{htu}");
    }
    for htu in [
        "https://auth.example.com/token/",
        "http://auth.example.com/token",
        "https://auth.example.com:8443/token",
        "https://evil.example.com/token",
        "https://auth.example.com/Token",
        "/token",
        "",
    ] {
        let mut c = claims();
        c["htu"] = json!(htu);
        assert_eq!(
            verify_proof(&key.proof(&c), &check()),
            Err(DpopError::Uri),
            "{htu}"
        );
    }
}

#[test]
fn htm_must_be_the_method_exactly() {
    let key = ClientKey::es256();
    for htm in ["GET", "post", "POST ", ""] {
        let mut c = claims();
        c["htm"] = json!(htm);
        assert_eq!(
            verify_proof(&key.proof(&c), &check()),
            Err(DpopError::Method),
            "{htm:?}"
        );
    }
}

#[test]
fn iat_must_fall_in_the_window() {
    let key = ClientKey::es256();
    let accepted = [NOW, NOW - 65, NOW + 5];
    let refused = [NOW - 66, NOW + 6, 0, u64::MAX];
    for (iat, ok) in accepted
        .iter()
        .map(|i| (*i, true))
        .chain(refused.iter().map(|i| (*i, false)))
    {
        let mut c = claims();
        c["iat"] = json!(iat);
        let result = verify_proof(&key.proof(&c), &check());
        assert_eq!(result.is_ok(), ok, "iat {iat}: {result:?}");
        if !ok {
            assert_eq!(result, Err(DpopError::Time));
        }
    }
    assert_eq!(check().oldest_iat(), NOW - 65);
    assert_eq!(check().max_age(300).leeway(0).oldest_iat(), NOW - 300);
}

#[test]
fn ath_must_hash_the_presented_access_token() {
    let key = ClientKey::ed25519();
    let token = "eyJhbGciOiJFUzI1NiJ9.e30.sig";
    let at_resource =
        ProofCheck::new("GET", "https://api.example.com/orders", NOW).access_token(token);
    let mut c =
        json!({"jti": "x1", "htm": "GET", "htu": "https://api.example.com/orders", "iat": NOW});
    assert_eq!(
        verify_proof(&key.proof(&c), &at_resource),
        Err(DpopError::AccessTokenHash)
    );
    c["ath"] = json!(access_token_hash("another token"));
    assert_eq!(
        verify_proof(&key.proof(&c), &at_resource),
        Err(DpopError::AccessTokenHash)
    );
    c["ath"] = json!(access_token_hash(token));
    assert!(verify_proof(&key.proof(&c), &at_resource).is_ok());
}

#[test]
fn the_access_token_hash_is_base64url_sha256() {
    // RFC 9449 §7.1 example.
    assert_eq!(
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn a_header_that_is_not_a_dpop_proof_is_refused() {
    let key = ClientKey::es256();
    let mut cases = Vec::new();
    let mut h = key.header();
    h["typ"] = json!("JWT");
    cases.push((h, DpopError::Type));
    let mut h = key.header();
    h.as_object_mut().expect("object").remove("typ");
    cases.push((h, DpopError::Type));
    let mut h = key.header();
    h["typ"] = json!("DPOP+JWT");
    cases.push((h, DpopError::Type));
    for alg in ["none", "HS256", "ES384", "RS512", "", "es256"] {
        let mut h = key.header();
        h["alg"] = json!(alg);
        cases.push((h, DpopError::Algorithm));
    }
    let mut h = key.header();
    h["crit"] = json!(["exp"]);
    cases.push((h, DpopError::Critical));
    let mut h = key.header();
    h.as_object_mut().expect("object").remove("jwk");
    cases.push((h, DpopError::Key));
    let mut h = key.header();
    h["jwk"] = json!("not an object");
    cases.push((h, DpopError::Key));
    let mut h = key.header();
    h["jwk"]["d"] = json!("c2VjcmV0");
    cases.push((h, DpopError::Key));
    let mut h = key.header();
    h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    cases.push((h, DpopError::Key));
    // An Ed25519 key under ES256, a P-384 key.
    let mut h = key.header();
    h["jwk"] = ClientKey::ed25519().jwk();
    cases.push((h, DpopError::Key));
    let mut h = key.header();
    h["jwk"]["crv"] = json!("P-384");
    cases.push((h, DpopError::Key));
    for (header, expected) in cases {
        assert_eq!(
            verify_proof(&key.proof_with(&header, &claims()), &check()),
            Err(expected),
            "{header}"
        );
    }
}

#[test]
fn a_signature_by_another_key_than_the_header_names_is_refused() {
    let signer = ClientKey::es256();
    let named = ClientKey::es256();
    let mut header = signer.header();
    header["jwk"] = named.jwk();
    assert_eq!(
        verify_proof(&signer.proof_with(&header, &claims()), &check()),
        Err(DpopError::Signature)
    );
}

#[test]
fn an_rsa_key_under_2048_bits_is_refused() {
    let weak = ClientKey::rsa(KeySize::Rsa2048, false);
    let mut header = weak.header();
    // Claim a 1024-bit modulus: refused before any signature check.
    header["jwk"]["n"] = json!(b64(&[0xff; 128]));
    assert_eq!(
        verify_proof(&weak.proof_with(&header, &claims()), &check()),
        Err(DpopError::Key)
    );
}

#[test]
fn claims_must_be_present_typed_and_bounded() {
    let key = ClientKey::es256();
    let mut cases = Vec::new();
    for missing in ["jti", "htm", "htu", "iat"] {
        let mut c = claims();
        c.as_object_mut().expect("object").remove(missing);
        cases.push(c);
    }
    let mut c = claims();
    c["iat"] = json!("1700000000");
    cases.push(c);
    let mut c = claims();
    c["iat"] = json!(-1);
    cases.push(c);
    let mut c = claims();
    c["jti"] = json!("");
    cases.push(c);
    let mut c = claims();
    c["jti"] = json!("j".repeat(257));
    cases.push(c);
    let mut c = claims();
    c["nonce"] = json!("n".repeat(513));
    cases.push(c);
    for c in cases {
        assert_eq!(
            verify_proof(&key.proof(&c), &check()),
            Err(DpopError::Claims),
            "{c}"
        );
    }
}

#[test]
fn garbage_is_malformed_and_never_panics() {
    let key = ClientKey::es256();
    let good = key.proof(&claims());
    let long = "a".repeat(MAX_PROOF_LEN + 1);
    for proof in [
        "",
        ".",
        "..",
        "a.b.c",
        "a.b",
        "a.b.c.d",
        &long,
        &format!("{good}.x"),
        &format!("!{good}"),
    ] {
        assert!(verify_proof(proof, &check()).is_err(), "{proof:.40}");
    }
    let [h, c, s]: [&str; 3] = good
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .expect("three parts");
    let other_claims = b64(
        json!({"jti": "other", "htm": "POST", "htu": TOKEN_URI, "iat": NOW})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        verify_proof(&format!("{h}.{other_claims}.{s}"), &check()),
        Err(DpopError::Signature)
    );
    assert!(verify_proof(&format!("{h}.{c}.{}", b64(b"x")), &check()).is_err());
}

#[test]
fn normalize_htu_refuses_what_is_not_an_absolute_http_uri() {
    for uri in [
        "",
        "/token",
        "ftp://auth.example.com/token",
        "https://",
        "urn:x:y",
        "mailto:a@b",
    ] {
        assert_eq!(normalize_htu(uri), None, "{uri}");
    }
    assert_eq!(
        normalize_htu("HTTPS://Auth.Example.COM:443/token?q#f").as_deref(),
        Some("https://auth.example.com/token")
    );
}
