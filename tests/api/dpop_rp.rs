//! DPoP (RFC 9449) and pushed authorization requests (RFC 9126) as real
//! clients use them, against a Tessera whose issuer is its own address.
//!
//! - `tests/rp/openid_client_dpop.mjs`, a relying party on openid-client:
//!   discovery, a plain authorization request refused (the client must
//!   push), PAR with a DPoP proof, the sign-in pages, the code exchange
//!   (refused with a proof of another key, then for DPoP-bound tokens with
//!   the client's), UserInfo and `/api/users/me` with the bound token
//!   (refused as a Bearer token), a refresh, a refresh with another key
//!   (`invalid_grant`) and one more with the right key.
//! - `tests/rp/dpop_client.py`, a DPoP client written by hand on joserfc +
//!   requests against the user API: login with a proof, the API with the
//!   bound token, the token as Bearer and a proof for another token refused,
//!   refresh with the key, with another key, without a proof, with the key
//!   again, and a replayed proof.
//!
//! Each runs with and without server nonces (`dpop_nonce`): with them,
//! every first proof is answered `use_dpop_nonce` and the client retries
//! with the `DPoP-Nonce` it was given.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tessera::domain::clients::NewClient;
use tokio::process::Command;

use crate::common::{Backend, PASSWORD, TestApp, body, unique_email, venv_python};

/// Where the client's redirect URI points: never fetched, the RP reads the
/// redirect as a browser would deliver it.
const REDIRECT: &str = "https://rp.example/callback";

const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// A Tessera reachable at its issuer, with server DPoP nonces on or off.
async fn issuer_app(backend: Backend, nonces: bool) -> TestApp {
    let app = TestApp::spawn_as_issuer_with(backend, move |c| c.dpop_nonce = nonces).await;
    assert_eq!(app.config.dpop_nonce, nonces);
    app
}

/// A new user (signed up, not signed in): its id and email.
async fn new_user(app: &TestApp, tag: &str) -> (String, String) {
    let email = unique_email(tag);
    let created = app.signup(&email, PASSWORD).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = body(created).await["id"].as_str().expect("id").to_owned();
    (id, email)
}

/// The metadata's `dpop_signing_alg_values_supported`, as the `algs` of a
/// DPoP challenge spells them (RFC 9449 §7.1).
async fn proof_algs(app: &TestApp) -> String {
    let metadata = body(app.get("/.well-known/openid-configuration").await).await;
    metadata["dpop_signing_alg_values_supported"]
        .as_array()
        .expect("dpop_signing_alg_values_supported")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a client program to its end; its one JSON line of what it saw.
async fn run(mut command: Command) -> Value {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RP_VERBOSE")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the client finished within 2 minutes")
        .expect("the client starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the client failed: {stderr}{stdout}"
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line from the client: {stdout}{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// The `nonce_challenges` count: none without server nonces, at least
/// one with them.
fn assert_nonce_challenges(seen: &Value, nonces: bool, context: &str) {
    let challenges = seen["nonce_challenges"].as_u64().expect("nonce_challenges");
    if nonces {
        assert!(
            challenges >= 1,
            "no use_dpop_nonce challenge with server nonces on: {context}"
        );
    } else {
        assert_eq!(
            challenges, 0,
            "use_dpop_nonce without server nonces: {context}"
        );
    }
}

// ---------------------------------------------------------------------------
// openid-client: PAR + DPoP through the code flow
// ---------------------------------------------------------------------------

fn openid_client_command() -> Command {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        repo.join("tests/rp/node_modules/openid-client").exists(),
        "openid-client is missing: run `bash tests/run.sh`, which installs tests/rp"
    );
    let mut command = Command::new("node");
    command.arg(repo.join("tests/rp/openid_client_dpop.mjs"));
    command
}

/// One user, one client that must push its requests and gets DPoP-bound
/// tokens; public first party (no consent page) or confidential third party.
async fn openid_client_flow(app: &TestApp, public: bool, nonces: bool) {
    let (user_id, email) = new_user(app, "dpop-rp").await;
    let (client_id, secret) = app
        .client(NewClient {
            name: format!("openid-client DPoP RP (public: {public})"),
            public,
            first_party: public,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: vec![REDIRECT.into()],
            scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            dpop_bound_access_tokens: true,
            require_pushed_authorization_requests: true,
            ..NewClient::default()
        })
        .await;
    assert_eq!(secret.is_none(), public);

    let mut command = openid_client_command();
    command
        .env("ISSUER", &app.config.issuer)
        .env("CLIENT_ID", &client_id)
        .env("REDIRECT_URI", REDIRECT)
        .env("EMAIL", &email)
        .env("PASSWORD", PASSWORD)
        .env_remove("CLIENT_SECRET");
    if let Some(secret) = &secret {
        command.env("CLIENT_SECRET", secret);
    }
    let seen = run(command).await;
    let context = format!("public: {public}, nonces: {nonces}, saw {seen}");

    assert_eq!(seen["issuer"], app.config.issuer, "{context}");
    // RFC 9126 §5: the parameters sent straight to /authorize are refused,
    // with an error redirect or an error page.
    assert!(
        seen["without_par"] == "invalid_request" || seen["without_par"] == 400,
        "{context}"
    );
    assert_eq!(seen["par"], true, "{context}");
    let pages: Vec<&str> = seen["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let expected: &[&str] = if public {
        &["login", "redirect"]
    } else {
        &["login", "consent", "redirect"]
    };
    assert_eq!(pages, expected, "{context}");
    // RFC 9449 §10.1: the code is bound to the key of the pushed proof.
    assert_eq!(seen["code_other_key"], "invalid_dpop_proof", "{context}");
    // openid-client lowercases token_type.
    assert_eq!(seen["token_type"], "dpop", "{context}");
    assert_eq!(seen["claims"]["iss"], app.config.issuer, "{context}");
    assert_eq!(seen["claims"]["sub"], user_id, "{context}");
    assert_eq!(seen["userinfo"]["sub"], user_id, "{context}");
    assert_eq!(seen["userinfo"]["email"], email, "{context}");
    assert_eq!(seen["resource_status"], 200, "{context}");
    assert_eq!(seen["as_bearer"]["status"], 401, "{context}");
    assert_eq!(seen["as_bearer"]["error"], "invalid_token", "{context}");
    assert_eq!(seen["refresh_token_type"], "dpop", "{context}");
    assert_eq!(seen["other_key"], "invalid_grant", "{context}");
    assert_eq!(seen["refresh_after_other_key"], "dpop", "{context}");
    assert!(
        seen["scope"]
            .as_str()
            .is_some_and(|s| s.split(' ').any(|s| s == "offline_access")),
        "{context}"
    );

    // What went over the wire: the push answered 201, every call to the
    // token endpoint and the resources carried a proof.
    let requests = seen["requests"].as_array().expect("requests");
    assert!(
        requests
            .iter()
            .any(|r| r["path"] == "/par" && r["status"] == 201 && r["dpop"] == true),
        "{context}"
    );
    for r in requests {
        if r["path"] == "/token" || r["path"] == "/userinfo" {
            assert_eq!(r["dpop"], true, "{r} in {context}");
        }
        if r["nonce_challenge"] == true {
            assert!(
                matches!(r["status"].as_u64(), Some(400 | 401)),
                "{r} in {context}"
            );
        }
    }
    assert_nonce_challenges(&seen, nonces, &context);
}

async fn openid_client_flows(backend: Backend, nonces: bool) {
    let app = issuer_app(backend, nonces).await;
    openid_client_flow(&app, true, nonces).await;
    openid_client_flow(&app, false, nonces).await;
}

#[tokio::test]
async fn openid_client_par_and_dpop_on_sqlite() {
    openid_client_flows(Backend::Sqlite, false).await;
}

#[tokio::test]
async fn openid_client_par_and_dpop_on_redis() {
    openid_client_flows(Backend::Redis, false).await;
}

#[tokio::test]
async fn openid_client_par_and_dpop_with_server_nonces() {
    openid_client_flows(Backend::Sqlite, true).await;
}

// ---------------------------------------------------------------------------
// A hand-written client on joserfc: the user API and the token endpoint
// ---------------------------------------------------------------------------

async fn python_client(backend: Backend, nonces: bool) {
    let app = issuer_app(backend, nonces).await;
    let (_, email) = new_user(&app, "dpop-py").await;
    let mut command = Command::new(venv_python());
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rp/dpop_client.py"))
        .env("ISSUER", &app.config.issuer)
        .env("EMAIL", &email)
        .env("PASSWORD", PASSWORD);
    let seen = run(command).await;
    let context = format!("{backend:?}, nonces: {nonces}, saw {seen}");

    assert_eq!(seen["token_type"], "DPoP", "{context}");
    assert_eq!(seen["me"], 200, "{context}");
    let as_bearer = seen["as_bearer"].as_str().expect("the Bearer challenge");
    assert!(as_bearer.starts_with("DPoP "), "{context}");
    assert!(as_bearer.contains(r#"error="invalid_token""#), "{context}");
    let algs = format!(r#"algs="{}""#, proof_algs(&app).await);
    assert!(as_bearer.contains(&algs), "{algs} in {context}");
    let wrong_ath = seen["wrong_ath"].as_str().expect("the ath challenge");
    assert!(wrong_ath.starts_with("DPoP "), "{context}");
    assert!(
        wrong_ath.contains(r#"error="invalid_dpop_proof""#),
        "{context}"
    );
    assert_eq!(seen["refresh"], "DPoP", "{context}");
    assert_eq!(seen["other_key"], "invalid_grant", "{context}");
    assert_eq!(seen["no_proof"], "invalid_grant", "{context}");
    assert_eq!(seen["refresh_again"], "DPoP", "{context}");
    assert_eq!(seen["replay"], "invalid_dpop_proof", "{context}");
    assert_eq!(seen["refresh_after_replay"], "DPoP", "{context}");
    assert_nonce_challenges(&seen, nonces, &context);
    if nonces {
        // Both the login and the thief's first refresh were challenged.
        let challenged: Vec<&str> = seen["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["nonce_challenge"] == true)
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        assert!(challenged.contains(&"/api/users/login"), "{context}");
        assert!(challenged.contains(&"/token"), "{context}");
    }
}

#[tokio::test]
async fn hand_written_client_on_sqlite() {
    python_client(Backend::Sqlite, false).await;
}

#[tokio::test]
async fn hand_written_client_on_redis() {
    python_client(Backend::Redis, false).await;
}

#[tokio::test]
async fn hand_written_client_with_server_nonces_on_sqlite() {
    python_client(Backend::Sqlite, true).await;
}

#[tokio::test]
async fn hand_written_client_with_server_nonces_on_redis() {
    python_client(Backend::Redis, true).await;
}
