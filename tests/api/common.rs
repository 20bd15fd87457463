//! The one helper every integration test uses: `TestApp::spawn()` starts
//! Tessera in-process on `127.0.0.1:0` with a temporary data and keys dir.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tessera::App;
use tessera::clock::Clock;
use tessera::config::Config;
use tessera::config::Secret;
use tessera::http::AppState;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The password every helper-made user gets.
pub const PASSWORD: &str = "correct horse battery";

/// Which stores the app under test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Everything in the embedded SQLite file.
    Sqlite,
    /// Users embedded, tokens in a real redis-server.
    Redis,
    /// Users embedded, tokens in a local 3-master Redis Cluster.
    RedisCluster,
    /// The production shape: users in MongoDB (SecantusDB speaking the
    /// MongoDB wire protocol), tokens in Redis.
    Mongo,
}

/// One SecantusDB server for the whole test binary, on a free port with a
/// temporary WiredTiger directory, stopped by a watchdog when this process exits.
pub struct MongoServer {
    pub port: u16,
    _dir: TempDir,
    _child: Child,
}

impl MongoServer {
    pub fn uri(&self) -> String {
        mongo_uri(self.port)
    }
}

pub fn mongo_uri(port: u16) -> String {
    format!("mongodb://127.0.0.1:{port}/?directConnection=true")
}

/// The `secantusd-py` command line for `port` and `storage`.
pub fn secantus_command(port: u16, storage: &std::path::Path) -> String {
    let bin = venv_python().with_file_name("secantusd-py");
    format!(
        "'{}' --port {port} --storage-path '{}' --log-level WARNING --sync-on-commit",
        bin.display(),
        storage.display()
    )
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn mongo_server() -> &'static MongoServer {
    static SERVER: OnceLock<MongoServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let child = spawn_watched(&secantus_command(port, &dir.path().join("wt")));
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "SecantusDB did not start"
        );
        MongoServer {
            port,
            _dir: dir,
            _child: child,
        }
    })
}

/// One `redis-server` for the whole test binary, on a free port, stopped
/// by a watchdog when this process exits.
pub struct RedisServer {
    pub url: String,
    pub port: u16,
    _child: Child,
}

/// Runs `command` (a shell line) beside a watchdog that stops it once this
/// test process is gone, so no server outlives a crashed or interrupted run.
fn spawn_watched(command: &str) -> Child {
    let script = format!(
        "{command} & sp=$!; while kill -0 {parent} 2>/dev/null && kill -0 $sp 2>/dev/null; do sleep 1; done; kill $sp 2>/dev/null",
        parent = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("test server starts (tests/run.sh installs it)")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn redis_server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start(free_port()))
}

impl RedisServer {
    /// Starts a `redis-server` on `port` and waits until it accepts connections.
    pub fn start(port: u16) -> Self {
        let child = spawn_watched(&format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --loglevel warning"
        ));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisServer {
            url: format!("redis://127.0.0.1:{port}/0"),
            port,
            _child: child,
        }
    }

    /// Stops the server at once, as a crash would (no save).
    pub fn stop(&self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A local Redis Cluster of three masters (no replicas), on free ports with
/// a temporary directory, started once for the whole test binary.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    _dir: TempDir,
    _nodes: Vec<Child>,
}

impl RedisCluster {
    /// The seed-node list Tessera takes in `TESSERA_REDIS_URL`.
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

pub fn redis_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                spawn_watched(&format!(
                    "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
                     --loglevel warning --cluster-enabled yes --dir '{dir}' \
                     --cluster-config-file nodes-{port}.conf --cluster-node-timeout 2000",
                    dir = dir.path().display()
                ))
            })
            .collect();
        for port in &ports {
            assert!(
                wait_for_port(*port, Duration::from_secs(10)),
                "cluster node starts"
            );
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let created = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create");
        let cluster_ok = |port: &u16| {
            Command::new("redis-cli")
                .args(["-p", &port.to_string(), "cluster", "info"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        };
        for _ in 0..200 {
            if ports.iter().all(cluster_ok) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(ports.iter().all(cluster_ok), "the cluster reaches state ok");
        RedisCluster {
            ports,
            _dir: dir,
            _nodes: nodes,
        }
    })
}

/// The test tools' Python, installed by `tests/run.sh` into `.venv`.
pub fn venv_python() -> std::path::PathBuf {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tests/run.sh`, which installs the test tools",
        python.display()
    );
    python
}

/// A real SMTP server (aiosmtpd) writing every message into a maildir.
pub struct SmtpServer {
    pub port: u16,
    pub maildir: std::path::PathBuf,
    _dir: TempDir,
    _child: Child,
}

pub fn smtp_server() -> &'static SmtpServer {
    static SERVER: OnceLock<SmtpServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = dir.path().join("maildir");
        let child = spawn_watched(&format!(
            "'{}' -m aiosmtpd -n -l 127.0.0.1:{port} -c aiosmtpd.handlers.Mailbox '{}'",
            venv_python().display(),
            maildir.display()
        ));
        assert!(
            wait_for_port(port, Duration::from_secs(60)),
            "aiosmtpd did not start"
        );
        SmtpServer {
            port,
            maildir,
            _dir: dir,
            _child: child,
        }
    })
}

impl SmtpServer {
    /// Every delivered message addressed to `email`, raw, oldest first.
    pub fn messages_to(&self, email: &str) -> Vec<String> {
        let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                let to_line = text
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("to:"))
                    .unwrap_or("");
                if to_line.contains(email) {
                    let modified = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    found.push((modified, text));
                }
            }
        }
        found.sort_by_key(|entry| entry.0);
        found.into_iter().map(|(_, text)| text).collect()
    }

    /// Waits until `email` has received `count` messages; the deadline (a
    /// minute) only matters when a delivery is lost, so it is generous
    /// enough for a loaded machine.
    pub async fn wait_for(&self, email: &str, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let messages = self.messages_to(email);
            if messages.len() >= count {
                return messages;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{email} did not receive {count} message(s)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The 6-digit code in a raw message (a line of exactly six digits).
pub fn otp_in(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .expect("a code in the message")
        .to_owned()
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    pub clock: Clock,
    pub config: Config,
    pub dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// A user made by [`TestApp::user`], with a fresh login.
#[allow(dead_code)] // refresh_token is for the OAuth tests
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// An email no other test uses.
pub fn unique_email(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{tag}.{n}.{}@example.com", std::process::id())
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts with a test config adjusted by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on_with(Backend::Sqlite, configure).await
    }

    pub async fn spawn_on(backend: Backend) -> Self {
        Self::spawn_on_with(backend, |_| {}).await
    }

    /// Starts on `backend` with a test config adjusted by `configure`.
    pub async fn spawn_on_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let (config, dir) = Self::config_for(backend, configure);
        Self::start(config, dir, Clock::system()).await
    }

    /// Starts on `backend` with the issuer set to the address it listens on,
    /// as a deployed server's is: a relying party discovers the metadata,
    /// checks its `issuer` against the URL it asked and calls the endpoints
    /// it names, so the server must be reachable at its own issuer.
    pub async fn spawn_as_issuer(backend: Backend) -> Self {
        Self::spawn_as_issuer_with(backend, |_| {}).await
    }

    /// [`spawn_as_issuer`](Self::spawn_as_issuer) with the config adjusted
    /// by `configure` (the issuer is set after it).
    pub async fn spawn_as_issuer_with(
        backend: Backend,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let (config, dir) = Self::config_for(backend, |c| {
            configure(c);
            c.issuer = issuer;
        });
        Self::start_on(listener, config, dir, Clock::system()).await
    }

    /// A test config for `backend` in a new temporary directory.
    fn config_for(backend: Backend, configure: impl FnOnce(&mut Config)) -> (Config, Arc<TempDir>) {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut config = Config::for_test(dir.path());
        if matches!(backend, Backend::Redis | Backend::Mongo) {
            config.redis_url = Some(Secret::new(redis_server().url.clone()));
        }
        if backend == Backend::RedisCluster {
            config.redis_url = Some(Secret::new(redis_cluster().urls()));
        }
        if backend == Backend::Mongo {
            config.mongodb_uri = Some(Secret::new(mongo_server().uri()));
            // A database per app keeps parallel tests apart.
            config.mongodb_db = format!("t{}", unique_email("db").replace(['.', '@'], "_"));
        }
        configure(&mut config);
        (config, dir)
    }

    async fn start(config: Config, dir: Arc<TempDir>, clock: Clock) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::start_on(listener, config, dir, clock).await
    }

    async fn start_on(
        listener: tokio::net::TcpListener,
        config: Config,
        dir: Arc<TempDir>,
        clock: Clock,
    ) -> Self {
        let app = App::build(config.clone(), clock.clone())
            .await
            .expect("app builds");
        let state = app.state.clone();
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            base,
            state,
            http,
            clock,
            config,
            dir,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops the server (letting in-flight requests finish) and starts a
    /// new one on the same data and keys.
    pub async fn restart(mut self) -> Self {
        self.shutdown().await;
        let (config, dir, clock) = (self.config.clone(), self.dir.clone(), self.clock.clone());
        Self::start(config, dir, clock).await
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server stops cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn put_json_auth(&self, path: &str, token: &str, body: &Value) -> Response {
        self.http
            .put(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A JSON request with a bearer token, any method (admin PATCH, DELETE...).
    pub async fn send_json_auth(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    /// A form POST, optionally with HTTP Basic client credentials.
    pub async fn post_form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Response {
        let mut request = self.http.post(self.url(path)).form(form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        request.send().await.expect("request")
    }

    /// Registers a client directly through the domain service.
    pub async fn client(
        &self,
        new: tessera::domain::clients::NewClient,
    ) -> (String, Option<String>) {
        let registered = self
            .state
            .clients
            .register(new, tessera::domain::audit::Actor::Cli)
            .await
            .expect("client registers");
        (registered.client.id, registered.secret)
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/users/signup",
            &json!({"email": email, "password": password, "fname": "Test", "lname": "User"}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/users/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Makes a new user an admin and returns a fresh admin access token.
    pub async fn admin_token(&self, tag: &str) -> String {
        let user = self.user(tag).await;
        self.state
            .admin
            .set_role_by_email(&user.email, "admin")
            .await
            .expect("role set");
        let tokens = body(self.login(&user.email, PASSWORD).await).await;
        tokens["access_token"].as_str().expect("token").to_owned()
    }

    /// Signs a new user up and logs them in.
    pub async fn user(&self, tag: &str) -> TestUser {
        let email = unique_email(tag);
        let created = self.signup(&email, PASSWORD).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let id = body(created).await["id"].as_str().expect("id").to_owned();
        let tokens = self.login(&email, PASSWORD).await;
        assert_eq!(tokens.status(), StatusCode::OK);
        let tokens = body(tokens).await;
        TestUser {
            id,
            email,
            access_token: tokens["access_token"]
                .as_str()
                .expect("access token")
                .to_owned(),
            refresh_token: tokens["refresh_token"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The JSON body of a response.
pub async fn body(response: Response) -> Value {
    response.json().await.expect("JSON body")
}

/// Asserts a problem+json answer with `status` and `code`; returns the body.
pub async fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body = body(response).await;
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// Asserts an RFC 6749 §5.2 error answer with `status` and `error`.
pub async fn assert_oauth_error(response: Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = body(response).await;
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string());
    body
}

/// Runs each named `async fn(Backend)` once per token-store backend.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod redis {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Redis).await })*
        }
        mod mongo {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Mongo).await })*
        }
        mod redis_cluster {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::RedisCluster).await })*
        }
    };
}

/// Asserts an RFC 6750 invalid_token answer.
pub async fn assert_invalid_token(response: Response) {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("WWW-Authenticate")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert_problem(response, 401, "invalid_token").await;
}
