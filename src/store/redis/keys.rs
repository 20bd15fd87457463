//! The key layout. Every key names the id it belongs to as a hash tag, so
//! the keys one script, transaction or pipeline touches share a slot.

use crate::crypto::secret::TokenHash;
use crate::store::OtpPurpose;

pub(super) fn family_key(fid: &str) -> String {
    format!("tessera:fam:{{{fid}}}")
}

pub(super) fn family_tokens_key(fid: &str) -> String {
    format!("tessera:fam:{{{fid}}}:tok")
}

pub(super) fn user_families_key(uid: &str) -> String {
    format!("tessera:user:{{{uid}}}:fams")
}

/// The user's credential epoch. (The name is older than the epoch: the key
/// held a whole-second "not before" mark, which `stored_epoch` still reads.)
pub(super) fn user_epoch_key(uid: &str) -> String {
    format!("tessera:user:{{{uid}}}:nbf")
}

pub(super) fn revoked_access_key(jti: &str) -> String {
    format!("tessera:at:{{{jti}}}")
}

pub(super) fn consents_key(uid: &str) -> String {
    format!("tessera:user:{{{uid}}}:consents")
}

/// A user's one-time code of one purpose. Password-reset codes keep the
/// key they had before purposes existed.
pub(super) fn otp_key(uid: &str, purpose: OtpPurpose) -> String {
    match purpose {
        OtpPurpose::PasswordReset => format!("tessera:user:{{{uid}}}:otp"),
        other => format!("tessera:user:{{{uid}}}:otp:{}", other.as_str()),
    }
}

pub(super) fn counter_key(key: &str, bucket: i64) -> String {
    format!("tessera:count:{{{key}}}:{bucket}")
}

pub(super) fn code_key(hash: &TokenHash) -> String {
    format!("tessera:code:{{{}}}", hash.as_str())
}

/// The families of one sign-in (browser) session, for `/logout`.
pub(super) fn session_families_key(sid: &str) -> String {
    format!("tessera:sess:{{{sid}}}:fams")
}

/// The families of one client, for revoking them when the client is deleted.
pub(super) fn client_families_key(cid: &str) -> String {
    format!("tessera:client:{{{cid}}}:fams")
}

/// A DPoP proof already seen (`key`: a digest of its key and `jti`).
pub(super) fn dpop_proof_key(key: &str) -> String {
    format!("tessera:dpop:{{{key}}}")
}

/// A pushed authorization request (RFC 9126), by its `request_uri`'s hash.
pub(super) fn pushed_key(hash: &TokenHash) -> String {
    format!("tessera:par:{{{}}}", hash.as_str())
}
