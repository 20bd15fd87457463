//! Backend outages: 503 with a clear body, never a panic, and recovery by
//! itself once the backend is back.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tessera::config::Secret;

use crate::common::{
    PASSWORD, RedisServer, TestApp, assert_oauth_error, assert_problem, body, free_port,
};

#[tokio::test]
async fn redis_outage_is_503_and_recovers_by_itself() {
    let redis = RedisServer::start(free_port());
    let url = redis.url.clone();
    let app = TestApp::spawn_with(move |c| c.redis_url = Some(Secret::new(url))).await;
    let user = app.user("outage").await;

    redis.stop();
    // Token-store endpoints answer 503, in their own error shapes.
    assert_problem(
        app.login(&user.email, PASSWORD).await,
        503,
        "backend_unavailable",
    )
    .await;
    assert_problem(
        app.get_auth("/api/users/me", &user.access_token).await,
        503,
        "backend_unavailable",
    )
    .await;
    let response = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tessera"),
                ("refresh_token", &user.refresh_token),
            ],
        )
        .await;
    assert_oauth_error(response, 503, "temporarily_unavailable").await;
    let ready = app.get("/readyz").await;
    let ready = assert_problem(ready, 503, "backend_unavailable").await;
    assert_eq!(ready["backends"]["redis"], "unavailable");
    assert_eq!(ready["backends"]["sqlite"], "ok");
    // What does not need Redis keeps working.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/.well-known/jwks.json").await.status(),
        StatusCode::OK
    );

    let _restarted = RedisServer::start(redis.port);
    let back = Instant::now();
    loop {
        let response = app.login(&user.email, PASSWORD).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "not recovered 2 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = body(app.login(&user.email, PASSWORD).await).await;
    let me = app
        .get_auth("/api/users/me", fresh["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn start_up_without_redis_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tessera::config::Config::for_test(dir.path());
    config.redis_url = Some(Secret::new(format!("redis://127.0.0.1:{}/0", free_port())));
    let error = tessera::App::build(config, tessera::clock::Clock::system())
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("TESSERA_REDIS_URL"), "{error}");
}

/// Another process holding the embedded store's write lock (a CLI command,
/// a backup) is waited for, bounded by SQLite's busy timeout: a short lock
/// delays writes, a lock held past the bound is a 503, never a 500 or a
/// half-written record, and reads never wait for it (WAL).
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_embedded_store_is_waited_for_then_503() {
    let app = TestApp::spawn().await;
    let user = app.user("locked").await;
    let db = app.config.data_dir.join("tessera.db");
    let hold = |seconds: f64| {
        let db = db.clone();
        let (locked, is_locked) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(db).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(Duration::from_secs_f64(seconds));
            conn.execute_batch("COMMIT").unwrap();
        });
        is_locked.recv().unwrap();
        holder
    };

    // Held for 1 s: the signup waits and succeeds; reads go on meanwhile.
    let holder = hold(1.0);
    let started = Instant::now();
    let me = app.get_auth("/api/users/me", &user.access_token).await;
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "readers do not wait for the writer"
    );
    let email = crate::common::unique_email("after-lock");
    assert_eq!(
        app.signup(&email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited");
    holder.join().unwrap();

    // Held past the 5 s bound: 503 problem+json, and nothing half-written.
    let holder = hold(6.5);
    let late = crate::common::unique_email("too-late");
    assert_problem(
        app.signup(&late, PASSWORD).await,
        503,
        "backend_unavailable",
    )
    .await;
    holder.join().unwrap();
    assert_eq!(
        app.signup(&late, PASSWORD).await.status(),
        StatusCode::CREATED,
        "not half-written"
    );
}
