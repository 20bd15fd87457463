//! Scope strings (RFC 6749 §3.3), parsed with oxide-auth's `Scope` and
//! written back in one canonical order.

use std::str::FromStr;

use oxide_auth::primitives::scope::Scope;

/// Parses a space-separated scope; `None` when it holds a character RFC 6749
/// §3.3 forbids or is empty.
pub fn parse(raw: &str) -> Option<Scope> {
    let scope = Scope::from_str(raw).ok()?;
    let non_empty = scope.iter().next().is_some();
    non_empty.then_some(scope)
}

/// Sorted, space-separated: the same grant always prints the same string.
pub fn canonical(scope: &Scope) -> String {
    let mut tokens: Vec<&str> = scope.iter().collect();
    tokens.sort_unstable();
    tokens.join(" ")
}

/// The scope to grant for `requested` out of `allowed`: all of `allowed`
/// when nothing is requested, `None` when the request asks for more.
pub fn narrow(requested: Option<&str>, allowed: &str) -> Option<String> {
    let allowed = Scope::from_str(allowed).ok()?;
    match requested {
        None => Some(canonical(&allowed)),
        Some(raw) => {
            let requested = parse(raw)?;
            // `<=` on oxide-auth scopes is the subset relation.
            (requested <= allowed).then(|| canonical(&requested))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_never_widens() {
        assert_eq!(narrow(None, "b a"), Some("a b".into()));
        assert_eq!(narrow(Some("a"), "a b"), Some("a".into()));
        assert_eq!(narrow(Some("a c"), "a b"), None);
        assert_eq!(narrow(Some(""), "a b"), None);
        assert_eq!(narrow(Some("a\"b"), "a b"), None);
    }
}
