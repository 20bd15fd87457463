//! Several Tessera processes behind one load balancer: two real `tessera`
//! processes share one Redis (a single server, then a 3-master cluster),
//! one MongoDB user store (SecantusDB) and one keys directory. Any request
//! may land on either node.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera::domain::users::LOGIN_FAILURES_PER_ACCOUNT;
use tessera::resource::{AccessTokenVerifier, RemoteJwks};

use crate::common::{PASSWORD, free_port, mongo_server, redis_cluster, redis_server, unique_email};

/// Settings the test nodes run with: keys reloaded every second, a JWKS
/// cacheable for one second and a new key pre-published for six. The
/// guarantee under test (no verifier meets an unknown `kid`) needs both
/// nodes to publish the new key more than `JWKS_MAX_AGE` before it signs,
/// which is `PREPUBLISH` whole seconds after the rotation (so at least
/// `PREPUBLISH - 1` s): 4 s, against a reload every second, leaves three
/// seconds for a loaded machine to run a reload late.
const RELOAD: u64 = 1;
const JWKS_MAX_AGE: u64 = 1;
const PREPUBLISH: u64 = 6;

/// The deadline of everything the test waits for (a node starting, a reload
/// reaching both nodes): generous, since only a failure ever waits it out.
const PATIENCE: Duration = Duration::from_secs(60);

/// One `tessera serve` process, killed when dropped.
struct Node {
    base: String,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the nodes of one deployment share.
struct Deployment {
    dir: tempfile::TempDir,
    redis_url: String,
    mongo_db: String,
}

impl Deployment {
    fn new(redis_url: String) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            redis_url,
            mongo_db: unique_email("scale").replace(['.', '@'], "_"),
        }
    }

    fn keys_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("keys")
    }

    /// The `tessera` command with this deployment's shared settings.
    fn tessera(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
        command
            .current_dir(self.dir.path())
            .env("TESSERA_ISSUER", "http://tessera.test")
            .env("TESSERA_KEYS_DIR", self.keys_dir())
            .env("TESSERA_REDIS_URL", &self.redis_url)
            .env("TESSERA_MONGODB_URI", mongo_server().uri())
            .env("TESSERA_MONGODB_DB", &self.mongo_db)
            .env("TESSERA_BCRYPT_COST", "4")
            .env("TESSERA_SIGNUPS_PER_ADDRESS", "1000000")
            .env("TESSERA_KEYS_RELOAD_INTERVAL", RELOAD.to_string())
            .env("TESSERA_JWKS_MAX_AGE", JWKS_MAX_AGE.to_string())
            .env("TESSERA_KEY_PREPUBLISH", PREPUBLISH.to_string())
            .env("TESSERA_LOG", "warn");
        command
    }

    /// Starts a node on a free port with its own data dir and waits until
    /// it is ready.
    async fn node(&self) -> Node {
        let port = free_port();
        let child = self
            .tessera()
            .env("TESSERA_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "TESSERA_DATA_DIR",
                self.dir.path().join(format!("data-{port}")),
            )
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tessera starts");
        let node = Node {
            base: format!("http://127.0.0.1:{port}"),
            child,
        };
        let http = reqwest::Client::new();
        within(PATIENCE, async || {
            let ready = http.get(format!("{}/readyz", node.base)).send().await;
            ready.is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
        node
    }

    /// `tessera keys ARGS...` against the shared keys dir; returns stdout.
    fn keys(&self, args: &[&str]) -> String {
        let output = self.tessera().arg("keys").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn signup_and_login(node: &Node, email: &str) -> Value {
    let signup = http()
        .post(format!("{}/api/users/signup", node.base))
        .json(&json!({"email": email, "password": PASSWORD, "fname": "N", "lname": "Ode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);
    login(node, email, PASSWORD).await.json().await.unwrap()
}

async fn login(node: &Node, email: &str, password: &str) -> reqwest::Response {
    http()
        .post(format!("{}/api/users/login", node.base))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn refresh(node: &Node, token: &str) -> reqwest::Response {
    http()
        .post(format!("{}/token", node.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "tessera"),
            ("refresh_token", token),
        ])
        .send()
        .await
        .unwrap()
}

async fn revoke(node: &Node, token: &str) {
    let revoked = http()
        .post(format!("{}/revoke", node.base))
        .form(&[("client_id", "tessera"), ("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
}

async fn me(node: &Node, access_token: &str) -> StatusCode {
    http()
        .get(format!("{}/api/users/me", node.base))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn jwks_kids(node: &Node) -> Vec<String> {
    let jwks: Value = http()
        .get(format!("{}/.well-known/jwks.json", node.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn kid_of(access_token: &str) -> String {
    jsonwebtoken::decode_header(access_token)
        .unwrap()
        .kid
        .unwrap()
}

fn string(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_owned()
}

/// Refresh at A, then B, then A... each node rotating what the other issued;
/// a replay of an old token at either node revokes the family everywhere.
async fn refresh_alternates_between_nodes(a: &Node, b: &Node) {
    let tokens = signup_and_login(a, &unique_email("alternate")).await;
    let first = string(&tokens, "refresh_token");
    let mut current = first.clone();
    for round in 0..20 {
        let node = if round % 2 == 0 { b } else { a };
        let rotated = refresh(node, &current).await;
        assert_eq!(rotated.status(), StatusCode::OK, "round {round}");
        current = string(&rotated.json().await.unwrap(), "refresh_token");
    }
    let reuse = refresh(b, &first).await;
    assert_eq!(reuse.status(), StatusCode::BAD_REQUEST);
    let family_gone = refresh(a, &current).await;
    assert_eq!(
        family_gone.status(),
        StatusCode::BAD_REQUEST,
        "reuse at B revoked the family at A"
    );
}

/// A revocation at B is seen at A on the very next request.
async fn revoke_at_one_node_is_seen_at_the_other(a: &Node, b: &Node) {
    let tokens = signup_and_login(a, &unique_email("revoke")).await;
    let access = string(&tokens, "access_token");
    assert_eq!(me(a, &access).await, StatusCode::OK);
    revoke(b, &access).await;
    assert_eq!(me(a, &access).await, StatusCode::UNAUTHORIZED);
    revoke(b, &string(&tokens, "refresh_token")).await;
    let refreshed = refresh(a, &string(&tokens, "refresh_token")).await;
    assert_eq!(refreshed.status(), StatusCode::BAD_REQUEST);
}

/// Failed logins spread over both nodes count against one limit.
async fn throttling_is_shared(a: &Node, b: &Node) {
    // The limit counts in fixed 15-minute windows of the wall clock: a run
    // that straddles a boundary starts counting afresh halfway, so it is
    // run again with a fresh account.
    let window = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        now.as_secs() / LOGIN_FAILURES_PER_ACCOUNT.window
    };
    for _ in 0..3 {
        let started_in = window();
        let email = unique_email("throttle");
        signup_and_login(a, &email).await;
        for attempt in 0..LOGIN_FAILURES_PER_ACCOUNT.max {
            let node = if attempt % 2 == 0 { a } else { b };
            let failed = login(node, &email, "wrong password").await;
            assert_eq!(
                failed.status(),
                StatusCode::UNAUTHORIZED,
                "attempt {attempt}"
            );
        }
        let mut locked = Vec::new();
        for node in [a, b] {
            locked.push(login(node, &email, PASSWORD).await);
        }
        if window() != started_in {
            continue;
        }
        for locked in locked {
            assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(locked.headers().contains_key("retry-after"));
        }
        return;
    }
    panic!("every run straddled a throttling window");
}

/// Polls until `done` holds; returns how long it took.
async fn within(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {limit:?}");
}

/// `tessera keys rotate` on the shared keys dir reaches both nodes without a
/// restart; a resource server caching the JWKS for its max-age, and never
/// refetching on an unknown kid, verifies every token either node issues
/// through the whole cycle, because the new key is published first.
async fn rotation_reaches_both_nodes_and_cached_verifiers(
    deployment: &Deployment,
    a: &Node,
    b: &Node,
) {
    let email = unique_email("rotation");
    let before = string(&signup_and_login(a, &email).await, "access_token");
    let old_kid = kid_of(&before);
    let jwks = RemoteJwks::new(format!("{}/.well-known/jwks.json", a.base))
        // An unknown kid never triggers a refetch here: only max-age does.
        .min_refresh(Duration::from_secs(3600));
    let verifier =
        AccessTokenVerifier::new(Arc::new(jwks), "http://tessera.test", "http://tessera.test");
    verifier
        .verify(&before)
        .await
        .expect("verifies before rotation");

    let rotated_at = Instant::now();
    let output = deployment.keys(&["rotate", "--alg", "ES256"]);
    let new_kid = output.split('\t').next().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    // Both nodes publish it without a restart, early enough for the
    // pre-publication to cover the verifier's cached JWKS (which the loop
    // below checks token by token).
    let published = within(PATIENCE, async || {
        jwks_kids(a).await.contains(&new_kid) && jwks_kids(b).await.contains(&new_kid)
    })
    .await;
    assert!(
        published < Duration::from_secs(PREPUBLISH - 1 - JWKS_MAX_AGE),
        "published after {published:?}: too late for the pre-publication of \
         {PREPUBLISH} s to cover a JWKS cached for {JWKS_MAX_AGE} s"
    );

    // Until the new key signs, both nodes keep signing with the old one;
    // every token verifies at the cached verifier throughout.
    let mut signing_new = [false, false];
    while signing_new != [true, true] {
        assert!(
            rotated_at.elapsed() < Duration::from_secs(PREPUBLISH) + PATIENCE,
            "the new key signs at both nodes"
        );
        for (i, node) in [a, b].into_iter().enumerate() {
            let token = login(node, &email, PASSWORD).await.json().await.unwrap();
            let token = string(&token, "access_token");
            let kid = kid_of(&token);
            assert!(kid == old_kid || kid == new_kid, "{kid}");
            if kid == new_kid {
                assert!(
                    rotated_at.elapsed() >= Duration::from_secs(PREPUBLISH - 1),
                    "signed with the new key during its pre-publication"
                );
                signing_new[i] = true;
            }
            verifier
                .verify(&token)
                .await
                .unwrap_or_else(|e| panic!("token signed with {kid}: {e}"));
        }
        verifier
            .verify(&before)
            .await
            .expect("old tokens keep verifying");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in [a, b] {
        assert_eq!(
            me(node, &before).await,
            StatusCode::OK,
            "the old key stays published"
        );
    }
    let listing = deployment.keys(&["list"]);
    let keys: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|l| {
            let mut fields = l.split('\t');
            Some((fields.nth(1)?, fields.next()?))
        })
        .collect();
    assert_eq!(
        keys.iter().filter(|(_, state)| *state == "active").count(),
        1,
        "{listing}"
    );
    // Retired keys, the active ES256 key, and the RS256 key that goes on
    // signing ID tokens (OpenID Discovery §3).
    assert!(
        keys.iter()
            .all(|(alg, state)| matches!(*state, "active" | "retired")
                || (*alg == "RS256" && *state == "published")),
        "{listing}"
    );
    assert_eq!(
        keys.iter()
            .filter(|(alg, state)| *alg == "RS256" && *state == "published")
            .count(),
        1,
        "{listing}"
    );
}

/// Both nodes started together on an empty keys dir: within a reload
/// interval they sign with the same key.
async fn nodes_converge_on_one_signing_key(a: &Node, b: &Node) {
    let email = unique_email("converge");
    signup_and_login(a, &email).await;
    within(PATIENCE, async || {
        let from_a = login(a, &email, PASSWORD)
            .await
            .json::<Value>()
            .await
            .unwrap();
        let from_b = login(b, &email, PASSWORD)
            .await
            .json::<Value>()
            .await
            .unwrap();
        kid_of(&string(&from_a, "access_token")) == kid_of(&string(&from_b, "access_token"))
    })
    .await;
}

async fn deployment_scenarios(redis_url: String) {
    let deployment = Deployment::new(redis_url);
    let (a, b) = tokio::join!(deployment.node(), deployment.node());
    nodes_converge_on_one_signing_key(&a, &b).await;
    refresh_alternates_between_nodes(&a, &b).await;
    revoke_at_one_node_is_seen_at_the_other(&a, &b).await;
    throttling_is_shared(&a, &b).await;
    rotation_reaches_both_nodes_and_cached_verifiers(&deployment, &a, &b).await;
}

#[tokio::test]
async fn two_processes_on_one_redis_server() {
    deployment_scenarios(redis_server().url.clone()).await;
}

#[tokio::test]
async fn two_processes_on_a_redis_cluster() {
    deployment_scenarios(redis_cluster().urls()).await;
}
