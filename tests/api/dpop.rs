//! DPoP (RFC 9449) as a client and an attacker see it: proofs built by
//! hand (ES256 and EdDSA keys from aws-lc-rs, the JWS assembled here, so a
//! test can put anything in it), sent to `/token`, `/api/users/login`,
//! `/introspect` and the resource layer of `/api`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tessera::domain::clients::NewClient;

use crate::common::{
    Backend, PASSWORD, TestApp, assert_oauth_error, assert_problem, body, unique_email,
};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A client's DPoP key.
pub enum DpopKey {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// What goes in one proof; `DpopKey::proof` fills the rest.
#[derive(Clone, Default)]
pub struct ProofFor<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub access_token: Option<&'a str>,
    pub nonce: Option<&'a str>,
    /// Seconds to shift `iat` by (negative: in the past).
    pub age: i64,
    /// A fixed `jti` (a replay); random when `None`.
    pub jti: Option<&'a str>,
}

impl DpopKey {
    pub fn es256() -> Self {
        let der = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .unwrap();
        Self::Es256(
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref())
                .unwrap(),
        )
    }

    pub fn ed25519() -> Self {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Self::Ed25519(Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
        }
    }

    pub fn jwk(&self) -> Value {
        match self {
            Self::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Self::Ed25519(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
        }
    }

    /// The RFC 7638 thumbprint, computed here independently of the server.
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = match self {
            Self::Es256(_) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["x"].as_str().unwrap(),
                jwk["y"].as_str().unwrap()
            ),
            Self::Ed25519(_) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                jwk["x"].as_str().unwrap()
            ),
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Es256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .unwrap()
                .as_ref()
                .to_vec(),
            Self::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }

    /// A compact JWS of `header` and `claims`, signed with this key.
    pub fn jws(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        format!("{input}.{}", b64(&self.sign(input.as_bytes())))
    }

    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()})
    }

    pub fn claims(&self, p: &ProofFor<'_>) -> Value {
        let mut claims = json!({
            "jti": p.jti.map(str::to_owned).unwrap_or_else(|| b64(&rand_bytes())),
            "htm": p.method,
            "htu": p.uri,
            "iat": now() + p.age,
        });
        if let Some(token) = p.access_token {
            claims["ath"] = json!(b64(&Sha256::digest(token.as_bytes())));
        }
        if let Some(nonce) = p.nonce {
            claims["nonce"] = json!(nonce);
        }
        claims
    }

    pub fn proof(&self, p: ProofFor<'_>) -> String {
        self.jws(&self.header(), &self.claims(&p))
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    bytes
}

/// The proof a client sends to `path` of `app` (htu: the issuer's URL, as
/// the metadata names the endpoints).
pub fn proof_at(app: &TestApp, key: &DpopKey, path: &str) -> String {
    key.proof(ProofFor {
        method: "POST",
        uri: &format!("{}{path}", app.config.issuer),
        ..ProofFor::default()
    })
}

pub async fn login_with(app: &TestApp, email: &str, proof: Option<&str>) -> Response {
    let mut request = app
        .http
        .post(app.url("/api/users/login"))
        .json(&json!({"email": email, "password": PASSWORD}));
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    request.send().await.unwrap()
}

/// The token response of a login with a proof by `key`.
async fn bound_login(app: &TestApp, email: &str, key: &DpopKey) -> Value {
    let response = login_with(app, email, Some(&proof_at(app, key, "/api/users/login"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await
}

async fn signed_up(app: &TestApp, tag: &str) -> String {
    let email = unique_email(tag);
    assert_eq!(app.signup(&email, PASSWORD).await.status(), 201);
    email
}

/// `/token` with `form`, HTTP Basic when `basic`, and a `DPoP` header when `proof`.
pub async fn token_with(
    app: &TestApp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
    proof: Option<&str>,
) -> Response {
    let mut request = app.http.post(app.url("/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    request.send().await.unwrap()
}

async fn refresh_with(app: &TestApp, refresh_token: &str, proof: Option<&str>) -> Response {
    token_with(
        app,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "tessera"),
        ],
        proof,
    )
    .await
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A confidential client that may introspect.
async fn introspector(app: &TestApp) -> (String, String) {
    let (id, secret) = app
        .client(NewClient {
            name: "resource server".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["api.read".into()],
            ..NewClient::default()
        })
        .await;
    (id, secret.unwrap())
}

async fn introspect(app: &TestApp, client: &(String, String), token: &str) -> Value {
    body(
        app.post_form(
            "/introspect",
            Some((&client.0, &client.1)),
            &[("token", token)],
        )
        .await,
    )
    .await
}

async fn a_login_with_a_proof_binds_every_token_to_the_key(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = signed_up(&app, "dpop-login").await;
    let key = DpopKey::es256();

    let response = login_with(
        &app,
        &email,
        Some(&proof_at(&app, &key, "/api/users/login")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = body(response).await;
    assert_eq!(tokens["token_type"], "DPoP");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["cnf"]["jkt"], key.thumbprint());

    let resource = introspector(&app).await;
    let info = introspect(&app, &resource, access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "DPoP");
    assert_eq!(info["cnf"]["jkt"], key.thumbprint());
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let info = introspect(&app, &resource, refresh).await;
    assert_eq!(info["cnf"]["jkt"], key.thumbprint(), "{info}");

    // Without a proof nothing is bound, as before.
    let plain = body(login_with(&app, &email, None).await).await;
    assert_eq!(plain["token_type"], "Bearer");
    assert!(
        claims_of(plain["access_token"].as_str().unwrap())
            .get("cnf")
            .is_none()
    );
}

async fn a_bound_family_refreshes_only_with_its_key_and_a_thief_cannot_burn_it(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = signed_up(&app, "dpop-refresh").await;
    let (key, thief) = (DpopKey::es256(), DpopKey::ed25519());
    let tokens = bound_login(&app, &email, &key).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // The thief's own key, and no proof at all: refused, nothing changes.
    let stolen = refresh_with(&app, &refresh, Some(&proof_at(&app, &thief, "/token"))).await;
    let error = assert_oauth_error(stolen, 400, "invalid_grant").await;
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("DPoP"),
        "{error}"
    );
    assert_oauth_error(
        refresh_with(&app, &refresh, None).await,
        400,
        "invalid_grant",
    )
    .await;

    // The rightful client still refreshes (the family was not revoked).
    let response = refresh_with(&app, &refresh, Some(&proof_at(&app, &key, "/token"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let next = body(response).await;
    assert_eq!(next["token_type"], "DPoP");
    assert_eq!(
        claims_of(next["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.thumbprint()
    );

    // Even the already-rotated token in the thief's hands cannot trigger
    // reuse detection without the key.
    let replay = refresh_with(&app, &refresh, Some(&proof_at(&app, &thief, "/token"))).await;
    assert_oauth_error(replay, 400, "invalid_grant").await;
    let successor = next["refresh_token"].as_str().unwrap();
    let again = refresh_with(&app, successor, Some(&proof_at(&app, &key, "/token"))).await;
    assert_eq!(again.status(), StatusCode::OK, "the family lives on");
}

async fn an_unbound_family_may_bind_its_access_tokens(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("dpop-unbound").await;
    let key = DpopKey::es256();
    let response = refresh_with(
        &app,
        &user.refresh_token,
        Some(&proof_at(&app, &key, "/token")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = body(response).await;
    assert_eq!(tokens["token_type"], "DPoP");
    // The family itself stays unbound: the next refresh needs no proof.
    let next = refresh_with(&app, tokens["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(body(next).await["token_type"], "Bearer");
}

async fn a_proof_is_used_once(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = signed_up(&app, "dpop-replay").await;
    let key = DpopKey::es256();
    let proof = proof_at(&app, &key, "/api/users/login");
    assert_eq!(login_with(&app, &email, Some(&proof)).await.status(), 200);
    let replay = login_with(&app, &email, Some(&proof)).await;
    let problem = assert_problem(replay, 400, "invalid_dpop_proof").await;
    assert!(problem["detail"].as_str().unwrap().contains("already used"));
}

async fn proofs_for_another_request_or_time_are_refused(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let user = app.user("dpop-checks").await;
    let key = DpopKey::es256();
    let token_uri = format!("{}/token", app.config.issuer);
    let other_uri = format!("{}/revoke", app.config.issuer);
    let cases = [
        (
            "htu of another endpoint",
            ProofFor {
                method: "POST",
                uri: &other_uri,
                ..Default::default()
            },
        ),
        (
            "htm GET",
            ProofFor {
                method: "GET",
                uri: &token_uri,
                ..Default::default()
            },
        ),
        (
            "iat 10 minutes old",
            ProofFor {
                method: "POST",
                uri: &token_uri,
                age: -600,
                ..Default::default()
            },
        ),
        (
            "iat a minute ahead",
            ProofFor {
                method: "POST",
                uri: &token_uri,
                age: 60,
                ..Default::default()
            },
        ),
    ];
    for (case, proof) in cases {
        let response = refresh_with(&app, &user.refresh_token, Some(&key.proof(proof))).await;
        let error = assert_oauth_error(response, 400, "invalid_dpop_proof").await;
        assert!(!error.to_string().contains(&user.refresh_token), "{case}");
    }
    // The refresh token was never touched by those.
    let ok = refresh_with(
        &app,
        &user.refresh_token,
        Some(&proof_at(&app, &key, "/token")),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
}

async fn client_credentials_with_a_proof_are_bound(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (id, secret) = introspector(&app).await;
    let key = DpopKey::ed25519();
    let response = token_with(
        &app,
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
        Some(&proof_at(&app, &key, "/token")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = body(response).await;
    assert_eq!(tokens["token_type"], "DPoP");
    assert_eq!(
        claims_of(tokens["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.thumbprint()
    );
    // A client's token has no user scope: 403, answered in its scheme.
    let access = tokens["access_token"].as_str().unwrap();
    let me = format!("{}/api/users/me", app.config.issuer);
    let proof = key.proof(ProofFor {
        method: "GET",
        uri: &me,
        access_token: Some(access),
        ..Default::default()
    });
    let response = get_dpop(&app, "/api/users/me", access, &proof).await;
    assert_eq!(response.status(), 403);
    let challenge = challenge(&response);
    assert!(
        challenge.starts_with("DPoP error=\"insufficient_scope\"") && challenge.contains("algs="),
        "{challenge}"
    );
}

async fn server_nonces_are_demanded_and_honoured(backend: Backend) {
    let app = TestApp::spawn_on_with(backend, |c| c.dpop_nonce = true).await;
    let email = signed_up(&app, "dpop-nonce").await;
    let key = DpopKey::es256();
    let uri = format!("{}/api/users/login", app.config.issuer);

    let first = login_with(
        &app,
        &email,
        Some(&proof_at(&app, &key, "/api/users/login")),
    )
    .await;
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_problem(first, 400, "use_dpop_nonce").await;

    let forged = key.proof(ProofFor {
        method: "POST",
        uri: &uri,
        nonce: Some("forged-nonce"),
        ..Default::default()
    });
    let refused = login_with(&app, &email, Some(&forged)).await;
    assert!(refused.headers().contains_key("dpop-nonce"));
    assert_problem(refused, 400, "use_dpop_nonce").await;

    let proof = key.proof(ProofFor {
        method: "POST",
        uri: &uri,
        nonce: Some(&nonce),
        ..Default::default()
    });
    let response = login_with(&app, &email, Some(&proof)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().contains_key("dpop-nonce"),
        "the next nonce"
    );
    let tokens = body(response).await;

    // /token answers with the OAuth error and the header.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let without = refresh_with(&app, refresh, Some(&proof_at(&app, &key, "/token"))).await;
    assert!(without.headers().contains_key("dpop-nonce"));
    assert_oauth_error(without, 400, "use_dpop_nonce").await;
    let token_uri = format!("{}/token", app.config.issuer);
    let with = key.proof(ProofFor {
        method: "POST",
        uri: &token_uri,
        nonce: Some(&nonce),
        ..Default::default()
    });
    assert_eq!(refresh_with(&app, refresh, Some(&with)).await.status(), 200);

    // Unbound requests need no nonce.
    assert_eq!(login_with(&app, &email, None).await.status(), 200);
}

async fn public_clients_can_be_required_to_use_dpop(backend: Backend) {
    let app = TestApp::spawn_on_with(backend, |c| c.dpop_required_for_public_clients = true).await;
    let email = signed_up(&app, "dpop-required").await;
    // The built-in client of the user API is public.
    let refused = login_with(&app, &email, None).await;
    assert_problem(refused, 400, "invalid_dpop_proof").await;
    let key = DpopKey::es256();
    let ok = login_with(
        &app,
        &email,
        Some(&proof_at(&app, &key, "/api/users/login")),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let tokens = body(ok).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_oauth_error(
        refresh_with(&app, refresh, None).await,
        400,
        "invalid_dpop_proof",
    )
    .await;
    // Confidential clients are not concerned.
    let (id, secret) = introspector(&app).await;
    let cc = token_with(
        &app,
        Some((&id, &secret)),
        &[("grant_type", "client_credentials")],
        None,
    )
    .await;
    assert_eq!(body(cc).await["token_type"], "Bearer");
}

async fn dpop_bound_clients_need_a_proof(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (id, secret) = app
        .client(NewClient {
            name: "bound service".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["api.read".into()],
            dpop_bound_access_tokens: true,
            ..NewClient::default()
        })
        .await;
    let secret = secret.unwrap();
    let form = [("grant_type", "client_credentials")];
    let refused = token_with(&app, Some((&id, &secret)), &form, None).await;
    let error = assert_oauth_error(refused, 400, "invalid_dpop_proof").await;
    assert!(!error.to_string().contains(&secret));
    let key = DpopKey::es256();
    let ok = token_with(
        &app,
        Some((&id, &secret)),
        &form,
        Some(&proof_at(&app, &key, "/token")),
    )
    .await;
    assert_eq!(body(ok).await["token_type"], "DPoP");
    // Other clients are not concerned.
    let (other, other_secret) = introspector(&app).await;
    let plain = token_with(&app, Some((&other, &other_secret)), &form, None).await;
    assert_eq!(body(plain).await["token_type"], "Bearer");
}

/// Proofs an attacker would send: every one refused with
/// `invalid_dpop_proof`, nothing issued, nothing echoed.
async fn hostile_proofs_are_refused(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = signed_up(&app, "dpop-hostile").await;
    let key = DpopKey::es256();
    let uri = format!("{}/api/users/login", app.config.issuer);
    let claims = key.claims(&ProofFor {
        method: "POST",
        uri: &uri,
        ..Default::default()
    });
    let mut private = key.header();
    private["jwk"]["d"] = json!(b64(&[1u8; 32]));
    let mut symmetric = key.header();
    symmetric["alg"] = json!("HS256");
    symmetric["jwk"] = json!({"kty": "oct", "k": b64(b"secret")});
    let mut none = key.header();
    none["alg"] = json!("none");
    let mut wrong_typ = key.header();
    wrong_typ["typ"] = json!("JWT");
    let other = DpopKey::es256();
    let mut swapped = key.header();
    swapped["jwk"] = other.jwk();
    let huge = format!("{}.{}.{}", "a".repeat(6000), "b".repeat(6000), "c");
    let hostile = [
        ("garbage", "not a proof".to_owned()),
        ("huge", huge),
        ("private key in the header", key.jws(&private, &claims)),
        ("symmetric key", key.jws(&symmetric, &claims)),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(none.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            ),
        ),
        ("typ JWT", key.jws(&wrong_typ, &claims)),
        (
            "signed by another key than the header's",
            key.jws(&swapped, &claims),
        ),
        (
            "no jti",
            key.jws(
                &key.header(),
                &json!({"htm": "POST", "htu": uri, "iat": now()}),
            ),
        ),
        (
            "jti too long",
            key.proof(ProofFor {
                method: "POST",
                uri: &uri,
                jti: Some(&"j".repeat(5000)),
                ..Default::default()
            }),
        ),
    ];
    for (case, proof) in hostile {
        let response = login_with(&app, &email, Some(&proof)).await;
        assert_eq!(response.status(), 400, "{case}");
        let text = response.text().await.unwrap();
        assert!(text.contains("invalid_dpop_proof"), "{case}: {text}");
        assert!(!text.contains("access_token"), "{case}");
    }
    // Two DPoP headers.
    let response = app
        .http
        .post(app.url("/api/users/login"))
        .header("DPoP", proof_at(&app, &key, "/api/users/login"))
        .header("DPoP", proof_at(&app, &key, "/api/users/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "invalid_dpop_proof").await;
}

/// A GET of `path` with `Authorization: DPoP <token>` and `proof`.
async fn get_dpop(app: &TestApp, path: &str, token: &str, proof: &str) -> Response {
    app.http
        .get(app.url(path))
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap()
}

fn challenge(response: &Response) -> String {
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn resource_requests_need_the_bound_key_and_the_token_hash(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = signed_up(&app, "dpop-resource").await;
    let key = DpopKey::es256();
    let tokens = bound_login(&app, &email, &key).await;
    let access = tokens["access_token"].as_str().unwrap();
    let other = bound_login(&app, &email, &key).await;
    let other_access = other["access_token"].as_str().unwrap();
    let me = format!("{}/api/users/me", app.config.issuer);
    let get = |token| ProofFor {
        method: "GET",
        uri: &me,
        access_token: Some(token),
        ..Default::default()
    };

    let proof = key.proof(get(access));
    let response = get_dpop(&app, "/api/users/me", access, &proof).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["email"], email);

    // The same proof again, a proof for another token, by another key, for
    // another URI: each refused with a DPoP challenge.
    let cases = [
        ("replayed", proof.clone()),
        ("ath of another token", key.proof(get(other_access))),
        ("another key", DpopKey::es256().proof(get(access))),
        (
            "no ath",
            key.proof(ProofFor {
                method: "GET",
                uri: &me,
                ..Default::default()
            }),
        ),
        (
            "htm POST",
            key.proof(ProofFor {
                method: "POST",
                uri: &me,
                access_token: Some(access),
                ..Default::default()
            }),
        ),
    ];
    for (case, proof) in cases {
        let response = get_dpop(&app, "/api/users/me", access, &proof).await;
        assert_eq!(response.status(), 401, "{case}");
        let challenge = challenge(&response);
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("error=\"invalid_dpop_proof\""),
            "{case}: {challenge}"
        );
        assert_problem(response, 401, "invalid_dpop_proof").await;
    }

    // /userinfo takes the DPoP scheme too.
    let userinfo = format!("{}/userinfo", app.config.issuer);
    let proof = key.proof(ProofFor {
        method: "GET",
        uri: &userinfo,
        access_token: Some(access),
        ..Default::default()
    });
    let response = get_dpop(&app, "/userinfo", access, &proof).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(body(response).await["sub"].is_string());
}

async fn a_bound_token_sent_as_bearer_is_refused_with_a_dpop_challenge(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let email = signed_up(&app, "dpop-bearer").await;
    let key = DpopKey::es256();
    let tokens = bound_login(&app, &email, &key).await;
    let access = tokens["access_token"].as_str().unwrap();

    for path in ["/api/users/me", "/userinfo"] {
        let response = app.get_auth(path, access).await;
        assert_eq!(response.status(), 401, "{path}");
        let challenge = challenge(&response);
        assert!(challenge.starts_with("DPoP "), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(
            challenge.contains("algs=\"ES256 EdDSA RS256 PS256\""),
            "{challenge}"
        );
    }
    // In a form body (RFC 6750 §2.2), a bearer token's other way.
    let response = app
        .post_form("/userinfo", None, &[("access_token", access)])
        .await;
    assert_eq!(response.status(), 401);
    assert!(challenge(&response).starts_with("DPoP "));
    // An unbound token under the DPoP scheme is refused as well.
    let plain = body(login_with(&app, &email, None).await).await;
    let plain = plain["access_token"].as_str().unwrap();
    let me = format!("{}/api/users/me", app.config.issuer);
    let proof = key.proof(ProofFor {
        method: "GET",
        uri: &me,
        access_token: Some(plain),
        ..Default::default()
    });
    let response = get_dpop(&app, "/api/users/me", plain, &proof).await;
    assert_eq!(response.status(), 401);
    // Unbound tokens as Bearer work as ever, and clients learn DPoP exists.
    assert_eq!(app.get_auth("/api/users/me", plain).await.status(), 200);
    let anonymous = app.get("/api/users/me").await;
    let offered: Vec<_> = anonymous
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        offered.iter().any(|c| c.starts_with("DPoP ")),
        "{offered:?}"
    );
}

async fn metadata_names_the_proof_algorithms(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let metadata = body(app.get("/.well-known/openid-configuration").await).await;
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256", "PS256"])
    );
}

macro_rules! on_sqlite_and_redis {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod redis {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Redis).await })*
        }
    };
}

on_sqlite_and_redis!(
    a_login_with_a_proof_binds_every_token_to_the_key,
    a_bound_family_refreshes_only_with_its_key_and_a_thief_cannot_burn_it,
    an_unbound_family_may_bind_its_access_tokens,
    a_proof_is_used_once,
    proofs_for_another_request_or_time_are_refused,
    client_credentials_with_a_proof_are_bound,
    server_nonces_are_demanded_and_honoured,
    public_clients_can_be_required_to_use_dpop,
    dpop_bound_clients_need_a_proof,
    hostile_proofs_are_refused,
    metadata_names_the_proof_algorithms,
    resource_requests_need_the_bound_key_and_the_token_hash,
    a_bound_token_sent_as_bearer_is_refused_with_a_dpop_challenge,
);

/// Two nodes on one Redis (and one MongoDB): a proof used at one is
/// refused at the other, and a family bound at one is bound at the other.
#[tokio::test]
async fn a_proof_replayed_at_another_node_is_refused() {
    let a = TestApp::spawn_on(Backend::Mongo).await;
    let (db, keys) = (a.config.mongodb_db.clone(), a.config.keys_dir.clone());
    let b = TestApp::spawn_on_with(Backend::Mongo, move |c| {
        c.mongodb_db = db;
        c.keys_dir = keys;
    })
    .await;
    let email = signed_up(&a, "dpop-nodes").await;
    let key = DpopKey::es256();

    let proof = proof_at(&a, &key, "/api/users/login");
    let tokens = body(login_with(&a, &email, Some(&proof)).await).await;
    assert_eq!(tokens["token_type"], "DPoP");
    assert_problem(
        login_with(&b, &email, Some(&proof)).await,
        400,
        "invalid_dpop_proof",
    )
    .await;

    let refresh = tokens["refresh_token"].as_str().unwrap();
    let thief = DpopKey::es256();
    let stolen = refresh_with(&b, refresh, Some(&proof_at(&b, &thief, "/token"))).await;
    assert_oauth_error(stolen, 400, "invalid_grant").await;
    let proof = proof_at(&b, &key, "/token");
    assert_eq!(refresh_with(&b, refresh, Some(&proof)).await.status(), 200);
    assert_oauth_error(
        refresh_with(&a, refresh, Some(&proof)).await,
        400,
        "invalid_dpop_proof",
    )
    .await;
}
