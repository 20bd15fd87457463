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
        listing.lines().filter(|l| l.ends_with("active")).count(),
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
