//! The MongoDB user store against SecantusDB (a single-node server speaking
//! the MongoDB wire protocol over WiredTiger): what only a real server shows.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, doc, oid::ObjectId};
use reqwest::StatusCode;
use serde_json::json;
use tessera::config::Secret;

use crate::common::{
    Backend, TestApp, assert_problem, body, free_port, mongo_uri, secantus_command, unique_email,
    wait_for_port,
};

#[tokio::test]
async fn parallel_signups_of_one_email_create_exactly_one_user() {
    let app = TestApp::spawn_on(Backend::Mongo).await;
    let email = unique_email("race");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (http, url, email) = (app.http.clone(), app.url("/api/users/signup"), email.clone());
            tokio::spawn(async move {
                let body = json!({"email": email, "password": "correct horse", "fname": "a", "lname": "b"});
                http.post(url).json(&body).send().await.unwrap().status()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
}

#[tokio::test]
async fn a_user_written_by_the_mongoose_service_logs_in_and_is_rehashed() {
    let app = TestApp::spawn_on(Backend::Mongo).await;
    let email = unique_email("legacy");
    // As the Node service wrote it: `$2a$` bcrypt at cost 10, a numeric
    // mobile, Mongoose timestamps and version key, no role.
    let hash = bcrypt::hash("legacy password", 10)
        .unwrap()
        .replacen("$2b$", "$2a$", 1);
    let client = mongodb::Client::with_uri_str(app.config.mongodb_uri.as_ref().unwrap().expose())
        .await
        .unwrap();
    let users = client
        .database(&app.config.mongodb_db)
        .collection::<mongodb::bson::Document>("users");
    let id = ObjectId::new();
    users
        .insert_one(doc! {
            "_id": id,
            "email": &email,
            "password": &hash,
            "fname": "Ada",
            "lname": "Lovelace",
            "gender": "female",
            "mobile": 447911123456_i64,
            "createdAt": DateTime::from_millis(1_600_000_000_000),
            "updatedAt": DateTime::from_millis(1_600_000_000_000),
            "__v": 0,
        })
        .await
        .unwrap();

    let tokens = app.login(&email, "legacy password").await;
    assert_eq!(tokens.status(), StatusCode::OK);
    let tokens = body(tokens).await;
    let me = body(
        app.get_auth("/api/users/me", tokens["access_token"].as_str().unwrap())
            .await,
    )
    .await;
    assert_eq!(me["id"], id.to_hex());
    assert_eq!(me["mobile"], "+447911123456");
    assert_eq!(me["role"], "user");
    assert_eq!(me["created_at"], "2020-09-13T12:26:40Z");
    // Rehashed at the configured cost (4 in tests), in place.
    let stored = users.find_one(doc! {"_id": id}).await.unwrap().unwrap();
    assert!(stored.get_str("password").unwrap().starts_with("$2b$04$"));
    assert_eq!(stored.get_i32("__v").unwrap(), 0, "other fields untouched");
}

#[tokio::test]
async fn ids_are_object_ids_and_the_email_index_exists() {
    let app = TestApp::spawn_on(Backend::Mongo).await;
    let user = app.user("oid").await;
    assert!(ObjectId::parse_str(&user.id).is_ok());
    let client = mongodb::Client::with_uri_str(app.config.mongodb_uri.as_ref().unwrap().expose())
        .await
        .unwrap();
    let users = client
        .database(&app.config.mongodb_db)
        .collection::<mongodb::bson::Document>("users");
    let names = users.list_index_names().await.unwrap();
    assert!(names.iter().any(|n| n == "email_unique"), "{names:?}");
    // Starting again creates the indexes idempotently.
    let app = app.restart().await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

/// A SecantusDB process this test owns, killed on drop.
struct OwnedMongo(Child);

impl OwnedMongo {
    fn start(port: u16, storage: &std::path::Path) -> Self {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {}", secantus_command(port, storage)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "SecantusDB did not start"
        );
        Self(child)
    }
}

impl Drop for OwnedMongo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn mongodb_outage_is_503_and_acknowledged_signups_survive() {
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let server = OwnedMongo::start(port, &storage.path().join("wt"));
    let uri = mongo_uri(port);
    let app = TestApp::spawn_with(move |c| c.mongodb_uri = Some(Secret::new(uri))).await;
    let mut acknowledged = Vec::new();
    for _ in 0..5 {
        let email = unique_email("durable");
        assert_eq!(
            app.signup(&email, "correct horse").await.status(),
            StatusCode::CREATED
        );
        acknowledged.push(email);
    }

    // A crash, not a clean stop.
    drop(server);
    let response = app.signup(&unique_email("down"), "correct horse").await;
    assert_problem(response, 503, "backend_unavailable").await;
    assert_problem(
        app.login(&acknowledged[0], "correct horse").await,
        503,
        "backend_unavailable",
    )
    .await;
    let ready = assert_problem(app.get("/readyz").await, 503, "backend_unavailable").await;
    assert_eq!(ready["backends"]["mongodb"], "unavailable");

    let _server = OwnedMongo::start(port, &storage.path().join("wt"));
    let back = Instant::now();
    while app.get("/readyz").await.status() != StatusCode::OK {
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "not recovered within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for email in &acknowledged {
        assert_eq!(
            app.login(email, "correct horse").await.status(),
            StatusCode::OK,
            "{email} survived"
        );
    }
}

/// A client written before the DPoP and PAR settings existed (no such
/// fields in its document) reads as requiring neither.
#[tokio::test]
async fn a_client_document_without_the_dpop_and_par_fields_reads_false() {
    let app = TestApp::spawn_on(Backend::Mongo).await;
    let client = mongodb::Client::with_uri_str(app.config.mongodb_uri.as_ref().unwrap().expose())
        .await
        .unwrap();
    let clients = client
        .database(&app.config.mongodb_db)
        .collection::<mongodb::bson::Document>("clients");
    clients
        .insert_one(doc! {
            "_id": "older-client",
            "name": "Older",
            "first_party": false,
            "redirect_uris": ["https://app.example/cb"],
            "grant_types": ["authorization_code"],
            "scopes": ["profile"],
            "post_logout_redirect_uris": [],
            "createdAt": DateTime::now(),
        })
        .await
        .unwrap();
    let read = app
        .state
        .clients
        .get("older-client")
        .await
        .unwrap()
        .expect("the client");
    assert!(!read.dpop_bound_access_tokens);
    assert!(!read.require_pushed_authorization_requests);
}
