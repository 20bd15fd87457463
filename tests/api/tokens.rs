//! Access tokens, JWKS and metadata, verified the way a resource server
//! would: independently, with `jsonwebtoken`, from what is served over HTTP.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tessera::config::SigningAlg;
use tessera::crypto::jwt::{AccessClaims, sign};
use tessera::crypto::keys::KeyDir;

use crate::common::{TestApp, assert_invalid_token, body};

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn access_token_verifies_against_the_served_jwks() {
    let app = TestApp::spawn().await;
    let user = app.user("jwks").await;

    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let cache = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cache.starts_with("public, max-age="), "{cache}");
    let jwks: JwkSet = response.json().await.unwrap();
    let raw: Value = serde_json::to_value(&jwks).unwrap();
    for key in raw["keys"].as_array().unwrap() {
        for member in ["kid", "kty", "alg", "use"] {
            assert!(key[member].is_string(), "{member} in {key}");
        }
        assert_eq!(key["use"], "sig");
        assert!(
            key.get("d").is_none() && key.get("p").is_none(),
            "no private members"
        );
    }

    let header = jsonwebtoken::decode_header(&user.access_token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let kid = header.kid.unwrap();
    let jwk = jwks.find(&kid).expect("kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[&app.config.issuer]);
    validation.set_audience(&[&app.config.issuer]);
    let data = jsonwebtoken::decode::<Value>(&user.access_token, &key, &validation).unwrap();
    let claims = data.claims;
    assert_eq!(claims["sub"], user.id);
    assert_eq!(claims["client_id"], "tessera");
    assert_eq!(claims["scope"], "account email openid phone profile");
    assert_eq!(claims["role"], "user");
    assert!(claims["sid"].is_string() && claims["jti"].is_string());
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 900);
}

#[tokio::test]
async fn metadata_documents_are_complete_and_identical() {
    let app = TestApp::spawn().await;
    let a = app.get("/.well-known/oauth-authorization-server").await;
    assert!(
        a.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age=")
    );
    let a = body(a).await;
    let b = body(app.get("/.well-known/openid-configuration").await).await;
    assert_eq!(a, b);
    let issuer = &app.config.issuer;
    assert_eq!(a["issuer"], *issuer);
    assert_eq!(a["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    // RFC 9126 §5: the PAR endpoint, not required unless configured.
    assert_eq!(
        a["pushed_authorization_request_endpoint"],
        format!("{issuer}/par")
    );
    assert_eq!(a["require_pushed_authorization_requests"], false);
    assert_eq!(a["request_uri_parameter_supported"], false);
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "scopes_supported",
    ] {
        assert!(!a[field].is_null(), "{field}");
    }
    assert_eq!(a["response_types_supported"], json!(["code"]));
    assert_eq!(a["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        a["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(
        a["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
}

#[tokio::test]
async fn expired_tokens_are_refused_after_the_leeway() {
    let app = TestApp::spawn().await;
    let user = app.user("expiry").await;
    app.clock.advance(900 + 10);
    // Within the 30 s leeway: still accepted.
    assert_eq!(
        app.get_auth("/api/users/me", &user.access_token)
            .await
            .status(),
        StatusCode::OK
    );
    app.clock.advance(30);
    assert_invalid_token(app.get_auth("/api/users/me", &user.access_token).await).await;
}

/// Signs `claims` with the app's own active key (as an attacker who only
/// changes claims cannot, but a test can).
fn sign_with_app_key(app: &TestApp, claims: &AccessClaims) -> String {
    let keys = KeyDir::new(&app.config.keys_dir).load().unwrap();
    sign(claims, &keys[0]).unwrap()
}

fn valid_claims(user_token: &str) -> AccessClaims {
    serde_json::from_value(claims_of(user_token)).unwrap()
}

fn forge(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn forged_and_confused_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.user("forged").await;
    let claims = claims_of(&user.access_token);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(user.access_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = header["kid"].as_str().unwrap();

    // alg: none, with and without a signature.
    let none = forge(
        json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
        &claims,
        b"",
    );
    // HS256 keyed with the public key's JWK text (the classic confusion attack).
    let jwks = body(app.get("/.well-known/jwks.json").await).await;
    let public = jwks["keys"][0].to_string();
    let hs_header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(hs_header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(public.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let hs256 = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    // A claim changed after signing.
    let mut tampered_claims = claims.clone();
    tampered_claims["role"] = json!("admin");
    let parts: Vec<&str> = user.access_token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string()),
        parts[2]
    );
    // Unknown kid, path tricks in kid, jku/x5u pointing elsewhere, crit, nested JWT.
    let unknown_kid = forge(
        json!({"alg": "RS256", "typ": "at+jwt", "kid": "../../etc/passwd"}),
        &claims,
        b"sig",
    );
    let with_crit = forge(
        json!({"alg": "RS256", "typ": "at+jwt", "kid": kid, "crit": ["exp"]}),
        &claims,
        b"sig",
    );
    let nested = forge(
        json!({"alg": "RS256", "typ": "at+jwt", "kid": kid, "cty": "JWT"}),
        &claims,
        b"sig",
    );

    for token in [
        none.clone(),
        format!("{none}x"),
        hs256,
        tampered,
        unknown_kid,
        with_crit,
        nested,
    ] {
        assert_invalid_token(app.get_auth("/api/users/me", &token).await).await;
    }
}

#[tokio::test]
async fn validly_signed_tokens_with_wrong_claims_or_type_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.user("claims").await;
    let good = valid_claims(&user.access_token);
    // Sanity: a token we sign ourselves with the same claims passes.
    let resigned = sign_with_app_key(&app, &good);
    assert_eq!(
        app.get_auth("/api/users/me", &resigned).await.status(),
        StatusCode::OK
    );

    let wrong_aud = AccessClaims {
        aud: "https://other.example".into(),
        ..good.clone()
    };
    let wrong_iss = AccessClaims {
        iss: "https://evil.example".into(),
        ..good.clone()
    };
    let expired = AccessClaims {
        exp: good.iat - 3600,
        iat: good.iat - 7200,
        ..good.clone()
    };
    let future = AccessClaims {
        iat: good.iat + 3600,
        exp: good.exp + 3600,
        ..good.clone()
    };
    for claims in [wrong_aud, wrong_iss, expired, future] {
        let token = sign_with_app_key(&app, &claims);
        assert_invalid_token(app.get_auth("/api/users/me", &token).await).await;
    }

    // A JWT of another type (e.g. an ID token) signed by the same key.
    let keys = KeyDir::new(&app.config.keys_dir).load().unwrap();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": keys[0].kid()});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_string(&good).unwrap())
    );
    let signature = keys[0].sign(input.as_bytes()).unwrap();
    let id_token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
    assert_invalid_token(app.get_auth("/api/users/me", &id_token).await).await;
}

#[tokio::test]
async fn a_token_without_the_user_scope_is_403() {
    let app = TestApp::spawn().await;
    let user = app.user("scope").await;
    let client_token = AccessClaims {
        scope: "email".into(),
        ..valid_claims(&user.access_token)
    };
    let token = sign_with_app_key(&app, &client_token);
    let response = app.get_auth("/api/users/me", &token).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
}

#[tokio::test]
async fn es256_and_eddsa_keys_sign_verifiable_tokens() {
    for alg in [SigningAlg::ES256, SigningAlg::EdDSA] {
        let app = TestApp::spawn_with(|c| c.signing_alg = alg).await;
        let user = app.user("alg").await;
        let header = jsonwebtoken::decode_header(&user.access_token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg.as_str());
        assert_eq!(
            app.get_auth("/api/users/me", &user.access_token)
                .await
                .status(),
            StatusCode::OK
        );
        let jwks: JwkSet = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        let key =
            DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&app.config.issuer]);
        jsonwebtoken::decode::<Value>(&user.access_token, &key, &validation).expect("verifies");
    }
}

#[tokio::test]
async fn the_resource_layer_works_against_a_remote_jwks() {
    use std::sync::Arc;
    use tessera::resource::{AccessTokenVerifier, RemoteJwks};
    let app = TestApp::spawn().await;
    let user = app.user("remote").await;
    let jwks = RemoteJwks::new(app.url("/.well-known/jwks.json"));
    let verifier = AccessTokenVerifier::new(Arc::new(jwks), &app.config.issuer, &app.config.issuer);
    let claims = verifier.verify(&user.access_token).await.expect("verifies");
    assert_eq!(claims.sub, user.id);
    assert!(verifier.verify("a.b.c").await.is_err());
}

/// The whole life of a rotated key at one node, with the clock moved:
/// published before it signs, signing, then the old key leaving the JWKS
/// only once every token it can have signed has expired.
#[tokio::test]
async fn a_rotated_key_is_prepublished_and_the_old_one_leaves_after_its_tokens() {
    let app = TestApp::spawn_with(|c| {
        c.jwks_max_age = 60;
        c.key_prepublish = 120;
    })
    .await;
    let kids = async || -> Vec<String> {
        let response = app.get("/.well-known/jwks.json").await;
        assert_eq!(response.headers()["cache-control"], "public, max-age=60");
        let jwks: JwkSet = response.json().await.unwrap();
        let mut kids: Vec<String> = jwks
            .keys
            .into_iter()
            .filter_map(|k| k.common.key_id)
            .collect();
        kids.sort();
        kids
    };
    let both = |a: &str, b: &str| {
        let mut kids = vec![a.to_owned(), b.to_owned()];
        kids.sort();
        kids
    };
    let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let user = app.user("lifecycle").await;
    let old = kid_of(&user.access_token);

    let dir = KeyDir::new(&app.config.keys_dir);
    let new = dir
        .rotate(SigningAlg::RS256, app.clock.now(), 120)
        .unwrap()
        .kid;
    app.state.keys.reload(app.clock.now()).unwrap();
    assert_eq!(kids().await, both(&old, &new), "pre-published");
    let during = app.user("during").await;
    assert_eq!(
        kid_of(&during.access_token),
        old,
        "the old key signs until then"
    );

    app.clock.advance(121);
    assert_eq!(
        app.state.keys.reload(app.clock.now()).unwrap(),
        Some(new.clone())
    );
    let after = app.user("after").await;
    assert_eq!(kid_of(&after.access_token), new);
    assert_eq!(
        app.get_auth("/api/users/me", &during.access_token)
            .await
            .status(),
        StatusCode::OK,
        "tokens of the retired key still verify"
    );
    assert_eq!(kids().await, both(&old, &new));

    app.clock.advance(app.config.retired_key_window() as i64);
    app.state.keys.reload(app.clock.now()).unwrap();
    assert_eq!(kids().await, [new], "gone once its tokens have expired");
}
