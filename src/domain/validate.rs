//! Input rules shared by the user endpoints. Each function returns the
//! normalised value or the message for the field (never echoing the input).

use crate::crypto::password::{PASSWORD_BYTES, password_length_ok};
use crate::domain::FieldErrors;

/// Trims and lower-cases an email and checks its shape. Deliberately
/// permissive (RFC 5321 lengths, one `@`, a dotted domain): the only real
/// validation of an address is mail reaching it.
pub fn email(raw: &str) -> Result<String, &'static str> {
    let email = raw.trim().to_lowercase();
    let Some((local, domain)) = email.split_once('@') else {
        return Err("must be an email address");
    };
    let shape_ok = !local.is_empty()
        && local.len() <= 64
        && email.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if shape_ok {
        Ok(email)
    } else {
        Err("must be an email address")
    }
}

/// 8 to 72 bytes: bcrypt ignores what follows byte 72, so longer is refused.
pub fn password(raw: &str) -> Result<(), String> {
    if password_length_ok(raw) {
        Ok(())
    } else {
        Err(format!(
            "must be {} to {} bytes long",
            PASSWORD_BYTES.start(),
            PASSWORD_BYTES.end()
        ))
    }
}

/// A first or last name: trimmed, 1 to 100 characters, no control characters.
pub fn name(raw: &str) -> Result<String, &'static str> {
    bounded_text(raw, 100).ok_or("must be 1 to 100 characters without control characters")
}

/// Free text, 1 to 32 characters (the original service stored what it was given).
pub fn gender(raw: &str) -> Result<String, &'static str> {
    bounded_text(raw, 32).ok_or("must be 1 to 32 characters without control characters")
}

/// An E.164 number: `+`, a non-zero country digit, at most 15 digits in all.
pub fn mobile(raw: &str) -> Result<String, &'static str> {
    let number = raw.trim();
    let digits = number.strip_prefix('+').unwrap_or("");
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(number.to_owned())
    } else {
        Err("must be an E.164 number such as +14155552671")
    }
}

fn bounded_text(raw: &str, max_chars: usize) -> Option<String> {
    let text = raw.trim();
    let count = text.chars().count();
    ((1..=max_chars).contains(&count) && !text.chars().any(char::is_control))
        .then(|| text.to_owned())
}

/// Collects per-field results into one error map.
#[derive(Default)]
pub struct Checks {
    errors: FieldErrors,
}

impl Checks {
    /// Runs `rule` on `value`, remembering the message under `field`.
    pub fn check<T, E: ToString>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.errors.insert(field.to_owned(), message.to_string());
                None
            }
        }
    }

    /// The collected errors, if any.
    pub fn finish(self) -> Result<(), FieldErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            email("  Alice@Example.COM "),
            Ok("alice@example.com".into())
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@example.com",
            "alice@.example.com",
            "alice@example..com",
        ] {
            assert!(email(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn mobiles_are_e164() {
        assert_eq!(mobile("+14155552671"), Ok("+14155552671".into()));
        for bad in [
            "14155552671",
            "+0123",
            "+1",
            "+1234567890123456",
            "+1 415 555",
            "+abc",
            "",
        ] {
            assert!(mobile(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(name("  Zoë "), Ok("Zoë".into()));
        assert!(name("   ").is_err());
        assert!(name(&"x".repeat(101)).is_err());
        assert!(name("a\u{0000}b").is_err());
        assert!(gender(&"x".repeat(33)).is_err());
    }
}
