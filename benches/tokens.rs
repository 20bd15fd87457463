#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Micro-benchmarks of the hot paths, with Tessera's own code: they define
//! the physical limits the load tests are compared with.
//!
//! `cargo bench --bench tokens` (bcrypt at cost 12 takes a while).

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tessera::clock::Clock;
use tessera::config::SigningAlg;
use tessera::crypto::jwt::{AccessClaims, sign};
use tessera::crypto::keys::{KeyDir, KeyRing};
use tessera::crypto::secret::{RefreshToken, new_object_id};
use tessera::resource::{AccessTokenVerifier, LocalKeys};

fn claims(now: i64) -> AccessClaims {
    AccessClaims {
        iss: "http://localhost:3000".into(),
        sub: new_object_id(now),
        aud: "http://localhost:3000".into(),
        exp: now + 900,
        iat: now,
        jti: tessera::crypto::secret::random_token::<16>(),
        client_id: "tessera".into(),
        scope: "account email openid phone profile".into(),
        role: Some("user".into()),
        sid: Some(new_object_id(now)),
        fid: Some(new_object_id(now)),
        cep: Some(0),
        cnf: None,
    }
}

fn signing_and_verification(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let now = Clock::system().now();
        let (ring, _) = KeyRing::load_or_init(keys, alg, now, 3600).unwrap();
        let ring = Arc::new(ring);
        let key = ring.current().active().clone();
        c.bench_function(&format!("sign/{}", alg.as_str()), |b| {
            b.iter(|| sign(&claims(now), &key).unwrap())
        });

        // Resource-layer verification including the revocation check
        // against the embedded store, as `/api/users/me` does it.
        let store =
            Arc::new(tessera::store::sqlite::SqliteStore::open(&dir.path().join("data")).unwrap());
        let verifier = AccessTokenVerifier::new(
            Arc::new(LocalKeys::new(ring.clone())),
            "http://localhost:3000",
            "http://localhost:3000",
        );
        let with_revocation = verifier.revocation(Arc::new(tessera::StoreRevocation(store)));
        let token = sign(&claims(now), &key).unwrap();
        c.bench_function(&format!("verify+revocation/{}", alg.as_str()), |b| {
            b.iter(|| runtime.block_on(with_revocation.verify(&token)).unwrap())
        });
        let plain = AccessTokenVerifier::new(
            Arc::new(LocalKeys::new(ring.clone())),
            "http://localhost:3000",
            "http://localhost:3000",
        );
        c.bench_function(&format!("verify/{}", alg.as_str()), |b| {
            b.iter(|| runtime.block_on(plain.verify(&token)).unwrap())
        });
    }
}

fn refresh_tokens(c: &mut Criterion) {
    let family = new_object_id(1);
    c.bench_function("refresh/generate+hash", |b| {
        b.iter(|| RefreshToken::generate(&family).hash())
    });
    let token = RefreshToken::generate(&family);
    c.bench_function("refresh/successor+hash", |b| {
        b.iter(|| token.successor(b"0123456789abcdef0123456789abcdef").hash())
    });
}

fn bcrypt_cost_12(c: &mut Criterion) {
    let hash = bcrypt::hash("correct horse battery", 12).unwrap();
    let mut group = c.benchmark_group("bcrypt");
    group.sample_size(10);
    group.bench_function("verify/cost12", |b| {
        b.iter(|| bcrypt::verify("correct horse battery", &hash).unwrap())
    });
    group.finish();
}

criterion_group!(
    benches,
    signing_and_verification,
    refresh_tokens,
    bcrypt_cost_12
);
criterion_main!(benches);
