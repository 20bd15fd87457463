//! Closed-loop load generator for Tessera (and peers with the same endpoints).
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:3000 \
//!     --scenario refresh-chain --concurrency 64 --duration 10 --warmup 2
//! ```
//!
//! Scenarios: `login`, `refresh-chain` (each virtual user always presents its
//! newest refresh token), `refresh-chain-dpop` (the same with a DPoP-bound
//! family: each user has an ES256 key and signs a fresh proof per request,
//! `htu` taken from the server's metadata), `client-credentials` (needs `--client-id` and
//! `--client-secret`), `me` (resource-layer verification), `userinfo`,
//! `introspect` (each user's access token, by the confidential client
//! `--client-id`/`--client-secret`), `jwks`, `healthz`.
//! `--url` may list several comma-separated nodes: each virtual user sends
//! its requests to them in turn, as a round-robin load balancer would (a
//! refresh chain then rotates at every node).
//! `--refresh-tokens FILE` starts the chains from given tokens (a peer's,
//! obtained through its login pages) and refreshes as the confidential
//! client `--client-id`; `--form key=value` adds fields to `/token`.
//! Prints a summary and one JSON line for machines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A virtual user's DPoP key and the proof header it signs under.
struct DpopKey {
    pair: EcdsaKeyPair,
    header: String,
}

impl DpopKey {
    fn generate() -> Self {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let der = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(alg, der.as_ref()).expect("key");
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}).to_string();
        Self {
            header: URL_SAFE_NO_PAD.encode(header),
            pair,
        }
    }

    /// A proof for a POST to `htu`, now, with a random `jti`.
    fn proof(&self, htu: &str) -> String {
        let mut jti = [0u8; 12];
        aws_lc_rs::rand::fill(&mut jti).expect("random");
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let claims =
            json!({"jti": URL_SAFE_NO_PAD.encode(jti), "htm": "POST", "htu": htu, "iat": iat});
        let input = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("signs");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

#[derive(Clone, Debug)]
struct Options {
    urls: Vec<String>,
    scenario: String,
    concurrency: usize,
    duration: u64,
    warmup: u64,
    client_id: String,
    client_secret: String,
    password: String,
    /// Refresh tokens to start the chains from, one per line (a peer whose
    /// refresh tokens come from its login pages); refreshes then
    /// authenticate with `--client-id`/`--client-secret` over Basic.
    refresh_tokens: Option<String>,
    /// Extra `key=value` form fields for `/token` (e.g. `resource=...`).
    form: Vec<(String, String)>,
    /// A server process whose CPU time (utime + stime) is read around the
    /// measured window: requests per server CPU-second.
    cpu_of: Option<u32>,
    /// The `htu` of DPoP proofs for the token endpoint and the login.
    token_htu: String,
    login_htu: String,
}

fn parse_options() -> Options {
    let mut options = Options {
        urls: vec!["http://127.0.0.1:3000".into()],
        scenario: "refresh-chain".into(),
        concurrency: 64,
        duration: 10,
        warmup: 2,
        client_id: String::new(),
        client_secret: String::new(),
        password: "load test password".into(),
        refresh_tokens: None,
        form: Vec::new(),
        cpu_of: None,
        token_htu: String::new(),
        login_htu: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => {
                options.urls = value().split(',').map(|u| u.trim().to_owned()).collect();
            }
            "--scenario" => options.scenario = value(),
            "--concurrency" => options.concurrency = value().parse().expect("a number"),
            "--duration" => options.duration = value().parse().expect("seconds"),
            "--warmup" => options.warmup = value().parse().expect("seconds"),
            "--client-id" => options.client_id = value(),
            "--client-secret" => options.client_secret = value(),
            "--refresh-tokens" => options.refresh_tokens = Some(value()),
            "--cpu-of" => options.cpu_of = Some(value().parse().expect("a process id")),
            "--form" => {
                let pair = value();
                let (k, v) = pair.split_once('=').expect("--form key=value");
                options.form.push((k.to_owned(), v.to_owned()));
            }
            other => panic!("unknown flag {other}"),
        }
    }
    options
}

/// What one virtual user keeps between requests.
struct VirtualUser {
    email: String,
    refresh_token: String,
    access_token: String,
    /// How many requests this user has sent: picks the next node.
    sent: usize,
    /// The DPoP key of `refresh-chain-dpop` users.
    dpop: Option<Arc<DpopKey>>,
}

impl VirtualUser {
    fn new(n: usize) -> Self {
        Self {
            email: String::new(),
            refresh_token: String::new(),
            access_token: String::new(),
            sent: n,
            dpop: None,
        }
    }

    /// The node for the next request, round-robin.
    fn next_url<'o>(&mut self, o: &'o Options) -> &'o str {
        self.sent += 1;
        &o.urls[self.sent % o.urls.len()]
    }
}

/// The issuer's own URL for `path` (what a DPoP proof's `htu` names): the
/// metadata's issuer, whichever node answered.
async fn issuer_url(http: &reqwest::Client, url: &str, path: &str) -> String {
    let metadata: Value = http
        .get(format!("{url}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("metadata JSON");
    format!("{}{path}", metadata["issuer"].as_str().expect("issuer"))
}

async fn signup_and_login(http: &reqwest::Client, o: &Options, n: usize) -> VirtualUser {
    let email = format!("load-{}-{n}@example.com", std::process::id());
    let url = &o.urls[n % o.urls.len()];
    let _ = http
        .post(format!("{url}/api/users/signup"))
        .json(&json!({"email": email, "password": o.password, "fname": "Load", "lname": "Test"}))
        .send()
        .await;
    let dpop = (o.scenario == "refresh-chain-dpop").then(|| Arc::new(DpopKey::generate()));
    let mut login = http.post(format!("{url}/api/users/login"));
    if let Some(key) = &dpop {
        login = login.header("DPoP", key.proof(&o.login_htu));
    }
    let tokens: Value = login
        .json(&json!({"email": email, "password": o.password}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("token JSON");
    VirtualUser {
        email,
        refresh_token: tokens["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        access_token: tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        dpop,
        ..VirtualUser::new(n)
    }
}

/// One request of the scenario; `Ok` only for the expected status.
async fn one_request(
    http: &reqwest::Client,
    o: &Options,
    user: &mut VirtualUser,
) -> Result<(), String> {
    let url = user.next_url(o);
    let response = match o.scenario.as_str() {
        "login" => {
            http.post(format!("{url}/api/users/login"))
                .json(&json!({"email": user.email, "password": o.password}))
                .send()
                .await
        }
        "refresh-chain" | "refresh-chain-dpop" => {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", user.refresh_token.as_str()),
            ];
            form.extend(o.form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut request = http.post(format!("{url}/token"));
            if let Some(key) = &user.dpop {
                request = request.header("DPoP", key.proof(&o.token_htu));
            }
            let request = if o.client_id.is_empty() {
                form.push(("client_id", "tessera"));
                request
            } else {
                request.basic_auth(&o.client_id, Some(&o.client_secret))
            };
            let response = request
                .form(&form)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(response.status().to_string());
            }
            let tokens: Value = response.json().await.map_err(|e| e.to_string())?;
            user.refresh_token = tokens["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            return Ok(());
        }
        "client-credentials" => {
            let mut form = vec![("grant_type", "client_credentials")];
            form.extend(o.form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            http.post(format!("{url}/token"))
                .basic_auth(&o.client_id, Some(&o.client_secret))
                .form(&form)
                .send()
                .await
        }
        "me" => {
            http.get(format!("{url}/api/users/me"))
                .bearer_auth(&user.access_token)
                .send()
                .await
        }
        "userinfo" => {
            http.get(format!("{url}/userinfo"))
                .bearer_auth(&user.access_token)
                .send()
                .await
        }
        "introspect" => {
            http.post(format!("{url}/introspect"))
                .basic_auth(&o.client_id, Some(&o.client_secret))
                .form(&[("token", user.access_token.as_str())])
                .send()
                .await
        }
        "jwks" => {
            http.get(format!("{url}/.well-known/jwks.json"))
                .send()
                .await
        }
        "healthz" => http.get(format!("{url}/healthz")).send().await,
        other => panic!("unknown scenario {other}"),
    }
    .map_err(|e| e.to_string())?;
    let status = response.status();
    let _ = response.bytes().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(status.to_string())
    }
}

#[tokio::main]
async fn main() {
    let mut o = parse_options();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    if o.scenario == "refresh-chain-dpop" {
        o.token_htu = issuer_url(&http, &o.urls[0], "/token").await;
        o.login_htu = issuer_url(&http, &o.urls[0], "/api/users/login").await;
    }
    let needs_users = matches!(
        o.scenario.as_str(),
        "login" | "refresh-chain" | "refresh-chain-dpop" | "me" | "userinfo" | "introspect"
    );
    let given: Vec<String> = o
        .refresh_tokens
        .as_ref()
        .map(|path| std::fs::read_to_string(path).expect("refresh tokens file"))
        .map(|text| {
            text.lines()
                .map(str::to_owned)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        given.is_empty() || given.len() >= o.concurrency,
        "--refresh-tokens needs one token per virtual user"
    );
    let mut users = Vec::with_capacity(o.concurrency);
    for n in 0..o.concurrency {
        users.push(if let Some(token) = given.get(n) {
            VirtualUser {
                refresh_token: token.clone(),
                ..VirtualUser::new(n)
            }
        } else if needs_users {
            signup_and_login(&http, &o, n).await
        } else {
            VirtualUser::new(n)
        });
    }

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut user in users {
        let (http, o) = (http.clone(), o.clone());
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = one_request(&http, &o, &mut user).await;
                if measuring.load(Ordering::Relaxed) {
                    match result {
                        Ok(()) => {
                            let _ = histogram.record(start.elapsed().as_micros().max(1) as u64);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            histogram
        }));
    }
    tokio::time::sleep(Duration::from_secs(o.warmup)).await;
    let cpu_before = o.cpu_of.map(process_cpu_seconds);
    measuring.store(true, Ordering::Relaxed);
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = began.elapsed().as_secs_f64();
    let server_cpu = o
        .cpu_of
        .map(process_cpu_seconds)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    stop.store(true, Ordering::Relaxed);

    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for task in tasks {
        all.add(task.await.expect("task")).expect("merge");
    }
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    let rps = all.len() as f64 / elapsed;
    let errors = errors.load(Ordering::Relaxed);
    println!(
        "{} c={} {:.0} req/s  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  errors {}",
        o.scenario,
        o.concurrency,
        rps,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        all.max() as f64 / 1000.0,
        errors
    );
    println!(
        "{}",
        json!({
            "scenario": o.scenario, "concurrency": o.concurrency, "seconds": elapsed,
            "requests": all.len(), "rps": rps, "p50_ms": ms(0.5), "p90_ms": ms(0.9),
            "p99_ms": ms(0.99), "max_ms": all.max() as f64 / 1000.0, "errors": errors,
            "server_cpu_s": server_cpu,
            "per_server_cpu_s": server_cpu.map(|cpu| all.len() as f64 / cpu),
        })
    );
}

/// utime + stime of process `pid` in seconds (Linux `/proc/PID/stat`,
/// fields 14 and 15, in clock ticks of 1/100 s).
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name may hold spaces: fields are counted after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("ticks");
    // Fields 14 and 15 of stat are 11 and 12 after the name (field 3 is 0).
    (ticks(11) + ticks(12)) / 100.0
}
