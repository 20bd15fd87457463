//! The `tessera` binary: configuration errors and the key commands.

use std::process::Command;

fn tessera(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .current_dir(dir)
        .env("TESSERA_KEYS_DIR", dir.join("keys"))
        .env("TESSERA_DATA_DIR", dir.join("data"));
    command
}

#[test]
fn invalid_configuration_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("TESSERA_BCRYPT_COST", "99"),
        ("TESSERA_BCRYPT_COST", "twelve"),
        ("TESSERA_LISTEN", "not-an-address"),
        ("TESSERA_ISSUER", "ftp://example.com"),
        ("TESSERA_NO_SUCH_SETTING", "1"),
    ] {
        let output = tessera(dir.path())
            .env(name, value)
            .arg("serve")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one clear message: {stderr}");
    }
}

#[test]
fn keys_generate_and_list() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let output = tessera(dir.path())
            .args(["keys", "generate", "--alg", alg])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains(alg));
    }
    let output = tessera(dir.path()).args(["keys", "list"]).output().unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    assert_eq!(listing.lines().count(), 3, "{listing}");
    assert_eq!(
        listing
            .lines()
            .filter(|l| l.split('\t').nth(2) == Some("active"))
            .count(),
        1,
        "{listing}"
    );
    let refused = tessera(dir.path())
        .args(["keys", "generate", "--alg", "HS256"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

#[test]
fn keys_rotate_and_retire() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| tessera(dir.path()).arg("keys").args(args).output().unwrap();
    let generated = run(&["generate", "--alg", "EdDSA"]);
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let first = String::from_utf8_lossy(&generated.stdout)
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    let last = run(&["retire", &first]);
    assert!(!last.status.success(), "the only signing key cannot retire");
    let said = String::from_utf8_lossy(&last.stderr);
    assert!(said.contains("keys rotate"), "kid {first:?}: {said}");

    let rotated = run(&["rotate", "--alg", "ES256"]);
    assert!(rotated.status.success());
    let listing = String::from_utf8_lossy(&run(&["list"]).stdout).into_owned();
    let state = |kid: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(kid))
            .and_then(|l| l.split('\t').nth(2))
            .map(str::to_owned)
    };
    assert_eq!(state(&first).as_deref(), Some("active"), "{listing}");
    assert!(listing.contains("\tpending\tsigns from "), "{listing}");

    // Emergency: a key that signs now, then the old one unpublished at once.
    let now = run(&["rotate", "--alg", "EdDSA", "--prepublish", "0"]);
    assert!(String::from_utf8_lossy(&now.stderr).contains("warning"));
    let retired = run(&["retire", &first, "--unpublish"]);
    assert!(
        retired.status.success(),
        "{}",
        String::from_utf8_lossy(&retired.stderr)
    );
    let listing = String::from_utf8_lossy(&run(&["list"]).stdout).into_owned();
    assert!(!listing.contains(&first), "{listing}");
    assert!(
        !dir.path()
            .join("keys")
            .join(format!("{first}.pem"))
            .exists()
    );
}

#[test]
fn users_set_role() {
    let dir = tempfile::tempdir().unwrap();
    let output = tessera(dir.path())
        .env("TESSERA_BCRYPT_COST", "4")
        .args(["users", "set-role", "nobody@example.com", "admin"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not found"));
}

#[test]
fn clients_create_list_show_delete() {
    let dir = tempfile::tempdir().unwrap();
    let output = tessera(dir.path())
        .args([
            "clients",
            "create",
            "--name",
            "svc",
            "--grant",
            "client_credentials",
            "--scope",
            "a",
            "--scope",
            "b",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = created["client_id"].as_str().unwrap().to_owned();
    assert!(
        created["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("tss_")
    );

    let public = tessera(dir.path())
        .args([
            "clients",
            "create",
            "--name",
            "spa",
            "--public",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://spa.example/cb",
            "--scope",
            "profile",
            "--json",
        ])
        .output()
        .unwrap();
    let public: serde_json::Value = serde_json::from_slice(&public.stdout).unwrap();
    assert!(public.get("client_secret").is_none());

    let listing = tessera(dir.path())
        .args(["clients", "list"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains(&id) && listing.contains("confidential") && listing.contains("public"),
        "{listing}"
    );
    let shown = tessera(dir.path())
        .args(["clients", "show", &id])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("\"name\": \"svc\""),
        "{}\n{}",
        String::from_utf8_lossy(&shown.stdout),
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(
        tessera(dir.path())
            .args(["clients", "delete", &id])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        !tessera(dir.path())
            .args(["clients", "show", &id])
            .status()
            .unwrap()
            .success()
    );

    let invalid = tessera(dir.path())
        .args([
            "clients",
            "create",
            "--name",
            "x",
            "--public",
            "--grant",
            "client_credentials",
            "--scope",
            "a",
        ])
        .output()
        .unwrap();
    assert!(!invalid.status.success());
}

#[test]
fn clients_create_scope_is_optional_for_user_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let help = tessera(dir.path())
        .args(["clients", "create", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--scope") && help.contains("email profile"),
        "--help documents the default: {help}"
    );

    // A browser app without --scope may ask for what the user API needs.
    let output = tessera(dir.path())
        .args([
            "clients",
            "create",
            "--name",
            "web",
            "--public",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--redirect-uri",
            "https://web.example/cb",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = created["client_id"].as_str().unwrap();
    let shown = tessera(dir.path())
        .args(["clients", "show", id])
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["scopes"], serde_json::json!(["email", "profile"]));

    // A client_credentials client must name its scopes; nothing is stored.
    let refused = tessera(dir.path())
        .args([
            "clients",
            "create",
            "--name",
            "svc",
            "--grant",
            "client_credentials",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--scope") && stderr.contains("client_credentials"),
        "{stderr}"
    );
    let listing = tessera(dir.path())
        .args(["clients", "list"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert_eq!(listing.lines().count(), 1, "{listing}");
}

#[tokio::test]
async fn healthcheck_reports_readiness() {
    let app = crate::common::TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let ready_url = app.url("/readyz");
    let dead_url = format!("http://127.0.0.1:{}/readyz", crate::common::free_port());
    let (ready, dead) = tokio::task::spawn_blocking({
        let path = dir.path().to_owned();
        move || {
            let run = |url: &str| {
                tessera(&path)
                    .args(["healthcheck", "--url", url])
                    .status()
                    .unwrap()
                    .success()
            };
            (run(&ready_url), run(&dead_url))
        }
    })
    .await
    .unwrap();
    assert!(ready && !dead);
}
