//! The key lifecycle end to end, on a temporary keys directory.

use std::fs;

use super::*;

#[test]
fn generate_load_and_sign_every_algorithm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyDir::new(dir.path());
    for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
        let meta = keys.generate(alg, 100, 100).expect("generate");
        assert_eq!(meta.kid.len(), 43, "SHA-256 thumbprint, base64url");
    }
    let loaded = keys.load().expect("load");
    assert_eq!(loaded.len(), 3);
    for key in &loaded {
        assert!(!key.sign(b"message").expect("sign").is_empty());
        assert_eq!(key.jwk["use"], "sig");
    }
    let set = KeySet::new(loaded, 200, 60).expect("set");
    assert_eq!(set.jwks()["keys"].as_array().map(Vec::len), Some(3));
}

#[cfg(unix)]
#[test]
fn private_keys_are_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = KeyDir::new(dir.path())
        .generate(SigningAlg::EdDSA, 1, 1)
        .expect("generate");
    let mode = fs::metadata(dir.path().join(format!("{}.pem", meta.kid)))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_future_key_is_published_but_does_not_sign() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyDir::new(dir.path());
    let current = keys.generate(SigningAlg::EdDSA, 1, 1).expect("generate");
    keys.generate(SigningAlg::EdDSA, 2, 1000).expect("generate");
    let set = KeySet::new(keys.load().expect("load"), 10, 60).expect("set");
    assert_eq!(set.active().kid(), current.kid);
    assert_eq!(set.jwks()["keys"].as_array().map(Vec::len), Some(2));
}

#[test]
fn rotation_prepublishes_then_switches_then_unpublishes_the_old_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyDir::new(dir.path());
    let window = 100;
    let (ring, first) =
        KeyRing::load_or_init(keys.clone(), SigningAlg::RS256, 1000, window).expect("ring");
    let first = first.expect("first key generated").kid;
    let next = keys
        .rotate(SigningAlg::RS256, 1001, 49)
        .expect("rotate")
        .kid;
    let published =
        |ring: &KeyRing| -> Vec<String> { ring.current().published().map(str::to_owned).collect() };

    // Pre-publication: both in the JWKS, the old one still signs.
    assert_eq!(ring.reload(1010).expect("reload"), None);
    assert_eq!(ring.current().active().kid(), first);
    assert_eq!(published(&ring), [first.clone(), next.clone()]);
    assert!(ring.current().decoding_key(&next).is_some());

    // Activation: the new key signs, the old one stays published.
    assert_eq!(ring.reload(1050).expect("reload"), Some(next.clone()));
    assert_eq!(published(&ring), [first.clone(), next.clone()]);

    // Once every token the old key signed has expired, it is gone.
    ring.reload(1050 + window as i64).expect("reload");
    assert_eq!(published(&ring), [next]);
    assert!(ring.current().decoding_key(&first).is_none());
}

#[test]
fn nodes_starting_together_agree_on_the_token_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| KeyDir::new(dir.path()).token_secret().expect("secret")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(secrets.windows(2).all(|w| w[0] == w[1]));
    let files = fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(files, 1, "no temporary files left behind");
}

#[test]
fn the_last_signing_key_cannot_be_retired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyDir::new(dir.path());
    let only = keys.generate(SigningAlg::EdDSA, 1, 1).expect("generate");
    assert!(matches!(
        keys.retire(&only.kid, 10, false),
        Err(KeyError::LastKey)
    ));
    let next = keys.rotate(SigningAlg::EdDSA, 10, 0).expect("rotate");
    let retired = keys.retire(&only.kid, 10, true).expect("retire");
    assert_eq!(retired.retired_at, Some(10));
    let left: Vec<String> = keys
        .list()
        .expect("list")
        .into_iter()
        .map(|m| m.kid)
        .collect();
    assert_eq!(left, [next.kid]);
    assert!(matches!(
        keys.retire("no-such-kid", 10, false),
        Err(KeyError::UnknownKid(_))
    ));
}

#[test]
fn a_published_key_whose_jwk_cannot_verify_is_an_error_not_an_empty_key_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyDir::new(dir.path());
    let meta = keys.generate(SigningAlg::EdDSA, 1, 1).expect("generate");
    let mut loaded = keys.load().expect("load");
    loaded[0].jwk["alg"] = serde_json::json!("HS256");
    match KeySet::new(loaded, 10, 60) {
        Err(KeyError::Unverifiable { kid, .. }) => assert_eq!(kid, meta.kid),
        other => panic!("expected Unverifiable, got {other:?}"),
    }
}

#[test]
fn a_first_start_with_eddsa_keeps_an_rs256_key_for_id_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyDir::new(dir.path());
    let (ring, first) = KeyRing::load_or_init(keys, SigningAlg::EdDSA, 1000, 100).expect("ring");
    let set = ring.current();
    // Access tokens: the configured algorithm; ID tokens: RS256 (Discovery §3).
    assert_eq!(set.active().kid(), first.expect("generated").kid);
    assert_eq!(set.active().alg(), SigningAlg::EdDSA);
    assert_eq!(set.id_token_key().alg(), SigningAlg::RS256);
    assert_eq!(set.id_token_algs(), ["RS256", "EdDSA"]);
}

#[test]
fn rotating_to_es256_keeps_the_rs256_key_signing_id_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyDir::new(dir.path());
    let (ring, first) =
        KeyRing::load_or_init(keys.clone(), SigningAlg::RS256, 1000, 100).expect("ring");
    let first = first.expect("generated").kid;
    let next = keys
        .rotate(SigningAlg::ES256, 1001, 10)
        .expect("rotate")
        .kid;
    ring.reload(1020).expect("reload");
    let set = ring.current();
    assert_eq!(set.active().kid(), next);
    assert_eq!(set.id_token_key().kid(), first);
}
