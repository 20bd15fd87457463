//! The Node (`jose`) and Python (`PyJWT`) resource-server recipes of
//! `docs/resource-servers.md`, run as real programs (`tests/recipes/`)
//! against a real Tessera: what they accept and what they refuse.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera::domain::clients::NewClient;

use crate::common::{TestApp, body, venv_python};

#[derive(Clone, Copy, Debug)]
enum Recipe {
    Node,
    Python,
}

const RECIPES: [Recipe; 2] = [Recipe::Node, Recipe::Python];

/// Runs `recipe` with `input` on stdin; its verdict per token.
async fn run(recipe: Recipe, input: Value) -> HashMap<String, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = match recipe {
        Recipe::Node => {
            assert!(
                repo.join("tests/recipes/node_modules/jose").exists(),
                "jose is missing: run `bash tests/run.sh`, which installs tests/recipes"
            );
            let mut command = Command::new("node");
            command.arg(repo.join("tests/recipes/verify.mjs"));
            command
        }
        Recipe::Python => {
            let mut command = Command::new(venv_python());
            command.arg(repo.join("tests/recipes/verify.py"));
            command
        }
    };
    // The recipe calls back into the server on this runtime: wait off it.
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the recipe starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{recipe:?} recipe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{recipe:?} recipe printed no verdicts ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A confidential `client_credentials` client.
async fn service(app: &TestApp) -> (String, String) {
    let (id, secret) = app
        .client(NewClient {
            name: "recipes api".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["items:read".into(), "items:write".into()],
            ..NewClient::default()
        })
        .await;
    (id, secret.unwrap())
}

async fn token(app: &TestApp, (id, secret): &(String, String), scope: &str) -> String {
    let response = app
        .post_form(
            "/token",
            Some((id, secret)),
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn input(
    app: &TestApp,
    audience: &str,
    introspect_as: Option<&(String, String)>,
    tokens: Value,
) -> Value {
    json!({
        "issuer": app.config.issuer,
        "audience": audience,
        "jwks_uri": app.url("/.well-known/jwks.json"),
        "scope": "items:read",
        "introspection": introspect_as.map(|(id, secret)| json!({
            "url": app.url("/introspect"),
            "client_id": id,
            "client_secret": secret,
        })),
        "tokens": tokens,
    })
}

fn assert_verdict(recipe: Recipe, verdicts: &HashMap<String, String>, name: &str, expected: &str) {
    let verdict = verdicts
        .get(name)
        .unwrap_or_else(|| panic!("{recipe:?}: no verdict for {name}"));
    assert!(
        verdict.starts_with(expected),
        "{recipe:?}: {name} should be {expected}, is {verdict}"
    );
}

#[tokio::test]
async fn the_node_and_python_recipes_accept_and_refuse_like_the_crate() {
    let app = TestApp::spawn().await;
    let client = service(&app).await;
    let valid = token(&app, &client, "items:read").await;
    let no_scope = token(&app, &client, "items:write").await;
    let revoked = token(&app, &client, "items:read").await;
    let response = app
        .post_form(
            "/revoke",
            Some((&client.0, &client.1)),
            &[("token", &revoked)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Minted an hour ago by the server's clock: long expired now.
    app.clock.advance(-3600);
    let expired = token(&app, &client, "items:read").await;
    app.clock.advance(3600);
    assert!(payload(&expired)["exp"].as_i64().unwrap() < app.clock.now() - 60);
    // Signed with the server's own key, but typed as a plain JWT.
    let wrong_typ =
        tessera::crypto::jwt::sign_jws(&payload(&valid), "JWT", app.state.keys.current().active())
            .unwrap();
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        valid.split('.').nth(1).unwrap()
    );
    let mut tampered = payload(&valid);
    tampered["scope"] = json!("items:read items:write admin");
    let (head, rest) = valid.split_once('.').unwrap();
    let tampered = format!(
        "{head}.{}.{}",
        URL_SAFE_NO_PAD.encode(tampered.to_string()),
        rest.split_once('.').unwrap().1
    );

    // Another deployment whose tokens are for another audience.
    let orders = TestApp::spawn_with(|c| c.audience = Some("https://orders.example".into())).await;
    let orders_client = service(&orders).await;
    let wrong_aud = token(&orders, &orders_client, "items:read").await;

    for recipe in RECIPES {
        let tokens = json!({
            "valid": valid, "no_scope": no_scope, "revoked": revoked, "expired": expired,
            "wrong_typ": wrong_typ, "alg_none": alg_none, "tampered": tampered,
        });
        let with_introspection = run(
            recipe,
            input(&app, app.config.audience(), Some(&client), tokens.clone()),
        )
        .await;
        for (name, expected) in [
            ("valid", "accepted"),
            ("no_scope", "refused: 403 insufficient_scope"),
            ("revoked", "refused: 401 token revoked"),
            ("expired", "refused"),
            ("wrong_typ", "refused"),
            ("alg_none", "refused"),
            ("tampered", "refused"),
        ] {
            assert_verdict(recipe, &with_introspection, name, expected);
        }
        // Without introspection a revoked token lives until it expires:
        // what the short TTL is for.
        let signature_only = run(recipe, input(&app, app.config.audience(), None, tokens)).await;
        assert_verdict(recipe, &signature_only, "revoked", "accepted");
        assert_verdict(recipe, &signature_only, "expired", "refused");

        // An API expecting the default audience refuses the orders tokens;
        // the orders API itself accepts them.
        let tokens = json!({ "wrong_aud": wrong_aud });
        let elsewhere = run(
            recipe,
            input(&orders, &orders.config.issuer, None, tokens.clone()),
        )
        .await;
        assert_verdict(recipe, &elsewhere, "wrong_aud", "refused");
        let at_orders = run(
            recipe,
            input(&orders, "https://orders.example", None, tokens),
        )
        .await;
        assert_verdict(recipe, &at_orders, "wrong_aud", "accepted");
    }
}
