//! Compact encodings of the family hash's values and of the user index's
//! fields (issue #22: bytes per family). Each packed form is told apart
//! from the plain text an older version wrote, so both are read:
//!
//! - an id (user, family, session) of 24 lowercase hex digits, as Tessera
//!   and MongoDB make them, is its 12 raw bytes; any other id is its text,
//!   after a 0x00 byte if it is itself 12 bytes long (so that no text is
//!   read as raw bytes); an id holding a NUL byte is refused;
//! - a scope made only of the names in [`SCOPE_NAMES`], in their canonical
//!   order, is 0x01 and one byte with a bit per name; any other scope is
//!   its text, after a 0x00 byte if it starts with 0x00 or 0x01 (a valid
//!   scope never does, RFC 6749 §3.3);
//! - the built-in first-party client is left out of the family hash
//!   ([`BUILT_IN_CLIENT`]).
//!
//! These are storage formats: never reorder [`SCOPE_NAMES`] (append only,
//! up to 8), never change [`BUILT_IN_CLIENT`].

use super::corrupt;
use crate::store::StoreError;

/// The client a family hash without `c` belongs to: the built-in
/// first-party client (`domain::tokens::FIRST_PARTY_CLIENT_ID`, which a
/// test holds equal), whose families are most of them.
pub(super) const BUILT_IN_CLIENT: &str = "tessera";

/// The scope names a packed scope's bits stand for, bit 0 first. In
/// alphabetical order, so the names of a mask come out canonical.
const SCOPE_NAMES: [&str; 8] = [
    "account",
    "address",
    "admin",
    "email",
    "offline_access",
    "openid",
    "phone",
    "profile",
];

const TEXT: u8 = 0x00;
const SCOPE_MASK: u8 = 0x01;

/// An id as stored: 12 raw bytes for 24 lowercase hex digits. Ids with a
/// NUL byte are refused (none is ever made): a tagged text of 11 such
/// bytes would read back as raw bytes.
pub(super) fn pack_id(id: &str) -> Result<Vec<u8>, StoreError> {
    let mut raw = [0u8; 12];
    if id.len() == 24
        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && hex::decode_to_slice(id, &mut raw).is_ok()
    {
        return Ok(raw.to_vec());
    }
    if id.contains('\0') {
        return Err(StoreError::Internal {
            backend: super::BACKEND,
            reason: "an id holds a NUL byte".into(),
        });
    }
    Ok(tagged_text(id, id.len() == 12))
}

/// An id as [`pack_id`] stored it, or as plain text (older versions).
pub(super) fn unpack_id(stored: &[u8], what: &str) -> Result<String, StoreError> {
    match stored {
        raw if raw.len() == 12 => Ok(hex::encode(raw)),
        [TEXT, text @ ..] => utf8(text, what),
        text => utf8(text, what),
    }
}

/// A scope as stored: two bytes when every name is in [`SCOPE_NAMES`] and
/// the scope is written as they would be written back.
pub(super) fn pack_scope(scope: &str) -> Vec<u8> {
    if let Some(mask) = scope_mask(scope) {
        return vec![SCOPE_MASK, mask];
    }
    tagged_text(
        scope,
        matches!(scope.as_bytes().first(), Some(&(TEXT | SCOPE_MASK))),
    )
}

/// A scope as [`pack_scope`] stored it, or as plain text (older versions).
pub(super) fn unpack_scope(stored: &[u8], what: &str) -> Result<String, StoreError> {
    match stored {
        [SCOPE_MASK, mask] => Ok(scope_names(*mask)),
        [SCOPE_MASK, ..] => Err(corrupt(what)),
        [TEXT, text @ ..] => utf8(text, what),
        text => utf8(text, what),
    }
}

/// The bits of `scope` if it packs exactly (its names, canonical, come
/// back as the same string).
fn scope_mask(scope: &str) -> Option<u8> {
    let mut mask = 0u8;
    for name in scope.split(' ') {
        let bit = SCOPE_NAMES.iter().position(|known| *known == name)?;
        mask |= 1 << bit;
    }
    (mask != 0 && scope_names(mask) == scope).then_some(mask)
}

fn scope_names(mask: u8) -> String {
    SCOPE_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(" ")
}

fn tagged_text(text: &str, tag: bool) -> Vec<u8> {
    let mut stored = Vec::with_capacity(text.len() + 1);
    if tag {
        stored.push(TEXT);
    }
    stored.extend_from_slice(text.as_bytes());
    stored
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| corrupt(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_back_whatever_their_shape() {
        for id in [
            "65a1b2c3d4e5f60718293a4b",
            "65A1B2C3D4E5F60718293A4B",
            "twelve-chars",
            "eleven char",
            "",
            "a-uuid-1b4e28ba-2fa1-11d2-883f-0016a3b4c5d6",
            "ünïcödé",
        ] {
            assert_eq!(unpack_id(&pack_id(id).unwrap(), "t").unwrap(), id, "{id:?}");
        }
        assert_eq!(pack_id("65a1b2c3d4e5f60718293a4b").unwrap().len(), 12);
        assert_eq!(pack_id("twelve-chars").unwrap().len(), 13);
        // 11 bytes after a tag would read back as raw bytes: refused.
        assert!(pack_id("\0abcdefghij").is_err());
        assert!(pack_id("a\0b").is_err());
    }

    #[test]
    fn ids_written_as_text_by_older_versions_read_back() {
        let old = b"65a1b2c3d4e5f60718293a4b";
        assert_eq!(unpack_id(old, "t").unwrap(), "65a1b2c3d4e5f60718293a4b");
    }

    #[test]
    fn scopes_come_back_whatever_their_shape() {
        for scope in [
            "account email openid phone profile",
            "account admin email openid phone profile",
            "email offline_access openid profile",
            "openid",
            "profile openid",
            "openid openid",
            "openid read:orders",
            "",
            " ",
            "openid  profile",
            "\u{1}x",
            "\0x",
        ] {
            assert_eq!(
                unpack_scope(&pack_scope(scope), "t").unwrap(),
                scope,
                "{scope:?}"
            );
        }
        assert_eq!(pack_scope("account email openid phone profile").len(), 2);
        assert_eq!(pack_scope("profile openid"), b"profile openid");
    }

    #[test]
    fn a_mask_with_extra_bytes_is_corrupt() {
        assert!(unpack_scope(&[SCOPE_MASK, 1, 2], "t").is_err());
    }

    #[test]
    fn the_omitted_client_is_the_built_in_one() {
        assert_eq!(
            BUILT_IN_CLIENT,
            crate::domain::tokens::FIRST_PARTY_CLIENT_ID
        );
    }
}
