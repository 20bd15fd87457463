//! DPoP-bound tokens at the resource layer: `verify_dpop`, the replay
//! cache, and (feature `axum`) the extractors and the layer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};

use super::*;
use crate::dpop::access_token_hash;
use crate::dpop::tests::ClientKey;
use crate::tests::{FixedClock, claims, sign, verifier};

const API: &str = "https://api.test";

fn now() -> u64 {
    u64::try_from(SystemClock.now()).expect("after 1970")
}

/// A token with `scope`, bound to `key`.
fn bound_token(key: &ClientKey, scope: &str) -> String {
    let mut c = claims(scope);
    c.cnf = Some(Confirmation {
        jkt: key.thumbprint(),
    });
    sign(&c)
}

fn proof_claims(method: &str, htu: &str, token: &str) -> Value {
    json!({
        "jti": format!("jti-{}", next_id()),
        "htm": method,
        "htu": htu,
        "iat": now(),
        "ath": access_token_hash(token),
    })
}

/// A distinct number per call, for distinct `jti`s.
fn next_id() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A proof of `key` for `method` at `htu`, carrying the hash of `token`.
fn proof(key: &ClientKey, method: &str, htu: &str, token: &str) -> String {
    key.proof(&proof_claims(method, htu, token))
}

fn dpop_verifier() -> AccessTokenVerifier {
    verifier().dpop_base_url(API)
}

async fn refused(v: &AccessTokenVerifier, token: &str, proof: &str) -> DpopRejection {
    match v.verify_dpop(token, proof, "GET", "/items", None).await {
        Err(rejection) => rejection,
        Ok(_) => panic!("expected a refusal"),
    }
}

#[test]
fn the_confirmation_claim_round_trips_and_is_omitted_when_unbound() {
    let mut c = claims("s");
    assert!(
        serde_json::to_value(&c)
            .expect("serializes")
            .get("cnf")
            .is_none()
    );
    assert_eq!(c.jkt(), None);
    c.cnf = Some(Confirmation {
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into(),
    });
    let value = serde_json::to_value(&c).expect("serializes");
    assert_eq!(
        value["cnf"],
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
    );
    let back: AccessClaims = serde_json::from_value(value).expect("deserializes");
    assert_eq!(
        back.jkt(),
        Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
    );
}

#[tokio::test]
async fn a_bound_token_with_its_proof_is_accepted_for_each_algorithm() {
    let v = dpop_verifier();
    for key in [
        ClientKey::es256(),
        ClientKey::ed25519(),
        ClientKey::rsa(aws_lc_rs::rsa::KeySize::Rsa2048, true),
    ] {
        let token = bound_token(&key, "items:read");
        let proof = proof(&key, "GET", "https://api.test/items", &token);
        let claims = v
            .verify_dpop(&token, &proof, "GET", "/items", Some("ignored.test"))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
        assert_eq!(claims.jkt(), Some(key.thumbprint().as_str()));
    }
}

#[tokio::test]
async fn the_proof_must_match_the_token_the_key_and_the_request() {
    let v = dpop_verifier();
    let key = ClientKey::es256();
    let token = bound_token(&key, "s");
    let htu = "https://api.test/items";

    let for_another_token = proof(&key, "GET", htu, "another token");
    assert_eq!(
        refused(&v, &token, &for_another_token).await,
        DpopRejection::Proof(DpopError::AccessTokenHash.reason())
    );
    let by_another_key = proof(&ClientKey::es256(), "GET", htu, &token);
    assert_eq!(
        refused(&v, &token, &by_another_key).await,
        DpopRejection::Proof(DpopRejection::WRONG_KEY)
    );
    let for_another_path = proof(&key, "GET", "https://api.test/orders", &token);
    assert_eq!(
        refused(&v, &token, &for_another_path).await,
        DpopRejection::Proof(DpopError::Uri.reason())
    );
    let for_another_origin = proof(&key, "GET", "https://evil.test/items", &token);
    assert_eq!(
        refused(&v, &token, &for_another_origin).await,
        DpopRejection::Proof(DpopError::Uri.reason())
    );
    let for_another_method = proof(&key, "POST", htu, &token);
    assert_eq!(
        refused(&v, &token, &for_another_method).await,
        DpopRejection::Proof(DpopError::Method.reason())
    );
    assert_eq!(
        refused(&v, &token, "not.a.proof").await,
        DpopRejection::Proof(DpopError::Malformed.reason())
    );
}

#[tokio::test]
async fn iat_is_judged_by_max_age_and_leeway() {
    let key = ClientKey::ed25519();
    let token = bound_token(&key, "s");
    let at = |iat: u64| {
        let mut c = proof_claims("GET", "https://api.test/items", &token);
        c["iat"] = json!(iat);
        key.proof(&c)
    };
    let v = dpop_verifier();
    // Default: 60 s old plus the 5 s DPoP leeway; 5 s ahead (the token's
    // 30 s leeway does not apply to proofs).
    for accepted in [now() - 63, now() + 3] {
        assert!(
            v.verify_dpop(&token, &at(accepted), "GET", "/items", None)
                .await
                .is_ok()
        );
    }
    for too_far in [now() - 70, now() + 10, now() + 25] {
        assert_eq!(
            refused(&v, &token, &at(too_far)).await,
            DpopRejection::Proof(DpopError::Time.reason())
        );
    }
    let strict = dpop_verifier().dpop_max_age(10).dpop_leeway(0);
    assert_eq!(
        refused(&strict, &token, &at(now() - 15)).await,
        DpopRejection::Proof(DpopError::Time.reason())
    );
    assert!(
        strict
            .verify_dpop(&token, &at(now() - 5), "GET", "/items", None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_path_with_dot_segments_is_refused() {
    let v = dpop_verifier();
    let key = ClientKey::es256();
    let token = bound_token(&key, "s");
    // Each proof names the normalised URI; the router would see the raw
    // path, which may lead elsewhere.
    for path in ["/items/x/..", "/items/x/%2e%2E", "/./items", "/items/."] {
        let p = proof(&key, "GET", "https://api.test/items", &token);
        assert_eq!(
            v.verify_dpop(&token, &p, "GET", path, None).await.err(),
            Some(DpopRejection::Proof(DpopError::Uri.reason())),
            "{path}"
        );
    }
    assert!(super::has_dot_segment("/a/../b") && !super::has_dot_segment("/a/..b/c"));
}

#[tokio::test]
async fn a_proof_is_accepted_once() {
    let v = dpop_verifier();
    let key = ClientKey::es256();
    let token = bound_token(&key, "s");
    let proof = proof(&key, "GET", "https://api.test/items", &token);
    assert!(
        v.verify_dpop(&token, &proof, "GET", "/items", None)
            .await
            .is_ok()
    );
    assert_eq!(
        refused(&v, &token, &proof).await,
        DpopRejection::Proof(DpopRejection::REPLAYED)
    );
}

/// Records what the verifier asks; answers `answer`.
struct Recording {
    seen: Mutex<Vec<(String, u64)>>,
    answer: Option<bool>,
}

#[async_trait]
impl ProofReplay for Recording {
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, VerifyError> {
        self.seen
            .lock()
            .expect("not poisoned")
            .push((key.to_owned(), expires_at));
        self.answer.ok_or(VerifyError::Unavailable)
    }
}

#[tokio::test]
async fn the_replay_cache_gets_a_fixed_length_key_and_the_end_of_the_window() {
    let recording = Arc::new(Recording {
        seen: Mutex::default(),
        answer: Some(true),
    });
    let v = dpop_verifier()
        .dpop_replay(recording.clone())
        .dpop_max_age(120)
        .dpop_leeway(10);
    let key = ClientKey::es256();
    let token = bound_token(&key, "s");
    let mut c = proof_claims("GET", "https://api.test/items", &token);
    c["jti"] = json!("j".repeat(256));
    let iat = now() - 3;
    c["iat"] = json!(iat);
    v.verify_dpop(&token, &key.proof(&c), "GET", "/items", None)
        .await
        .expect("accepted");
    let seen = recording.seen.lock().expect("not poisoned").clone();
    assert_eq!(seen.len(), 1);
    let (replay_key, expires_at) = &seen[0];
    assert_eq!(
        *replay_key,
        replay::replay_key(&key.thumbprint(), &"j".repeat(256))
    );
    assert!(replay_key.starts_with("dpop:"));
    assert_eq!(replay_key.len(), 5 + 43);
    assert_eq!(*expires_at, iat + 120 + 10 + 1);
    // Per key: two clients choosing the same jti do not collide.
    assert_ne!(
        replay::replay_key(&key.thumbprint(), "j"),
        replay::replay_key(&ClientKey::es256().thumbprint(), "j")
    );

    let down = dpop_verifier().dpop_replay(Arc::new(Recording {
        seen: Mutex::default(),
        answer: None,
    }));
    let proof = proof(&key, "GET", "https://api.test/items", &token);
    assert_eq!(
        refused(&down, &token, &proof).await,
        DpopRejection::Unavailable
    );
}

#[tokio::test]
async fn the_token_must_be_bound_live_and_unrevoked() {
    let v = dpop_verifier();
    let key = ClientKey::es256();
    let unbound = sign(&claims("s"));
    let proof_for_unbound = proof(&key, "GET", "https://api.test/items", &unbound);
    assert_eq!(
        refused(&v, &unbound, &proof_for_unbound).await,
        DpopRejection::Token(DpopRejection::UNBOUND_TOKEN)
    );
    assert_eq!(
        refused(&v, "garbage", "x").await,
        DpopRejection::Token("malformed token")
    );

    struct Always(Option<bool>);
    #[async_trait]
    impl RevocationCheck for Always {
        async fn is_revoked(&self, _: &str, _: &AccessClaims) -> Result<bool, VerifyError> {
            self.0.ok_or(VerifyError::Unavailable)
        }
    }
    let token = bound_token(&key, "s");
    let revoked = dpop_verifier().revocation(Arc::new(Always(Some(true))));
    let p = proof(&key, "GET", "https://api.test/items", &token);
    assert_eq!(
        refused(&revoked, &token, &p).await,
        DpopRejection::Token("token revoked")
    );
    let down = dpop_verifier().revocation(Arc::new(Always(None)));
    assert_eq!(refused(&down, &token, &p).await, DpopRejection::Unavailable);
}

#[tokio::test]
async fn without_a_base_url_htu_is_judged_against_the_host_header() {
    let v = verifier();
    let key = ClientKey::es256();
    let token = bound_token(&key, "s");
    for htu in ["https://api.test/items", "http://api.test/items"] {
        let p = proof(&key, "GET", htu, &token);
        assert!(
            v.verify_dpop(&token, &p, "GET", "/items", Some("api.test"))
                .await
                .is_ok(),
            "{htu}"
        );
    }
    let p = proof(&key, "GET", "https://api.test:8443/items", &token);
    assert!(
        v.verify_dpop(&token, &p, "GET", "/items", Some("API.test:8443"))
            .await
            .is_ok()
    );
    let p = proof(&key, "GET", "https://api.test/items", &token);
    for host in [
        None,
        Some("evil.test"),
        Some(""),
        Some("user@api.test"),
        Some("api.test/x?"),
        Some("api.test#"),
    ] {
        assert_eq!(
            v.verify_dpop(&token, &p, "GET", "/items", host).await.err(),
            Some(DpopRejection::Proof(DpopError::Uri.reason())),
            "{host:?}"
        );
    }
    // A host that would rewrite the path is no host: `/x` + `?/items`.
    let p = proof(&key, "GET", "https://api.test/x", &token);
    assert!(
        v.verify_dpop(&token, &p, "GET", "/items", Some("api.test/x?"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_is_joined_to_the_request_path() {
    let v = verifier().dpop_base_url("https://gateway.test/orders-api/");
    let key = ClientKey::es256();
    let token = bound_token(&key, "s");
    let p = proof(&key, "GET", "https://gateway.test/orders-api/items", &token);
    assert!(
        v.verify_dpop(&token, &p, "GET", "/items", Some("internal:8080"))
            .await
            .is_ok()
    );
    let p = proof(&key, "GET", "https://internal:8080/items", &token);
    assert_eq!(
        v.verify_dpop(&token, &p, "GET", "/items", Some("internal:8080"))
            .await
            .err(),
        Some(DpopRejection::Proof(DpopError::Uri.reason()))
    );
}

mod memory_replay {
    use super::*;

    fn clock_at(now: i64) -> (Arc<AtomicI64>, Arc<dyn Clock>) {
        let time = Arc::new(AtomicI64::new(now));
        (time.clone(), Arc::new(FixedClock(time)))
    }

    #[tokio::test]
    async fn a_key_is_new_once_until_it_expires() {
        let (time, clock) = clock_at(1_000);
        let cache = MemoryReplay::new().clock(clock);
        assert!(cache.first_use("a", 1_010).await.expect("ok"));
        assert!(!cache.first_use("a", 1_010).await.expect("ok"));
        assert!(cache.first_use("b", 1_010).await.expect("ok"));
        time.store(1_009, Ordering::Relaxed);
        assert!(!cache.first_use("a", 1_020).await.expect("ok"));
        time.store(1_010, Ordering::Relaxed);
        assert!(cache.first_use("a", 1_020).await.expect("ok"));
        // "b" expired too and was dropped on that insert.
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn an_already_expired_key_is_not_kept() {
        let (_, clock) = clock_at(1_000);
        let cache = MemoryReplay::new().clock(clock);
        assert!(cache.first_use("old", 1_000).await.expect("ok"));
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn a_full_cache_fails_closed_and_never_forgets_a_live_proof() {
        let (_, clock) = clock_at(1_000);
        let cache = MemoryReplay::with_capacity(3).clock(clock);
        assert_eq!(cache.capacity(), 3);
        for (key, expires_at) in [("late", 1_050), ("soon", 1_005), ("mid", 1_020)] {
            assert!(cache.first_use(key, expires_at).await.expect("ok"));
        }
        assert!(matches!(
            cache.first_use("new", 1_060).await,
            Err(VerifyError::Unavailable)
        ));
        assert_eq!(cache.len(), 3);
        for kept in ["late", "soon", "mid"] {
            assert!(!cache.first_use(kept, 1_060).await.expect("ok"), "{kept}");
        }
        assert_eq!(MemoryReplay::with_capacity(0).capacity(), 1);
    }

    #[tokio::test]
    async fn the_default_cache_follows_the_verifiers_clock() {
        let time = Arc::new(AtomicI64::new(SystemClock.now()));
        let v = dpop_verifier().clock(FixedClock(time.clone()));
        let key = ClientKey::es256();
        let token = bound_token(&key, "s");
        let p = proof(&key, "GET", "https://api.test/items", &token);
        assert!(
            v.verify_dpop(&token, &p, "GET", "/items", None)
                .await
                .is_ok()
        );
        // Past the window, the proof is refused for its age, not kept.
        time.fetch_add(60 + 30 + 1, Ordering::Relaxed);
        assert_eq!(
            refused(&v, &token, &p).await,
            DpopRejection::Proof(DpopError::Time.reason())
        );
    }
}

#[cfg(feature = "axum")]
mod web {
    use axum::body::Body;
    use axum::extract::FromRef;
    use axum::http::{HeaderMap, Method, Request, StatusCode, Uri, header};
    use axum::response::Response;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::{AuthRejection, AuthScheme, Authenticated, BearerLayer, RequireScope, Scope};

    const ALGS: &str = "algs=\"ES256 EdDSA RS256 PS256\"";

    struct ItemsRead;
    impl Scope for ItemsRead {
        const SCOPE: &'static str = "items:read";
    }

    #[derive(Clone, FromRef)]
    struct State {
        verifier: Arc<AccessTokenVerifier>,
    }

    async fn items(auth: RequireScope<ItemsRead>) -> String {
        format!("{} {:?}", auth.claims.sub, auth.scheme())
    }

    fn app() -> axum::Router {
        let inner = axum::Router::new().route("/items", get(items));
        axum::Router::new()
            .merge(inner.clone())
            .nest("/v1", inner)
            .with_state(State {
                verifier: Arc::new(dpop_verifier()),
            })
    }

    /// A GET of `path` with `authorization` and each of `proofs`.
    fn request(path: &str, authorization: Option<String>, proofs: &[&str]) -> Request<Body> {
        let mut builder = Request::builder()
            .uri(path)
            .header(header::HOST, "api.test");
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        for proof in proofs {
            builder = builder.header("DPoP", *proof);
        }
        builder.body(Body::empty()).expect("a request")
    }

    fn challenges(response: &Response) -> Vec<String> {
        response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    async fn code(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("a body");
        let problem: Value = serde_json::from_slice(&body).expect("problem+json");
        problem["code"].as_str().unwrap_or_default().to_owned()
    }

    async fn body(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("a body");
        String::from_utf8_lossy(&body).into_owned()
    }

    fn dpop_challenge(error: &str, description: &str) -> String {
        format!("DPoP error=\"{error}\", error_description=\"{description}\", {ALGS}")
    }

    async fn call(app: &axum::Router, request: Request<Body>) -> Response {
        app.clone().oneshot(request).await.expect("infallible")
    }

    #[tokio::test]
    async fn a_dpop_request_is_accepted_once() {
        let app = app();
        let key = ClientKey::es256();
        let token = bound_token(&key, "items:read");
        let p = proof(&key, "GET", "https://api.test/items", &token);
        let ok = call(
            &app,
            request("/items", Some(format!("DPoP {token}")), &[&p]),
        )
        .await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body(ok).await, "user-1 Dpop");

        let again = call(
            &app,
            request("/items", Some(format!("DPoP {token}")), &[&p]),
        )
        .await;
        assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenges(&again),
            [dpop_challenge(
                "invalid_dpop_proof",
                "the proof was already used"
            )]
        );
        assert_eq!(code(again).await, "invalid_dpop_proof");

        // The scheme is case-insensitive; a nested route's htu has its prefix.
        let p = proof(&key, "GET", "https://api.test/v1/items", &token);
        let nested = call(
            &app,
            request("/v1/items", Some(format!("dpop {token}")), &[&p]),
        )
        .await;
        assert_eq!(nested.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn proof_errors_answer_invalid_dpop_proof_with_algs() {
        let app = app();
        let key = ClientKey::es256();
        let token = bound_token(&key, "items:read");
        let auth = || Some(format!("DPoP {token}"));
        let htu = "https://api.test/items";
        let cases: Vec<(Vec<String>, &str)> = vec![
            (vec![], "missing DPoP proof"),
            (
                vec![
                    proof(&key, "GET", htu, &token),
                    proof(&key, "GET", htu, &token),
                ],
                "send exactly one DPoP proof",
            ),
            (
                vec![proof(&key, "GET", htu, "other")],
                DpopError::AccessTokenHash.reason(),
            ),
            (
                vec![proof(&ClientKey::ed25519(), "GET", htu, &token)],
                DpopRejection::WRONG_KEY,
            ),
            (
                vec![proof(&key, "GET", "https://api.test/other", &token)],
                DpopError::Uri.reason(),
            ),
            (
                vec![proof(&key, "DELETE", htu, &token)],
                DpopError::Method.reason(),
            ),
        ];
        for (proofs, description) in cases {
            let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
            let refused = call(&app, request("/items", auth(), &proofs)).await;
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{description}");
            assert_eq!(
                challenges(&refused),
                [dpop_challenge("invalid_dpop_proof", description)]
            );
            assert_eq!(code(refused).await, "invalid_dpop_proof");
        }
    }

    #[tokio::test]
    async fn a_bound_token_as_bearer_is_refused_with_a_dpop_challenge() {
        let app = app();
        let key = ClientKey::es256();
        let token = bound_token(&key, "items:read");
        let p = proof(&key, "GET", "https://api.test/items", &token);
        for proofs in [vec![], vec![p.as_str()]] {
            let refused = call(
                &app,
                request("/items", Some(format!("Bearer {token}")), &proofs),
            )
            .await;
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                challenges(&refused),
                [
                    "DPoP error=\"invalid_token\", error_description=\"the token is DPoP-bound: present it with the DPoP scheme and a proof\", algs=\"ES256 EdDSA RS256 PS256\""
                ]
            );
            assert_eq!(code(refused).await, "invalid_token");
        }
    }

    #[tokio::test]
    async fn token_errors_under_the_dpop_scheme_answer_a_dpop_challenge() {
        let app = app();
        let key = ClientKey::es256();
        let unbound = sign(&claims("items:read"));
        let p = proof(&key, "GET", "https://api.test/items", &unbound);
        let refused = call(
            &app,
            request("/items", Some(format!("DPoP {unbound}")), &[&p]),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenges(&refused),
            [dpop_challenge(
                "invalid_token",
                DpopRejection::UNBOUND_TOKEN
            )]
        );
        assert_eq!(code(refused).await, "invalid_token");

        let garbage = call(&app, request("/items", Some("DPoP x.y.z".into()), &[&p])).await;
        assert_eq!(
            challenges(&garbage),
            [dpop_challenge("invalid_token", "malformed token")]
        );
    }

    #[tokio::test]
    async fn bearer_requests_are_unchanged_and_missing_ones_learn_of_dpop() {
        let app = app();
        let plain = sign(&claims("items:read"));
        let ok = call(
            &app,
            request("/items", Some(format!("Bearer {plain}")), &[]),
        )
        .await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body(ok).await, "user-1 Bearer");

        let bad = call(&app, request("/items", Some("Bearer x.y.z".into()), &[])).await;
        assert_eq!(
            challenges(&bad),
            ["Bearer error=\"invalid_token\", error_description=\"malformed token\""]
        );

        for authorization in [None, Some("Basic dXNlcjpwYXNz".to_owned())] {
            let missing = call(&app, request("/items", authorization, &[])).await;
            assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                challenges(&missing),
                [
                    "Bearer error=\"invalid_token\", error_description=\"missing bearer token\""
                        .to_owned(),
                    format!("DPoP {ALGS}"),
                ]
            );
            assert_eq!(code(missing).await, "invalid_token");
        }
    }

    #[tokio::test]
    async fn insufficient_scope_answers_in_the_scheme_used() {
        let app = app();
        let key = ClientKey::es256();
        let token = bound_token(&key, "profile");
        let p = proof(&key, "GET", "https://api.test/items", &token);
        let short = call(
            &app,
            request("/items", Some(format!("DPoP {token}")), &[&p]),
        )
        .await;
        assert_eq!(short.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            challenges(&short),
            [format!(
                "DPoP error=\"insufficient_scope\", scope=\"items:read\", {ALGS}"
            )]
        );
        let plain = sign(&claims("profile"));
        let short = call(
            &app,
            request("/items", Some(format!("Bearer {plain}")), &[]),
        )
        .await;
        assert_eq!(
            challenges(&short),
            ["Bearer error=\"insufficient_scope\", scope=\"items:read\""]
        );
    }

    #[tokio::test]
    async fn an_unreachable_replay_cache_answers_503() {
        let down = dpop_verifier().dpop_replay(Arc::new(Recording {
            seen: Mutex::default(),
            answer: None,
        }));
        let app = axum::Router::new()
            .route("/items", get(items))
            .with_state(State {
                verifier: Arc::new(down),
            });
        let key = ClientKey::es256();
        let token = bound_token(&key, "items:read");
        let p = proof(&key, "GET", "https://api.test/items", &token);
        let answer = call(
            &app,
            request("/items", Some(format!("DPoP {token}")), &[&p]),
        )
        .await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(challenges(&answer).is_empty());
        assert_eq!(code(answer).await, "backend_unavailable");
    }

    #[tokio::test]
    async fn the_layer_accepts_dpop_and_refuses_what_the_extractor_refuses() {
        let service = tower::ServiceBuilder::new()
            .layer(BearerLayer::new(Arc::new(dpop_verifier())).require_scope("items:read"))
            .service_fn(|req: Request<Body>| async move {
                let auth = req.extensions().get::<Authenticated>().cloned();
                let scheme = auth.map(|a| a.scheme());
                Ok::<_, std::convert::Infallible>(axum::http::Response::new(Body::from(format!(
                    "{scheme:?}"
                ))))
            });
        let call = |request| service.clone().oneshot(request);
        let key = ClientKey::ed25519();
        let token = bound_token(&key, "items:read");
        let p = proof(&key, "GET", "https://api.test/items", &token);

        let ok = call(request("/items", Some(format!("DPoP {token}")), &[&p]))
            .await
            .expect("infallible");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body(ok).await, "Some(Dpop)");
        let replayed = call(request("/items", Some(format!("DPoP {token}")), &[&p]))
            .await
            .expect("infallible");
        assert_eq!(
            challenges(&replayed),
            [dpop_challenge(
                "invalid_dpop_proof",
                "the proof was already used"
            )]
        );
        let as_bearer = call(request("/items", Some(format!("Bearer {token}")), &[]))
            .await
            .expect("infallible");
        assert_eq!(as_bearer.status(), StatusCode::UNAUTHORIZED);
        assert!(challenges(&as_bearer)[0].starts_with("DPoP error=\"invalid_token\""));
        let missing = call(request("/items", None, &[]))
            .await
            .expect("infallible");
        assert_eq!(challenges(&missing).len(), 2);

        let short = bound_token(&key, "profile");
        let p = proof(&key, "GET", "https://api.test/items", &short);
        let forbidden = call(request("/items", Some(format!("DPoP {short}")), &[&p]))
            .await
            .expect("infallible");
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(challenges(&forbidden)[0].starts_with("DPoP error=\"insufficient_scope\""));
    }

    #[tokio::test]
    async fn from_request_and_from_headers_directly() {
        let v = dpop_verifier();
        let key = ClientKey::es256();
        let token = bound_token(&key, "s");
        let p = proof(&key, "POST", "https://api.test/orders", &token);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("DPoP {token}").parse().expect("a value"),
        );
        headers.insert("dpop", p.parse().expect("a value"));
        let uri: Uri = "/orders?page=2".parse().expect("a URI");
        let auth = Authenticated::from_request(&Method::POST, &uri, &headers, &v)
            .await
            .expect("accepted");
        assert_eq!(auth.scheme(), AuthScheme::Dpop);
        assert_eq!(auth.token, token);

        // Bearer-only: the DPoP scheme reads as missing, a bound token is refused.
        let refused = Authenticated::from_headers(&headers, &v).await.err();
        assert!(matches!(
            refused,
            Some(crate::BearerRejection(VerifyError::Invalid(
                "missing bearer token"
            )))
        ));
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a value"),
        );
        let refused = Authenticated::from_headers(&headers, &v).await.err();
        assert!(matches!(
            refused,
            Some(crate::BearerRejection(VerifyError::Invalid(
                DpopRejection::BOUND_TOKEN_AS_BEARER
            )))
        ));
        let refused = Authenticated::from_request(&Method::POST, &uri, &headers, &v)
            .await
            .err();
        assert!(matches!(
            refused,
            Some(AuthRejection::Dpop(DpopRejection::Token(
                DpopRejection::BOUND_TOKEN_AS_BEARER
            )))
        ));
    }
}
