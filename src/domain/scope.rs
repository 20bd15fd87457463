//! Scope strings (RFC 6749 §3.3), parsed with oxide-auth's `Scope` and
//! written back in one canonical order.

use std::str::FromStr;

use oxide_auth::primitives::scope::Scope;

pub const OPENID: &str = "openid";
pub const PROFILE: &str = "profile";
pub const EMAIL: &str = "email";
pub const PHONE: &str = "phone";
pub const OFFLINE_ACCESS: &str = "offline_access";
/// Change the user's own account (profile, mobile, password, sessions).
pub const ACCOUNT: &str = "account";
/// The admin API, for users whose role is admin when the token is issued.
pub const ADMIN: &str = "admin";

/// Every scope the server itself gives a meaning (the metadata document).
pub const SUPPORTED: &[&str] = &[
    OPENID,
    PROFILE,
    EMAIL,
    PHONE,
    OFFLINE_ACCESS,
    ACCOUNT,
    ADMIN,
];

/// Scopes that only first-party clients may be registered with: a third
/// party must never change an account or administer the server.
pub const FIRST_PARTY_ONLY: &[&str] = &[ACCOUNT, ADMIN];

/// The role that may hold the `admin` scope.
pub const ADMIN_ROLE: &str = "admin";

/// What a password login through the user API (the built-in first-party
/// client) grants a user with `role`, canonical.
pub fn login_scope(role: &str) -> &'static str {
    if role == ADMIN_ROLE {
        "account admin email openid phone profile"
    } else {
        "account email openid phone profile"
    }
}

/// `scope` as it may be issued now: without `admin` unless `role` is admin
/// (decided at issue time, so a demoted admin's next token no longer
/// carries it), and without `account` and `admin` for a client that is not
/// first-party (whatever it was registered with before the rule existed).
pub fn for_client(scope: &str, first_party: bool, role: &str) -> String {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .filter(|s| first_party || !FIRST_PARTY_ONLY.contains(s))
        .filter(|s| *s != ADMIN || role == ADMIN_ROLE)
        .collect::<Vec<_>>()
        .join(" ")
}

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

    #[test]
    fn admin_only_for_admins() {
        assert_eq!(
            for_client("account admin email", true, "user"),
            "account email"
        );
        assert_eq!(
            for_client("account admin email", true, ADMIN_ROLE),
            "account admin email"
        );
        // A third party never gets them, whatever it was registered with.
        assert_eq!(
            for_client("account admin email", false, ADMIN_ROLE),
            "email"
        );
        assert!(!login_scope("user").split(' ').any(|s| s == ADMIN));
        assert!(login_scope(ADMIN_ROLE).split(' ').any(|s| s == ADMIN));
        assert_eq!(
            narrow(None, login_scope(ADMIN_ROLE)).as_deref(),
            Some(login_scope(ADMIN_ROLE))
        );
    }
}
