//! End to end in a real browser: Debian's Chromium, driven by playwright-core
//! (`tests/browser/authorize.mjs`), through login and consent to the
//! client's redirect URI; then the code is exchanged and used.

use std::path::PathBuf;

use axum::response::Html;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tessera::domain::clients::NewClient;

use crate::common::{PASSWORD, TestApp, body};

/// Serves the client's redirect URI: a tiny page, as a real app would show.
async fn callback_server() -> String {
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(|| async {
            Html("<!doctype html><title>Photo Prints</title><p>You are signed in.</p>")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{base}/callback")
}

/// A public third-party client redirecting to `redirect`, and an
/// authorization request of it with PKCE: `(client_id, code_verifier, URL)`.
async fn photo_prints_request(
    app: &TestApp,
    redirect: &str,
    state: &str,
) -> (String, String, url::Url) {
    let (client_id, _) = app
        .client(NewClient {
            name: "Photo Prints".into(),
            public: true,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: vec![redirect.to_owned()],
            scopes: vec!["profile".into(), "email".into()],
            ..NewClient::default()
        })
        .await;
    let verifier = URL_SAFE_NO_PAD.encode(tessera::crypto::secret::random_bytes::<32>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut authorize = url::Url::parse(&app.url("/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "profile email")
        .append_pair("state", state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    (client_id, verifier, authorize)
}

#[tokio::test]
async fn authorization_code_flow_in_chromium() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join("tests/browser/authorize.mjs");
    assert!(
        repo.join("tests/browser/node_modules/playwright-core")
            .exists()
            && PathBuf::from("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and playwright-core: run `bash tests/run.sh`, which installs them"
    );
    let app = TestApp::spawn().await;
    let user = app.user("browser").await;
    let redirect = callback_server().await;
    let (client_id, verifier, authorize) =
        photo_prints_request(&app, &redirect, "browser-state").await;

    let out = repo.join("tests/output/browser");
    std::fs::create_dir_all(&out).unwrap();
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .args([authorize.as_str(), &user.email, PASSWORD, &redirect])
        .arg(&out)
        .output()
        .await
        .expect("node runs");
    assert!(
        output.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let landed = url::Url::parse(result["url"].as_str().unwrap()).unwrap();
    let param = |name: &str| {
        landed
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some("browser-state"));
    let code = param("code").expect("a code on the redirect URI");

    let tokens = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client_id),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(tokens.status(), StatusCode::OK);
    let tokens = body(tokens).await;
    let me = app
        .get_auth("/api/users/me", tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(body(me).await["email"], user.email);
    for shot in ["login.png", "consent.png"] {
        assert!(
            out.join(shot).metadata().unwrap().len() > 1000,
            "{shot} saved"
        );
    }
}

/// The self-service pages in Chromium (`tests/browser/account.mjs`), with
/// an axe-core check of every page; screenshots under the test's target
/// temp dir (`browser-account/`). The script asks for the server's clock to
/// move (one mailed code a minute per email) in JSON lines on its stdout.
#[tokio::test]
async fn account_pages_in_chromium() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert!(
        repo.join("tests/browser/node_modules/axe-core").exists()
            && PathBuf::from("/usr/bin/chromium").exists(),
        "the browser test needs Chromium, playwright-core and axe-core: run `bash tests/run.sh`, which installs them"
    );
    let app = TestApp::spawn().await;
    let redirect = callback_server().await;
    let (client_id, verifier, authorize) =
        photo_prints_request(&app, &redirect, "walk-state").await;
    let email = crate::common::unique_email("walk");
    let new_password = "a new browser password";
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-account");
    std::fs::create_dir_all(&out).unwrap();
    let config = serde_json::json!({
        "base": app.base,
        "authorize_url": authorize.as_str(),
        "redirect": redirect,
        "client_id": client_id,
        "code_verifier": verifier,
        "email": email,
        "password": PASSWORD,
        "new_password": new_password,
        "mail_dir": app.config.data_dir.join("mail"),
        "out_dir": out,
    });
    let report = drive_walk(&app, &repo.join("tests/browser/account.mjs"), &config).await;
    assert_eq!(report["done"], true, "{report}");
    assert_eq!(
        report["violations"],
        serde_json::json!([]),
        "axe found serious or critical violations"
    );
    let landed = url::Url::parse(report["callback"].as_str().unwrap()).unwrap();
    assert!(
        landed
            .query_pairs()
            .any(|(k, v)| k == "state" && v == "walk-state")
    );
    assert!(landed.query_pairs().any(|(k, _)| k == "code"));
    // The other session, signed out on the page: its refresh token is dead.
    assert_eq!(report["other_refreshed"]["status"], 400, "{report}");
    assert_eq!(report["other_refreshed"]["body"]["error"], "invalid_grant");
    // The connected app's refresh token died with the revoked consent.
    let app_refresh = report["app_refresh_token"].as_str().unwrap();
    let refreshed = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", app_refresh),
            ],
        )
        .await;
    crate::common::assert_oauth_error(refreshed, 400, "invalid_grant").await;
    // The account is gone.
    assert_eq!(
        app.login(&email, new_password).await.status(),
        StatusCode::UNAUTHORIZED
    );
    for page in [
        "signup",
        "signup-errors",
        "account-errors",
        "account-signin",
        "authorize-login",
        "forgot",
        "reset",
        "consent",
        "account",
        "deleted",
    ] {
        assert!(
            out.join(format!("{page}.png")).metadata().unwrap().len() > 1000,
            "{page}.png saved"
        );
    }
}

/// Runs the walk script, moving the app's clock when it asks; returns its
/// report.
async fn drive_walk(
    app: &TestApp,
    script: &std::path::Path,
    config: &serde_json::Value,
) -> serde_json::Value {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .arg(config.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut report = None;
    let walk = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let message: serde_json::Value = match serde_json::from_str(&line) {
                Ok(message) => message,
                Err(_) => continue,
            };
            if let Some(seconds) = message["advance"].as_i64() {
                app.clock.advance(seconds);
                stdin.write_all(b"ok\n").await.unwrap();
                stdin.flush().await.unwrap();
            } else if !message["report"].is_null() {
                report = Some(message["report"].clone());
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(300), walk)
        .await
        .expect("the walk finishes within 5 minutes");
    let status = child.wait().await.unwrap();
    let errors = errors.await.unwrap();
    assert!(
        status.success(),
        "browser walk failed: {errors}\n{report:?}"
    );
    report.expect("a report")
}
