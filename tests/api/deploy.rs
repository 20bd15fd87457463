//! The deployment files, checked without a Docker engine: the compose file
//! parses, has the services and wiring it promises, and every `TESSERA_`
//! variable in it and in `.env.example` is a real setting.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

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

// --- The Docker build context, without a Docker engine -------------------
//
// `docker build .` sends the repository minus `.dockerignore` to the
// builder; the build stage's `COPY` lines pick from that context. The test
// below does the same with files: it copies what those lines copy into a
// scratch directory laid out as the build stage's filesystem and runs
// `cargo check --locked --offline --bin tessera` in the stage's WORKDIR, so
// a Dockerfile that leaves out anything the manifest needs (a declared
// bench, example or workspace member) fails here as it would in Docker.

/// One `.dockerignore` line: a pattern split into path segments, and
/// whether it is an exception (`!pattern`).
struct IgnoreRule {
    segments: Vec<String>,
    exception: bool,
}

/// `.dockerignore` with Docker's semantics (moby/patternmatcher): patterns
/// are relative to the context root (a leading `/` and a trailing `/` are
/// dropped), `*` and `?` never match `/`, `**` matches any number of
/// directories, a pattern that matches a directory excludes everything
/// under it, and the last matching line wins (`!` lines re-include).
struct DockerIgnore {
    rules: Vec<IgnoreRule>,
}

impl DockerIgnore {
    fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let (exception, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                assert!(
                    !pattern.contains(['[', '\\']),
                    ".dockerignore pattern {pattern:?}: character classes and escapes \
                     are not modelled by this test; extend DockerIgnore first"
                );
                let segments = pattern
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_owned)
                    .collect();
                IgnoreRule {
                    segments,
                    exception,
                }
            })
            .collect();
        Self { rules }
    }

    /// Whether `path` (relative to the context root, `/`-separated) is
    /// left out of the context.
    fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for rule in &self.rules {
            // The path itself or one of its parent directories.
            let matched = (1..=parts.len()).any(|n| segments_match(&rule.segments, &parts[..n]));
            if matched {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }
}

fn segments_match(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| segments_match(rest, &path[skip..]))
        }
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(name, tail)| glob_match(first, name) && segments_match(rest, tail)),
    }
}

/// One path segment against a pattern of literals, `*` and `?`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|skip| go(rest, &n[skip..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(&p, &n)
}

/// The build context: the repository filtered by `.dockerignore`.
struct Context {
    root: std::path::PathBuf,
    ignore: DockerIgnore,
}

impl Context {
    fn new(root: &Path) -> Self {
        let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default();
        Self {
            root: root.to_owned(),
            ignore: DockerIgnore::parse(&ignore),
        }
    }

    /// Context paths (relative) matching a `COPY` source, which may use `*`
    /// and `?`; `.` is the whole context. Ignored paths do not exist.
    fn resolve(&self, source: &str) -> Vec<String> {
        let segments: Vec<&str> = source
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        let mut found = vec![String::new()];
        for segment in segments {
            let mut next = Vec::new();
            for dir in &found {
                if segment.contains(['*', '?']) {
                    let Ok(entries) = std::fs::read_dir(self.root.join(dir)) else {
                        continue;
                    };
                    let mut names: Vec<String> = entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|name| glob_match(segment, name))
                        .collect();
                    names.sort();
                    next.extend(names.into_iter().map(|name| join(dir, &name)));
                } else if self.root.join(dir).join(segment).symlink_metadata().is_ok() {
                    next.push(join(dir, segment));
                }
            }
            found = next;
        }
        found.retain(|path| path.is_empty() || !self.ignore.excludes(path));
        found
    }

    /// Every file and symlink under `dir` (relative) that is in the context.
    fn files_under(&self, dir: &str, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(self.root.join(dir))
            .unwrap()
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = join(dir, &entry.file_name().to_string_lossy());
            let excluded = self.ignore.excludes(&path);
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                // An excluded directory may still hold re-included paths.
                if !excluded || self.ignore.has_exceptions() {
                    self.files_under(&path, out);
                }
            } else if !excluded {
                out.push(path);
            }
        }
    }

    /// Copies context path `from` (a file, symlink or directory) to `to`.
    fn copy(&self, from: &str, to: &Path) {
        let source = self.root.join(from);
        let meta = source.symlink_metadata().unwrap();
        if meta.is_dir() {
            let mut files = Vec::new();
            self.files_under(from, &mut files);
            for file in files {
                let relative = file.strip_prefix(from).unwrap().trim_start_matches('/');
                self.copy(&file, &to.join(relative));
            }
            std::fs::create_dir_all(to).unwrap();
        } else {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&source).unwrap(), to).unwrap();
            } else {
                std::fs::copy(&source, to).unwrap();
            }
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// A Dockerfile instruction: keyword (upper case) and its arguments, with
/// line continuations joined and comments dropped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(start) = trimmed.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (keyword, args) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
        pending.clear();
    }
    out
}

/// What the stage that runs `cargo build` copies from the context:
/// `(sources, destination)` with the destination made absolute, and the
/// WORKDIR that `cargo build` runs in.
struct BuildStage {
    copies: Vec<(Vec<String>, String)>,
    workdir: String,
    cargo_build: String,
}

fn build_stage(dockerfile: &str) -> BuildStage {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions(dockerfile) {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push(instruction);
    }
    let builds: Vec<_> = stages
        .iter()
        .filter(|s| {
            s.iter()
                .any(|(k, a)| k == "RUN" && a.contains("cargo build"))
        })
        .collect();
    assert_eq!(builds.len(), 1, "exactly one stage runs cargo build");
    let mut workdir = "/".to_owned();
    let mut copies = Vec::new();
    let mut cargo_build = None;
    for (keyword, args) in builds[0] {
        let absolute = |path: &str, workdir: &str| {
            if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("{}/{path}", workdir.trim_end_matches('/'))
            }
        };
        match keyword.as_str() {
            "WORKDIR" => workdir = absolute(args, &workdir),
            "COPY" | "ADD" => {
                let mut words: Vec<String> = if args.starts_with('[') {
                    serde_json::from_str(args).expect("COPY in JSON form")
                } else {
                    args.split_whitespace().map(str::to_owned).collect()
                };
                let flags: Vec<String> = words.extract_if(.., |w| w.starts_with("--")).collect();
                if flags.iter().any(|f| f.starts_with("--from")) {
                    continue; // from another stage or image, not the context
                }
                assert_eq!(keyword, "COPY", "ADD is not modelled; use COPY");
                let raw = words.pop().expect("COPY destination");
                assert!(!words.is_empty(), "COPY without a source");
                // `.` and `dir/` name a directory; keep that as a trailing `/`.
                let mut destination = match raw.trim_end_matches('/') {
                    "" if raw.starts_with('/') => "/".to_owned(),
                    "." | "" => workdir.clone(),
                    path => absolute(path.trim_start_matches("./"), &workdir),
                };
                if (raw.ends_with('/') || raw == ".") && !destination.ends_with('/') {
                    destination.push('/');
                }
                copies.push((words, destination));
            }
            "RUN" if args.contains("cargo build") && cargo_build.is_none() => {
                cargo_build = Some((args.clone(), workdir.clone()));
            }
            _ => {}
        }
    }
    let (cargo_build, workdir) = cargo_build.unwrap();
    BuildStage {
        copies,
        workdir,
        cargo_build,
    }
}

/// Lays out in `root` what the build stage's `COPY` lines put in its
/// filesystem (Docker's rules: a directory's contents go into the
/// destination; a file goes to the destination, or into it when the
/// destination ends with `/` or there are several sources).
fn materialise(stage: &BuildStage, context: &Context, root: &Path) {
    for (sources, destination) in &stage.copies {
        let into_dir = destination.ends_with('/') || sources.len() > 1;
        let target = root.join(destination.trim_start_matches('/'));
        for source in sources {
            let matches = context.resolve(source);
            assert!(
                !matches.is_empty(),
                "COPY {source}: not in the build context (missing, or excluded by .dockerignore)"
            );
            for path in matches {
                let is_dir = path.is_empty() || context.root.join(&path).is_dir();
                if is_dir {
                    context.copy(&path, &target);
                } else if into_dir {
                    let name = path.rsplit('/').next().unwrap();
                    context.copy(&path, &target.join(name));
                } else {
                    context.copy(&path, &target);
                }
            }
        }
    }
}

/// The suite's own target dir: the ancestor of this test binary that
/// holds `debug/` (…/target/debug/deps/api-…).
fn suite_target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|dir| dir.file_name().is_some_and(|n| n == "debug"))
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no debug/ above {}", exe.display()))
        .to_owned()
}

#[test]
fn dockerignore_matches_like_docker() {
    let ignore = DockerIgnore::parse(
        "# comment\n/target/\n*.eml\n**/node_modules\ndocs/*.md\n!docs/keep.md\nkeys\n",
    );
    for excluded in [
        "target",
        "target/debug/tessera",
        "a.eml",
        "node_modules/x",
        "tests/browser/node_modules/y/z.js",
        "docs/api.md",
        "keys/abc.pem",
    ] {
        assert!(ignore.excludes(excluded), "{excluded}");
    }
    for kept in [
        "src/target.rs",
        "data/mail/a.eml",
        "docs/keep.md",
        "docs/img/login.png",
        "keysmith",
        "Cargo.toml",
    ] {
        assert!(!ignore.excludes(kept), "{kept}");
    }
}

#[test]
fn the_docker_build_stage_has_everything_cargo_needs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stage = build_stage(&repo_file("Dockerfile"));
    assert!(
        stage.cargo_build.contains("--locked") && stage.cargo_build.contains("--bin tessera"),
        "the image builds the tessera binary from the lock file: {}",
        stage.cargo_build
    );
    let context = Context::new(repo);
    for secret in ["keys", "data", ".env", "target", ".git"] {
        assert!(
            context.ignore.excludes(secret),
            "{secret} must stay out of the build context"
        );
    }

    // A fixed scratch dir under the target dir: the same workspace path on
    // every run, so cargo reuses its own earlier results instead of piling
    // up a fresh set of artifacts per run.
    let target = suite_target_dir();
    let root = target.join("tmp/docker-build-stage");
    if root.exists() {
        std::fs::remove_dir_all(&root).unwrap();
    }
    materialise(&stage, &context, &root);
    let workdir = root.join(stage.workdir.trim_start_matches('/'));
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Not the variables cargo sets for this test process: build scripts
    // track some (ring's reads CARGO_MANIFEST_DIR), and seeing them would
    // make the next ordinary build of the suite rebuild those crates.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        let set_for_tests = name_text.starts_with("CARGO_PKG_")
            || name_text.starts_with("CARGO_BIN_")
            || matches!(
                &*name_text,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if set_for_tests {
            cargo.env_remove(&name);
        }
    }
    let output = cargo
        .current_dir(&workdir)
        .args(["check", "--locked", "--offline", "--bin", "tessera"])
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_INCREMENTAL", "0")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo check in the Docker build stage's files failed; the Dockerfile's COPY lines \
         (with .dockerignore) leave out something the manifest needs:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&root);
}

// --- The documentation -----------------------------------------------------

#[test]
fn the_readme_configuration_table_lists_every_setting() {
    let readme = repo_file("README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("a Configuration section")
        .split("\n## ")
        .next()
        .unwrap();
    // The first column of the table's rows.
    let first_column: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .collect();
    let documented = variables_in(&first_column.join(" "));
    let settings = settings();
    for name in &settings {
        if name == "TESSERA_CONFIG_FILE" {
            assert!(section.contains(name), "the section names {name}");
        } else {
            assert!(documented.contains(name), "README's table lacks {name}");
        }
    }
    for name in &documented {
        assert!(
            settings.contains(name),
            "README documents {name}, not a setting"
        );
    }
}

/// README and docs/ point at nothing outside the repository, and every
/// relative link resolves.
#[test]
fn the_docs_stand_on_their_own() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![repo.join("README.md")];
    for entry in std::fs::read_dir(repo.join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            files.push(entry.path());
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(repo).unwrap().display().to_string();
        assert!(
            !text.contains("../shared"),
            "{name} points at ../shared, outside the repository"
        );
        for (start, _) in text.match_indices("](") {
            let target = &text[start + 2..];
            let target = &target[..target.find(')').unwrap_or(target.len())];
            let path = target.split('#').next().unwrap();
            if path.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = file.parent().unwrap().join(path);
            assert!(
                resolved.exists(),
                "{name} links to {target}, which does not exist"
            );
            assert!(
                resolved.canonicalize().unwrap().starts_with(repo),
                "{name} links to {target}, outside the repository"
            );
        }
    }
}
