//! Operability and hardening: metrics, security headers, CORS, graceful
//! shutdown, logs free of secrets, login timing.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tessera::config::Secret;

use crate::common::{PASSWORD, TestApp, body, free_port, otp_in, unique_email};

#[tokio::test]
async fn metrics_are_exposed_in_prometheus_format() {
    let app = TestApp::spawn().await;
    let user = app.user("metrics").await;
    app.login(&user.email, "wrong password").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "tessera_http_requests_total{",
        "route=\"/api/users/login\"",
        "tessera_http_request_duration_seconds_bucket",
        "tessera_tokens_issued_total{grant=\"login\"}",
        "tessera_login_failures_total",
    ] {
        assert!(text.contains(needle), "{needle} missing");
    }
    assert!(!text.contains(&user.email) && !text.contains(&user.access_token));
}

#[tokio::test]
async fn security_headers_and_cors() {
    let app = TestApp::spawn_with(|c| {
        c.issuer = "https://auth.example".into();
        c.cors_origins = Some("https://app.example, https://admin.example".into());
    })
    .await;
    let response = app.get("/healthz").await;
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");

    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/users/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // Default: no HSTS on http, no CORS at all.
    let plain = TestApp::spawn().await;
    let response = plain
        .http
        .get(plain.url("/healthz"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// Starts the real binary on a free port; returns the child and base URL.
async fn start_binary(
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let port = free_port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .current_dir(dir)
        .env("TESSERA_LISTEN", format!("127.0.0.1:{port}"))
        .env("TESSERA_DATA_DIR", dir.join("data"))
        .env("TESSERA_KEYS_DIR", dir.join("keys"))
        .env("TESSERA_BCRYPT_COST", "4")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (child, base)
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start_binary(dir.path(), &[("TESSERA_BCRYPT_COST", "12")]).await;
    let http = reqwest::Client::new();
    let email = unique_email("shutdown");
    let signup = json!({"email": email, "password": PASSWORD, "fname": "a", "lname": "b"});
    // A bcrypt-12 signup takes a few hundred milliseconds: it is in flight
    // when the signal arrives.
    let in_flight = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.post(format!("{base}/api/users/signup"))
                .json(&signup)
                .send()
                .await
                .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    sigterm(&child);
    assert_eq!(in_flight.await.unwrap().unwrap(), StatusCode::CREATED);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Stopped accepting.
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
}

#[tokio::test]
async fn a_whole_flow_leaves_no_secret_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start_binary(
        dir.path(),
        &[("TESSERA_LOG", "debug"), ("TESSERA_LOG_FORMAT", "json")],
    )
    .await;
    let http = reqwest::Client::new();
    let email = unique_email("logs");
    let new_password = "an entirely new password";
    http.post(format!("{base}/api/users/signup"))
        .json(&json!({"email": email, "password": PASSWORD, "fname": "a", "lname": "b"}))
        .send()
        .await
        .unwrap();
    let tokens = body(
        http.post(format!("{base}/api/users/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let rotated = body(
        http.post(format!("{base}/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "tessera"),
                ("refresh_token", &refresh),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let new_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    http.get(format!("{base}/api/users/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    // A confidential client's secret, used at /token with Basic and post.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .current_dir(dir.path())
        .env("TESSERA_DATA_DIR", dir.path().join("data"))
        .env("TESSERA_KEYS_DIR", dir.path().join("keys"))
        .args([
            "clients",
            "create",
            "--name",
            "s",
            "--grant",
            "client_credentials",
            "--scope",
            "a",
            "--json",
        ])
        .output()
        .unwrap();
    let client: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let (id, secret) = (
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    );
    http.post(format!("{base}/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", "tss_wrong-secret-value"),
        ])
        .send()
        .await
        .unwrap();
    // Forgot and reset, the code read from the .eml folder.
    http.post(format!("{base}/api/users/forgotpasswords"))
        .json(&json!({"email": email}))
        .send()
        .await
        .unwrap();
    let mail_dir = dir.path().join("data/mail");
    let mut code = None;
    for _ in 0..100 {
        if let Some(eml) = std::fs::read_dir(&mail_dir)
            .ok()
            .and_then(|d| d.flatten().next())
        {
            code = Some(otp_in(&std::fs::read_to_string(eml.path()).unwrap()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let code = code.expect("a mailed code");
    let reset = http
        .post(format!("{base}/api/users/resetpasswordotps"))
        .json(&json!({"email": email, "otp": code, "new_password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::OK);

    sigterm(&child);
    let output = child.wait_with_output().await.unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(
        logs.contains("password reset"),
        "the flow was logged at all"
    );
    for (what, secret) in [
        ("password", PASSWORD),
        ("new password", new_password),
        ("OTP", code.as_str()),
        ("refresh token", refresh.as_str()),
        ("rotated refresh token", new_refresh.as_str()),
        ("access token", access.as_str()),
        ("access token signature", access.rsplit('.').next().unwrap()),
        ("client secret", secret),
        ("wrong client secret", "tss_wrong-secret-value"),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
}

#[tokio::test]
async fn unknown_email_and_wrong_password_take_the_same_time() {
    // Cost 10 (about 60 ms a hash): long enough that the noise of the
    // tests running beside this one is small against the hash itself.
    let app = TestApp::spawn_with(|c| c.bcrypt_cost = 10).await;
    let email = unique_email("timing");
    app.signup(&email, PASSWORD).await;
    // Warm the dummy hash.
    app.login(&unique_email("warm"), PASSWORD).await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for round in 0..24 {
        if round % 8 == 7 {
            app.clock.advance(901); // stay under the lockout threshold
        }
        let start = Instant::now();
        assert_eq!(
            app.login(&email, "wrong password").await.status(),
            StatusCode::UNAUTHORIZED
        );
        wrong.push(start.elapsed());
        let start = Instant::now();
        assert_eq!(
            app.login(&unique_email("nobody"), "wrong password")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
        unknown.push(start.elapsed());
    }
    wrong.sort();
    unknown.sort();
    let (a, b) = (
        wrong[wrong.len() / 2].as_secs_f64(),
        unknown[unknown.len() / 2].as_secs_f64(),
    );
    let difference = (a - b).abs() / a.max(b);
    assert!(
        difference < 0.10,
        "medians {a:.4}s vs {b:.4}s differ by {:.1} %",
        difference * 100.0
    );
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // Locks the address of X-Forwarded-For, not the proxy's: another client
    // behind the same proxy can still log in.
    let app = TestApp::spawn_with(|c| {
        c.trusted_proxies = Some("127.0.0.1/32".into());
        c.redis_url = None::<Secret>;
    })
    .await;
    let email = unique_email("xff");
    app.signup(&email, PASSWORD).await;
    let login_from = |address: &'static str, password: &'static str| {
        app.http
            .post(app.url("/api/users/login"))
            .header("x-forwarded-for", address)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    for _ in 0..10 {
        login_from("203.0.113.7", "wrong password").await.unwrap();
    }
    // The account is locked whatever the address (per-account limit)...
    assert_eq!(
        login_from("198.51.100.9", PASSWORD).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("tessera_throttled_total"));
}
