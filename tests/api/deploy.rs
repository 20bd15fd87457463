//! The deployment files, checked without a Docker engine: the compose file
//! parses, has the services and wiring it promises, and every `TESSERA_`
//! variable in it and in `.env.example` is a real setting.

use std::collections::BTreeSet;
use std::path::Path;

use tessera::config::Config;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

/// Every setting name, as its environment variable.
fn settings() -> BTreeSet<String> {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let mut names: BTreeSet<String> = defaults
        .as_object()
        .unwrap()
        .keys()
        .map(|k| format!("TESSERA_{}", k.to_uppercase()))
        .collect();
    names.insert("TESSERA_CONFIG_FILE".into());
    names
}

fn variables_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (start, _) in text.match_indices("TESSERA_") {
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        found.insert(name);
    }
    found
}

#[test]
fn every_variable_in_compose_and_env_example_is_a_setting() {
    let settings = settings();
    for file in ["docker-compose.yml", ".env.example", "Dockerfile"] {
        for name in variables_in(&repo_file(file)) {
            assert!(
                settings.contains(&name),
                "{file} names {name}, which is not a setting"
            );
        }
    }
    // .env.example lists every setting.
    let example = variables_in(&repo_file(".env.example"));
    for name in settings.iter().filter(|n| *n != "TESSERA_CONFIG_FILE") {
        assert!(example.contains(name), ".env.example lacks {name}");
    }
}

#[test]
fn compose_has_the_production_services_wired_together() {
    let docs = YamlLoader::load_from_str(&repo_file("docker-compose.yml")).expect("valid YAML");
    let services = &docs[0]["services"];
    for name in ["mongo", "redis", "mailpit", "tessera"] {
        assert!(!services[name].is_badvalue(), "service {name}");
        assert!(
            !services[name]["healthcheck"].is_badvalue(),
            "{name} has a health check"
        );
    }
    let text = |y: &Yaml| format!("{y:?}");
    assert!(
        text(&services["mongo"]["command"]).contains("--replSet"),
        "single-node replica set"
    );
    assert!(
        text(&services["redis"]["command"]).contains("appendonly"),
        "AOF on"
    );
    assert!(
        !services["mailpit"]["ports"].is_badvalue(),
        "the web UI is published"
    );
    let tessera = &services["tessera"];
    for dependency in ["mongo", "redis", "mailpit"] {
        assert_eq!(
            tessera["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy")
        );
    }
    let env = &tessera["environment"];
    for (key, expected) in [
        ("TESSERA_SMTP_HOST", "mailpit"),
        ("TESSERA_REDIS_URL", "redis://redis:6379/0"),
    ] {
        assert_eq!(env[key].as_str(), Some(expected));
    }
    assert!(
        env["TESSERA_MONGODB_URI"]
            .as_str()
            .unwrap()
            .contains("replicaSet=rs0")
    );
}

#[test]
fn the_dockerfile_is_multi_stage_and_runs_as_non_root() {
    let dockerfile = repo_file("Dockerfile");
    assert_eq!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count(),
        2
    );
    let user = dockerfile
        .lines()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root"));
    assert!(
        dockerfile.contains("VOLUME")
            && dockerfile.contains("/keys")
            && dockerfile.contains("/data")
    );
}
