//! Code-health checks on the source tree itself:
//!
//! - the top-level modules of `src/` (crypto, domain, http, store, …) form
//!   layers: no module may reach back, through `crate::…` paths, to a module
//!   that reaches it (no dependency cycle); the same for the files and
//!   folders of `src/http/`;
//! - no file in `src/` is over 600 lines.
//!
//! References are read from the text: `crate::x`, `use crate::{x, y::z}`,
//! and for `src/http/` also `crate::http::x` and `super::x` (from a file of
//! `src/http/`) or `super::super::x` (from a file of `src/http/<dir>/`).
//! Comments, string literals and `#[cfg(test)]` modules are skipped; the
//! crate root (`lib.rs`, `main.rs`) and a folder's own `mod.rs` wire
//! everything together and are no layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a file of `src/` may have.
const MAX_LINES: usize = 600;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The Rust files under `dir` with their code: comments, string and char
/// literals blanked out, `#[cfg(test)]` modules removed.
fn rust_sources(dir: &Path) -> Vec<(PathBuf, String)> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable source file");
            let code = without_test_modules(&code_only(&text));
            (p, code)
        })
        .collect()
}

/// `text` with comments and literals replaced by spaces (newlines kept, so
/// line numbers still match).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let closes =
                |k: usize| chars[k] == '"' && (1..=hashes).all(|h| chars.get(k + h) == Some(&'#'));
            while j < chars.len() && !closes(j) {
                j += 1;
            }
            let end = (j + 1 + hashes).min(chars.len());
            out.extend(chars[i..end].iter().map(|c| blank(*c)));
            i = end;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(chars.len());
            out.extend(chars[i..end].iter().map(|c| blank(*c)));
            i = end;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}'), or a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..chars.len())
                    .find(|&k| chars[k] == '\'')
                    .map(|k| k + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.extend(chars[i..end].iter().map(|c| blank(*c)));
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` without its `#[cfg(test)] mod name { … }` blocks (their `super`
/// is the file itself, and test code is no layer). Newlines are kept.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_owned();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]").map(|at| at + from) {
        let rest = &out[at + "#[cfg(test)]".len()..];
        let trimmed = rest.trim_start();
        if !trimmed.starts_with("mod ") {
            from = at + 1;
            continue;
        }
        let Some(open) = rest.find(['{', ';']) else {
            break;
        };
        let open = at + "#[cfg(test)]".len() + open;
        let mut end = open + 1;
        if out.as_bytes()[open] == b'{' {
            let mut depth = 0;
            for (k, b) in out.bytes().enumerate().skip(open) {
                match b {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = k + 1;
                    break;
                }
            }
        }
        let blanked: String = out[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..end, &blanked);
        from = at + blanked.len();
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first path segments after every occurrence of `prefix` (which ends
/// in `::`) in `code`, with the line they are on. `prefix::{a, b::c}` gives
/// `a` and `b`.
fn segments_after(code: &str, prefix: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix).map(|at| at + from) {
        from = at + prefix.len();
        // `crate::` must not be the tail of a longer path (`foo::crate::`
        // cannot occur, but `super::` may be preceded by `super::`).
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if depth == 0 {
                    items.push(std::mem::take(&mut item));
                    break;
                }
                if depth == 1 && c != ',' {
                    item.push(c);
                }
            }
            for item in items {
                let name: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
                if !name.is_empty() {
                    found.push((name, line));
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                found.push((name, line));
            }
        }
    }
    found
}

/// Who references whom, with where: `from → to → ["src/x.rs:12", …]`.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn add_edge(graph: &mut Graph, from: &str, to: &str, file: &Path, line: usize) {
    if from == to {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shown = file.strip_prefix(root).unwrap_or(file).display();
    graph
        .entry(from.to_owned())
        .or_default()
        .entry(to.to_owned())
        .or_default()
        .push(format!("{shown}:{line}"));
}

/// The layer a path under `base` belongs to: the name of the file or folder
/// directly in `base` (`None` for `base`'s own `mod.rs`/`lib.rs`/`main.rs`).
fn layer_of(base: &Path, file: &Path) -> Option<(String, usize)> {
    let relative = file.strip_prefix(base).ok()?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let first = parts.first()?;
    if parts.len() == 1 {
        let stem = first.strip_suffix(".rs")?;
        if matches!(stem, "mod" | "lib" | "main") {
            return None;
        }
        return Some((stem.to_owned(), 0));
    }
    // How deep below the layer's own module the file's module is.
    let depth = parts.len() - 1 - usize::from(parts.last().is_some_and(|p| p == "mod.rs"));
    Some((first.clone(), depth))
}

/// The layers directly in `dir`: each `x.rs` and each folder `x/`.
fn layers_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("readable source dir")
        .filter_map(|e| {
            let path = e.expect("dir entry").path();
            let name = path.file_name()?.to_string_lossy().into_owned();
            if path.is_dir() {
                Some(name)
            } else {
                let stem = name.strip_suffix(".rs")?;
                (!matches!(stem, "mod" | "lib" | "main")).then(|| stem.to_owned())
            }
        })
        .collect()
}

/// The top-level modules of `src/` and who references whom.
fn top_level_graph() -> Graph {
    let src = src_dir();
    let layers = layers_in(&src);
    let mut graph = Graph::new();
    for (file, code) in rust_sources(&src) {
        let Some((from, depth)) = layer_of(&src, &file) else {
            continue;
        };
        let mut targets = segments_after(&code, "crate::");
        // `super::` from a layer's own top file leaves the layer.
        let up = format!("{}::", "super::".repeat(depth + 1));
        targets.extend(segments_after(&code, &up));
        for (to, line) in targets {
            if layers.contains(&to) {
                add_edge(&mut graph, &from, &to, &file, line);
            }
        }
    }
    graph
}

/// The files and folders of `src/http/` and who references whom.
fn http_graph() -> Graph {
    let http = src_dir().join("http");
    let layers = layers_in(&http);
    let mut graph = Graph::new();
    for (file, code) in rust_sources(&http) {
        let Some((from, depth)) = layer_of(&http, &file) else {
            continue;
        };
        let mut targets = segments_after(&code, "crate::http::");
        // From a file directly in `src/http/`, `super::` is `http`; one
        // folder deeper, `super::super::`.
        targets.extend(segments_after(&code, &"super::".repeat(depth + 1)));
        for (to, line) in targets {
            if layers.contains(&to) {
                add_edge(&mut graph, &from, &to, &file, line);
            }
        }
    }
    graph
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, node: &'a str) {
        let n = s.index.len();
        s.index.insert(node, n);
        s.low.insert(node, n);
        s.stack.push(node);
        s.on_stack.insert(node);
        let graph = s.graph;
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            let next = next.as_str();
            if !s.index.contains_key(next) {
                visit(s, next);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            while let Some(top) = s.stack.pop() {
                s.on_stack.remove(top);
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found.sort();
    state.found
}

/// The shortest path of `graph` from `start` back to `start` (breadth
/// first), as the nodes it goes through: `[a, b, a]`.
fn shortest_cycle(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            let next = next.as_str();
            if next == start {
                let mut path = vec![start.to_owned(), node.to_owned()];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    path.push(at.to_owned());
                }
                path.reverse();
                return Some(path);
            }
            if next != start && !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// Every cycle of `graph`: the modules caught in it, the shortest cycle
/// through each, and the references that make it up.
fn report(what: &str, graph: &Graph) -> Option<String> {
    let found = cycles(graph);
    if found.is_empty() {
        return None;
    }
    let mut text = format!("{} dependency cycle(s) among {what}:\n", found.len());
    for component in found {
        text.push_str(&format!("\n  cycle between {}:\n", component.join(", ")));
        let mut shown = BTreeSet::new();
        for node in &component {
            let Some(path) = shortest_cycle(graph, node) else {
                continue;
            };
            // The same cycle from another start is the same cycle.
            let mut key = path[1..].to_vec();
            key.sort();
            if shown.insert(key) {
                text.push_str(&format!("    {}\n", path.join(" -> ")));
            }
        }
        text.push_str("  through:\n");
        for from in &component {
            for (to, places) in &graph[from] {
                if component.contains(to) {
                    let shown: Vec<&str> = places.iter().take(4).map(String::as_str).collect();
                    let more = places.len().saturating_sub(shown.len());
                    let more = if more > 0 {
                        format!(" (+{more} more)")
                    } else {
                        String::new()
                    };
                    text.push_str(&format!("    {from} -> {to}: {}{more}\n", shown.join(", ")));
                }
            }
        }
    }
    Some(text)
}

#[test]
fn the_top_level_modules_and_the_http_files_form_layers_without_cycles() {
    let reports: Vec<String> = [
        report("the top-level modules of src/", &top_level_graph()),
        report("the files of src/http/", &http_graph()),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(reports.is_empty(), "\n{}", reports.join("\n"));
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = files_under(&src_dir())
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let lines = text.lines().count();
            (lines > MAX_LINES).then(|| format!("  {} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines: split them by concern\n{}",
        long.join("\n")
    );
}

/// The checker itself, on small inputs.
#[test]
fn the_reference_reader_sees_paths_and_groups_but_not_comments_or_strings() {
    let code = code_only(
        "use crate::{a, b::c, d::{e, f}};\n\
         // crate::commented\n\
         let s = \"crate::quoted\"; let r = r#\"crate::raw\"#; let c = '\"';\n\
         crate::g::h(); x::crate::no; super::super::i::j;\n\
         #[cfg(test)]\nmod tests { use crate::tested; }\n",
    );
    let code = without_test_modules(&code);
    let names: Vec<(String, usize)> = segments_after(&code, "crate::");
    let names: Vec<(&str, usize)> = names.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    assert_eq!(names, [("a", 1), ("b", 1), ("d", 1), ("g", 4)]);
    let up = segments_after(&code, "super::super::");
    assert_eq!(up, [("i".to_owned(), 4)]);
    let mut graph = Graph::new();
    let file = Path::new("x.rs");
    add_edge(&mut graph, "a", "b", file, 1);
    add_edge(&mut graph, "b", "c", file, 2);
    add_edge(&mut graph, "c", "a", file, 3);
    add_edge(&mut graph, "c", "d", file, 4);
    assert_eq!(cycles(&graph), [vec!["a", "b", "c"]]);
    let text = report("test", &graph).expect("a cycle");
    assert!(text.contains("a -> b -> c -> a"), "{text}");
    assert!(text.contains("c -> a: x.rs:3"), "{text}");
}
