//! Keyset pagination for the admin listings: a page, its limit, and opaque
//! cursors. A cursor is base64url of a JSON array of strings (the keyset
//! position); it is hostile input like any other and decodes to a field
//! error, never a panic or a 500.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::DomainError;

/// Items per page when none is asked for.
pub const DEFAULT_LIMIT: usize = 50;
/// The most items one page may hold.
pub const MAX_LIMIT: usize = 100;
/// Cursors are short; anything longer is not one of ours.
const MAX_CURSOR_LEN: usize = 1024;

/// One page and where the next one starts (`None` on the last page).
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The page size: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn limit(raw: Option<&str>) -> Result<usize, DomainError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(DomainError::field(
            "limit",
            "must be an integer from 1 to 100",
        )),
    }
}

/// The cursor of a keyset position.
pub fn encode_cursor(position: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

/// The keyset position of a cursor with `parts` strings, or a field error.
pub fn decode_cursor(raw: &str, parts: usize) -> Result<Vec<String>, DomainError> {
    let invalid = || DomainError::field("cursor", "is not a cursor of this listing");
    if raw.len() > MAX_CURSOR_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let position: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if position.len() != parts {
        return Err(invalid());
    }
    Ok(position)
}

/// Splits `limit + 1` rows into a page: the extra row only says that
/// another page exists, and the last row shown is where it starts.
pub fn paginate<T>(mut rows: Vec<T>, limit: usize, position: impl Fn(&T) -> String) -> Page<T> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(position(last)),
        _ => None,
    };
    Page {
        items: rows,
        next_cursor,
    }
}

/// Whether `id` has the shape of our ids (24 lower-case hex digits). Upper
/// case is refused: MongoDB would parse it to the same user, but the token
/// store keys everything by the id as written, so a change made under an
/// upper-case id would move an epoch that belongs to nobody.
pub fn is_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_hostile_ones_are_field_errors() {
        let cursor = encode_cursor(&["a@example.com", "0123456789abcdef01234567"]);
        assert_eq!(
            decode_cursor(&cursor, 2).unwrap(),
            vec!["a@example.com", "0123456789abcdef01234567"]
        );
        for hostile in [
            "",
            "!!!",
            "bnVsbA",
            &"A".repeat(5000),
            &encode_cursor(&["x"]),
        ] {
            assert!(matches!(
                decode_cursor(hostile, 2),
                Err(DomainError::Validation(_))
            ));
        }
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "x", "99999999999999999999999"] {
            assert!(limit(Some(bad)).is_err());
        }
    }
}
