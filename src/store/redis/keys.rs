//! The key layout. Every key names the id it belongs to as a hash tag, so
//! the keys one script, transaction or pipeline touches share a slot.
//!
//! A family is one small hash, `tf{fid}` (see `scripts/upgrade.lua` for its
//! fields, `packed.rs` for their encodings); its indexes cost a few dozen
//! bytes per family: a hash field in `tu{uid}` naming its session, and 12
//! bytes appended to a day bucket `tc{cid}:<day>`. The `legacy_*` keys, and
//! `ts{sid}`, are the layout of older versions, read (and moved to the
//! compact one) as they are met; they share their hash tag with the new
//! keys, so one script still touches one slot.

use crate::crypto::secret::TokenHash;
use crate::store::OtpPurpose;

/// A family: one hash. 28 characters for a 24-digit id, so the key's
/// string fits jemalloc's 32-byte class.
pub(super) fn family_key(fid: &str) -> String {
    format!("tf{{{fid}}}")
}

/// The hash of a family as older versions wrote it.
pub(super) fn legacy_family_key(fid: &str) -> String {
    format!("tessera:fam:{{{fid}}}")
}

/// Every token digest of a family as older versions kept them.
pub(super) fn legacy_family_tokens_key(fid: &str) -> String {
    format!("tessera:fam:{{{fid}}}:tok")
}

/// The three keys of every family script: the family, and the old layout's
/// two keys it is moved from if it is still there.
pub(super) fn family_script_keys(fid: &str) -> [String; 3] {
    [
        family_key(fid),
        legacy_family_key(fid),
        legacy_family_tokens_key(fid),
    ]
}

/// A user's families: a hash (packed family id → packed session id, empty
/// when the family is its own session), so a small one is a listpack
/// (~20 bytes a family). Older versions wrote the family id as text, with
/// an empty value (the session was in `ts{sid}`).
pub(super) fn user_families_key(uid: &str) -> String {
    format!("tu{{{uid}}}")
}

/// A user's families as older versions kept them (a set).
pub(super) fn legacy_user_families_key(uid: &str) -> String {
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

/// The families of one sign-in (browser) session, as the version before
/// kept them (a hash of family ids); read by `/logout`, no longer written:
/// the user's index names each family's session now.
pub(super) fn session_families_key(sid: &str) -> String {
    format!("ts{{{sid}}}")
}

/// A session's families as older versions kept them (a set).
pub(super) fn legacy_session_families_key(sid: &str) -> String {
    format!("tessera:sess:{{{sid}}}:fams")
}

/// The families of one client whose state is kept until some time on
/// `day` (days since the epoch), for revoking them when the client is
/// deleted: a string of 12-byte family ids (raw), expiring at the end of
/// that day, when every family in it is gone too.
pub(super) fn client_families_key(cid: &str, day: i64) -> String {
    format!("tc{{{cid}}}:{day}")
}

/// A client's families as older versions kept them (a set).
pub(super) fn legacy_client_families_key(cid: &str) -> String {
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
