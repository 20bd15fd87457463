//! The operator's commands: `users list|disable|enable`, `clients
//! update|rotate-secret`, `events`, and the key commands' events, on the
//! data a server wrote.

use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{PASSWORD, TestApp, unique_email};

fn tessera(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .current_dir(app.dir.path())
        .env("TESSERA_KEYS_DIR", app.dir.path().join("keys"))
        .env("TESSERA_DATA_DIR", app.dir.path().join("data"))
        .env("TESSERA_BCRYPT_COST", "4")
        .args(args)
        .output()
        .unwrap()
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn operators_manage_users_clients_and_read_events() {
    let mut app = TestApp::spawn().await;
    let email = unique_email("cli-user");
    assert!(app.signup(&email, PASSWORD).await.status().is_success());
    app.shutdown().await;
    let prefix = &email[..12];

    let listed = json_of(&tessera(&app, &["users", "list", "--q", prefix, "--json"]));
    assert_eq!(listed["items"][0]["email"], email.as_str());
    assert_eq!(listed["items"][0]["disabled"], false);
    let table = tessera(&app, &["users", "list", "--q", prefix]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&email));

    assert!(
        tessera(&app, &["users", "disable", &email])
            .status
            .success()
    );
    let listed = json_of(&tessera(&app, &["users", "list", "--q", prefix, "--json"]));
    assert_eq!(listed["items"][0]["disabled"], true);
    assert!(tessera(&app, &["users", "enable", &email]).status.success());

    let unknown = tessera(&app, &["users", "disable", "nobody@example.com"]);
    assert!(!unknown.status.success());
    let bad_limit = tessera(&app, &["users", "list", "--limit", "500"]);
    assert!(!bad_limit.status.success());
    assert!(String::from_utf8_lossy(&bad_limit.stderr).contains("limit"));

    let created = json_of(&tessera(
        &app,
        &[
            "clients",
            "create",
            "--name",
            "svc",
            "--grant",
            "client_credentials",
            "--scope",
            "a",
            "--json",
        ],
    ));
    let id = created["client_id"].as_str().unwrap().to_owned();
    let first_secret = created["client_secret"].as_str().unwrap().to_owned();
    let updated = json_of(&tessera(
        &app,
        &[
            "clients", "update", &id, "--name", "svc 2", "--scope", "a", "--scope", "b", "--json",
        ],
    ));
    assert_eq!(updated["name"], "svc 2");
    assert_eq!(updated["scopes"], serde_json::json!(["a", "b"]));
    let nothing = tessera(&app, &["clients", "update", &id]);
    assert!(!nothing.status.success());
    let rotated = json_of(&tessera(
        &app,
        &["clients", "rotate-secret", &id, "--grace", "60", "--json"],
    ));
    let second_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(first_secret, second_secret);
    let builtin = tessera(&app, &["clients", "rotate-secret", "tessera"]);
    assert!(!builtin.status.success());

    // The DPoP and PAR settings: off unless asked for, then switched one at a time.
    let shown = json_of(&tessera(&app, &["clients", "show", &id]));
    assert_eq!(shown["dpop_bound_access_tokens"], false);
    assert_eq!(shown["require_pushed_authorization_requests"], false);
    let bound = json_of(&tessera(
        &app,
        &[
            "clients",
            "create",
            "--name",
            "bound",
            "--public",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://app.example/cb",
            "--dpop-bound-access-tokens",
            "--require-par",
            "--json",
        ],
    ));
    let bound_id = bound["client_id"].as_str().unwrap().to_owned();
    let shown = json_of(&tessera(&app, &["clients", "show", &bound_id]));
    assert_eq!(shown["dpop_bound_access_tokens"], true);
    assert_eq!(shown["require_pushed_authorization_requests"], true);
    let updated = json_of(&tessera(
        &app,
        &["clients", "update", &bound_id, "--no-require-par", "--json"],
    ));
    assert_eq!(updated["dpop_bound_access_tokens"], true);
    assert_eq!(updated["require_pushed_authorization_requests"], false);
    let updated = json_of(&tessera(
        &app,
        &[
            "clients",
            "update",
            &bound_id,
            "--no-dpop-bound-access-tokens",
            "--require-par",
            "--json",
        ],
    ));
    assert_eq!(updated["dpop_bound_access_tokens"], false);
    assert_eq!(updated["require_pushed_authorization_requests"], true);
    let both = tessera(
        &app,
        &[
            "clients",
            "update",
            &bound_id,
            "--require-par",
            "--no-require-par",
        ],
    );
    assert!(!both.status.success(), "on and off at once is refused");
    let listed = json_of(&tessera(&app, &["clients", "list", "--json"]));
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == bound_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["require_pushed_authorization_requests"], true);
    assert_eq!(listed["dpop_bound_access_tokens"], false);

    assert!(
        tessera(&app, &["keys", "rotate", "--prepublish", "900"])
            .status
            .success()
    );

    let events = json_of(&tessera(&app, &["events", "--limit", "100", "--json"]));
    let items = events["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for kind in [
        "user_created",
        "user_disabled",
        "user_enabled",
        "client_created",
        "client_updated",
        "client_secret_rotated",
        "key_rotated",
    ] {
        assert!(kinds.contains(&kind), "{kind}: {kinds:?}");
    }
    for event in items.iter().filter(|e| e["type"] != "user_created") {
        assert_eq!(event["detail"]["actor"], "cli", "{event}");
    }
    let text = events.to_string();
    for secret in [&first_secret, &second_secret] {
        assert!(!text.contains(secret.as_str()));
    }
    let filtered = json_of(&tessera(
        &app,
        &["events", "--type", "key_rotated", "--json"],
    ));
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    let table = tessera(&app, &["events", "--client-id", &id]);
    assert_eq!(String::from_utf8_lossy(&table.stdout).lines().count(), 4);
    let bad = tessera(&app, &["events", "--type", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("type"));
}

#[tokio::test]
async fn operators_delete_users() {
    let mut app = TestApp::spawn().await;
    let email = unique_email("cli-deleted");
    assert!(app.signup(&email, PASSWORD).await.status().is_success());
    app.shutdown().await;

    let deleted = tessera(&app, &["users", "delete", &email.to_uppercase()]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let listed = json_of(&tessera(&app, &["users", "list", "--q", &email, "--json"]));
    assert_eq!(listed["items"], serde_json::json!([]));
    let again = tessera(&app, &["users", "delete", &email]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no such user"));
    let events = json_of(&tessera(
        &app,
        &["events", "--type", "user_deleted", "--json"],
    ));
    assert_eq!(events["items"][0]["detail"]["actor"], "cli");
}
