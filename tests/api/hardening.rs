//! Operability and hardening: metrics, security headers, CORS, graceful
//! shutdown, logs free of secrets, login timing.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use tessera::domain::users::{LOGIN_FAILURES_PER_ACCOUNT, LOGIN_FAILURES_PER_ADDRESS};

use crate::common::{PASSWORD, TestApp, body, free_port, otp_in, unique_email};

/// One sample of the Prometheus text format: metric name and labels.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

/// Parses `/metrics` text into series and values (comments skipped, label
/// values unescaped).
fn parse_metrics(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().expect("a number");
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
        };
        samples.insert(
            Series {
                name: name.to_owned(),
                labels,
            },
            value,
        );
    }
    samples
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').to_owned(), value);
    }
}

/// A scrape of `/metrics`.
struct Scrape(BTreeMap<Series, f64>);

impl Scrape {
    async fn of(http: &reqwest::Client, base: &str) -> Self {
        let response = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Self(parse_metrics(&response.text().await.unwrap()))
    }

    /// The value of the series with exactly these labels (0 if absent).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let series = Series {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        self.0.get(&series).copied().unwrap_or(0.0)
    }
}

/// By how much each series moved between two scrapes.
fn moved(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

#[test]
fn the_metrics_parser_reads_labels_and_escapes() {
    let samples = parse_metrics("# TYPE x counter\nx 3\ny{a=\"1\",b=\"q\\\"u,o=te\"} 2.5\n");
    let scrape = Scrape(samples);
    assert_eq!(scrape.value("x", &[]), 3.0);
    assert_eq!(scrape.value("y", &[("a", "1"), ("b", "q\"u,o=te")]), 2.5);
    assert_eq!(scrape.value("y", &[("a", "1")]), 0.0);
}

/// The metrics recorder is process-wide, and the in-process test apps all
/// share it, so this test counts on a server process of its own: no other
/// test can move its counters, and each must move by exactly what the test
/// did.
#[tokio::test]
async fn metrics_count_exactly_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let email = unique_email("metrics");
    let before = Scrape::of(&http, &server.base).await;

    let signup = http
        .post(format!("{}/api/users/signup", server.base))
        .json(&json!({"email": email, "password": PASSWORD, "fname": "a", "lname": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);
    let login = |password: &'static str| {
        http.post(format!("{}/api/users/login", server.base))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    assert_eq!(
        login("wrong password").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let tokens = body(login(PASSWORD).await.unwrap()).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    let response = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(!text.contains(&email) && !text.contains(&access));
    let after = Scrape(parse_metrics(&text));

    let requests = |route: &'static str, status: &'static str| {
        moved(
            &before,
            &after,
            "tessera_http_requests_total",
            &[("method", "POST"), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("/api/users/signup", "201"), 1.0);
    assert_eq!(requests("/api/users/login", "401"), 1.0);
    assert_eq!(requests("/api/users/login", "200"), 1.0);
    assert_eq!(
        moved(
            &before,
            &after,
            "tessera_http_request_duration_seconds_count",
            &[("method", "POST"), ("route", "/api/users/login")],
        ),
        2.0
    );
    // Every login sample falls in the last (+Inf) bucket.
    assert_eq!(
        moved(
            &before,
            &after,
            "tessera_http_request_duration_seconds_bucket",
            &[
                ("method", "POST"),
                ("route", "/api/users/login"),
                ("le", "+Inf")
            ],
        ),
        2.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "tessera_tokens_issued_total",
            &[("grant", "login")]
        ),
        1.0
    );
    assert_eq!(
        moved(&before, &after, "tessera_login_failures_total", &[]),
        1.0
    );
    assert_eq!(moved(&before, &after, "tessera_throttled_total", &[]), 0.0);
    server.stop().await;
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
    // A browser app may send DPoP proofs and read the nonce and challenges.
    let dpop = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/token"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "dpop, content-type")
        .send()
        .await
        .unwrap();
    let allowed_headers = dpop.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("dpop"), "{allowed_headers}");
    let exposed = app
        .http
        .get(app.url("/api/users/me"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    let exposed = exposed.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("dpop-nonce") && exposed.contains("www-authenticate"),
        "{exposed}"
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

/// How long a condition a test waits for may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `done` every 20 ms until it holds; panics naming `what` after
/// [`PATIENCE`].
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real binary on a free port, its stderr (the logs) collected as it
/// is written, so that a test can wait for a line and the pipe never fills.
struct Server {
    child: tokio::process::Child,
    base: String,
    port: u16,
    logs: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts `tessera serve` in `dir` with `extra` settings and waits
    /// until `/readyz` answers 200.
    async fn start(dir: &std::path::Path, extra: &[(&str, &str)]) -> Self {
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
        let mut child = command.spawn().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let reader = tokio::spawn({
            let logs = logs.clone();
            let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
            async move {
                while let Ok(Some(line)) = stderr.next_line().await {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually("the server answers /readyz", async || {
            let ready = http.get(format!("{base}/readyz")).send().await;
            ready.is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
        Self {
            child,
            base,
            port,
            logs,
            reader,
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a log line satisfies `matches`.
    async fn log_line(&self, what: &str, matches: impl Fn(&str) -> bool) {
        eventually(what, async || self.logs().lines().any(&matches)).await;
    }

    fn sigterm(&self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits (bounded) for the process to exit; returns its exit code and
    /// every log line it wrote.
    async fn exit(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the server exits")
            .unwrap();
        tokio::time::timeout(PATIENCE, &mut self.reader)
            .await
            .expect("stderr closes")
            .unwrap();
        (status.code(), self.logs())
    }

    /// SIGTERM, then a clean exit.
    async fn stop(self) {
        self.sigterm();
        let (code, logs) = self.exit().await;
        assert_eq!(code, Some(0), "{logs}");
    }
}

/// The request is in flight for certain when the signal arrives: its
/// headers are in and the server has started on it (it logged so), but its
/// body is held back until the server has logged the signal. Then it must
/// still be answered, and the process exit 0.
#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("TESSERA_LOG", "info,tower_http=debug"),
            ("TESSERA_LOG_FORMAT", "json"),
        ],
    )
    .await;
    let email = unique_email("shutdown");
    let signup =
        json!({"email": email, "password": PASSWORD, "fname": "a", "lname": "b"}).to_string();
    let mut connection = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let head = format!(
        "POST /api/users/signup HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         content-type: application/json\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n",
        signup.len()
    );
    let (first, last) = signup.split_at(signup.len() - 1);
    connection.write_all(head.as_bytes()).await.unwrap();
    connection.write_all(first.as_bytes()).await.unwrap();
    server
        .log_line("the signup is being handled", |line| {
            line.contains("started processing request") && line.contains("/api/users/signup")
        })
        .await;

    server.sigterm();
    server
        .log_line("the signal is received", |line| {
            line.contains("shutdown signal received")
        })
        .await;
    connection.write_all(last.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, connection.read_to_string(&mut answer))
        .await
        .expect("the in-flight request is answered")
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 201 "),
        "the in-flight signup completes: {answer}"
    );
    let base = server.base.clone();
    let (code, logs) = server.exit().await;
    assert_eq!(code, Some(0), "{logs}");
    // Stopped accepting.
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_whole_flow_leaves_no_secret_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[("TESSERA_LOG", "debug"), ("TESSERA_LOG_FORMAT", "json")],
    )
    .await;
    let base = server.base.clone();
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
    eventually("the code is written to the mail folder", async || {
        // A file may be seen before it is complete: wait for the code in it.
        code = std::fs::read_dir(&mail_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|eml| std::fs::read_to_string(eml.path()).ok())
            .find_map(|message| {
                let has_code = message
                    .lines()
                    .map(str::trim)
                    .any(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()));
                has_code.then(|| otp_in(&message))
            });
        code.is_some()
    })
    .await;
    let code = code.unwrap();
    let reset = http
        .post(format!("{base}/api/users/resetpasswordotps"))
        .json(&json!({"email": email, "otp": code, "new_password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::OK);

    server.sigterm();
    let (status, logs) = server.exit().await;
    assert_eq!(status, Some(0), "{logs}");
    assert!(
        logs.contains("password reset"),
        "the flow was logged at all"
    );
    // The audit events are JSON lines on the `audit` target too.
    let audit: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"target\":\"audit\""))
        .collect();
    for kind in ["user_created", "login_succeeded", "password_reset"] {
        assert!(
            audit.iter().any(|l| l.contains(kind)),
            "no {kind} audit line: {audit:?}"
        );
    }
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
    // Each round times both paths back to back (alternating which goes
    // first), so that the load of the tests running beside this one hits
    // both members of a pair alike; the median of the per-pair ratios is
    // what must be close to 1.
    let mut ratios = Vec::new();
    for round in 0..32 {
        if round % 8 == 7 {
            app.clock.advance(901); // stay under the lockout threshold
        }
        let wrong = async {
            let start = Instant::now();
            let status = app.login(&email, "wrong password").await.status();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            start.elapsed().as_secs_f64()
        };
        let unknown = async {
            let start = Instant::now();
            let status = app
                .login(&unique_email("nobody"), "wrong password")
                .await
                .status();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            start.elapsed().as_secs_f64()
        };
        let (a, b) = if round % 2 == 0 {
            let a = wrong.await;
            (a, unknown.await)
        } else {
            let b = unknown.await;
            (wrong.await, b)
        };
        ratios.push(a / b);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    assert!(
        (0.9..=1.1).contains(&median),
        "a wrong password takes {median:.3}x the time of an unknown email (ratios {ratios:.3?})"
    );
}

/// What one run of the X-Forwarded-For scenario saw.
struct ForwardedRun {
    account_locked: StatusCode,
    attacker_locked: StatusCode,
    neighbour: StatusCode,
    proxy_itself: StatusCode,
    throttled: f64,
    failures: f64,
}

/// Behind a trusted proxy, failed logins count against the address that
/// `X-Forwarded-For` names, never the proxy's: an attacker's address gets
/// locked while another client behind the same proxy, and the proxy
/// itself, still log in. Its own process, so the counters move by exactly
/// this test's requests.
#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("TESSERA_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    // The limits count in fixed windows of the wall clock: a run that
    // straddles a window boundary starts counting afresh halfway, so it is
    // run again, with fresh accounts and addresses.
    assert_eq!(
        LOGIN_FAILURES_PER_ACCOUNT.window,
        LOGIN_FAILURES_PER_ADDRESS.window
    );
    let window = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        now.as_secs() / LOGIN_FAILURES_PER_ADDRESS.window
    };
    for attempt in 0..3 {
        let started_in = window();
        let run = forwarded_for_run(&server, attempt).await;
        if window() != started_in {
            continue;
        }
        assert_eq!(
            run.account_locked,
            StatusCode::TOO_MANY_REQUESTS,
            "an account is locked whatever the address"
        );
        assert_eq!(
            run.attacker_locked,
            StatusCode::TOO_MANY_REQUESTS,
            "the forwarded address is locked"
        );
        assert_eq!(run.neighbour, StatusCode::OK, "not another client's");
        assert_eq!(run.proxy_itself, StatusCode::OK, "not the proxy's");
        assert_eq!(run.throttled, 2.0, "one refusal per lock");
        assert_eq!(run.failures, LOGIN_FAILURES_PER_ADDRESS.max as f64);
        server.stop().await;
        return;
    }
    panic!("every run straddled a throttling window");
}

async fn forwarded_for_run(server: &Server, attempt: u8) -> ForwardedRun {
    let http = reqwest::Client::new();
    let attacker = format!("203.0.113.{}", 10 + attempt);
    let neighbour = format!("198.51.100.{}", 10 + attempt);
    let login = async |from: Option<&str>, email: &str, password: &str| {
        let mut request = http
            .post(format!("{}/api/users/login", server.base))
            .json(&json!({"email": email, "password": password}));
        if let Some(address) = from {
            request = request.header("x-forwarded-for", address);
        }
        request.send().await.unwrap().status()
    };
    let (victim, other) = (unique_email("xff-victim"), unique_email("xff-other"));
    for email in [&victim, &other] {
        let signup = http
            .post(format!("{}/api/users/signup", server.base))
            .json(&json!({"email": email, "password": PASSWORD, "fname": "a", "lname": "b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status(), StatusCode::CREATED);
    }
    let before = Scrape::of(&http, &server.base).await;
    for _ in 0..LOGIN_FAILURES_PER_ACCOUNT.max {
        let status = login(Some(&attacker), &victim, "wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let account_locked = login(Some(&neighbour), &victim, PASSWORD).await;
    // Up to the address limit, on accounts that do not exist.
    for _ in LOGIN_FAILURES_PER_ACCOUNT.max..LOGIN_FAILURES_PER_ADDRESS.max {
        let status = login(
            Some(&attacker),
            &unique_email("xff-nobody"),
            "wrong password",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let attacker_locked = login(Some(&attacker), &other, PASSWORD).await;
    let neighbour_status = login(Some(&neighbour), &other, PASSWORD).await;
    let proxy_itself = login(None, &other, PASSWORD).await;
    let after = Scrape::of(&http, &server.base).await;
    ForwardedRun {
        account_locked,
        attacker_locked,
        neighbour: neighbour_status,
        proxy_itself,
        throttled: moved(&before, &after, "tessera_throttled_total", &[]),
        failures: moved(&before, &after, "tessera_login_failures_total", &[]),
    }
}
