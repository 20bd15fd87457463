//! The compact family hash as stored (`tf{fid}`: one-letter fields, a
//! 16-byte digest) and the older layout it is read beside: decoding the
//! replies of the family scripts into the domain's types.

use super::corrupt;
use super::packed::{BUILT_IN_CLIENT, unpack_id, unpack_scope};
use crate::clock::UnixTime;
use crate::crypto::secret::{ShortDigest, TokenHash};
use crate::store::{FamilyView, StoreError};

/// A family as stored, whatever its state.
pub(super) struct StoredFamily {
    pub(super) view: FamilyView,
    /// The current token's short digest.
    pub(super) current: ShortDigest,
    pub(super) revoked: bool,
    /// The last rotation (the creation if it never rotated).
    pub(super) last_used_at: UnixTime,
}

impl StoredFamily {
    pub(super) fn live(&self, now: UnixTime) -> bool {
        !self.revoked && self.view.expires_at > now
    }
}

pub(super) fn text<'a>(value: &'a [u8], what: &str) -> Result<&'a str, StoreError> {
    std::str::from_utf8(value).map_err(|_| corrupt(what))
}

pub(super) fn number<T: std::str::FromStr>(value: &[u8], what: &str) -> Result<T, StoreError> {
    text(value, what)?.parse().map_err(|_| corrupt(what))
}

/// A family's view from the fields `u c s t <expires> e d x k` of a
/// rotation's reply (`c`, `d`, `x`, `k` already defaulted by the script,
/// `d` and `k` as "" when absent; `u`, `s`, `d` packed or text).
pub(super) fn family_from(reply: &[Vec<u8>], id: &str) -> Result<FamilyView, StoreError> {
    let [
        _,
        user,
        client,
        scope,
        created,
        expires,
        epoch,
        sid,
        auth_time,
        jkt,
    ] = reply
    else {
        return Err(corrupt("rotate"));
    };
    Ok(FamilyView {
        id: id.to_owned(),
        user_id: unpack_id(user, "rotate")?,
        client_id: text(client, "rotate")?.to_owned(),
        scope: unpack_scope(scope, "rotate")?,
        created_at: number(created, "rotate")?,
        expires_at: number(expires, "rotate")?,
        epoch: number(epoch, "rotate")?,
        session_id: session_or_family(&unpack_id(sid, "rotate")?, id),
        auth_time: number(auth_time, "rotate")?,
        jkt: bound_key(text(jkt, "rotate")?),
    })
}

/// A family from the fields `u c s t i a e h n w r d x k` as
/// `read_family.lua` answers them; `None` when there is no such family.
pub(super) fn stored_from(
    fields: Vec<Option<Vec<u8>>>,
    id: &str,
) -> Result<Option<StoredFamily>, StoreError> {
    const WHAT: &str = "read_family";
    let [
        Some(user),
        client,
        Some(scope),
        Some(created),
        Some(idle),
        Some(absolute),
        epoch,
        Some(current),
        _generation,
        used,
        revoked,
        sid,
        auth_time,
        jkt,
    ] = <[Option<Vec<u8>>; 14]>::try_from(fields).map_err(|_| corrupt(WHAT))?
    else {
        return Ok(None);
    };
    let created_at: UnixTime = number(&created, WHAT)?;
    let optional_time = |value: Option<Vec<u8>>| match value {
        Some(at) => number(&at, WHAT),
        None => Ok(created_at),
    };
    let view = FamilyView {
        id: id.to_owned(),
        user_id: unpack_id(&user, WHAT)?,
        client_id: match client {
            Some(client) => text(&client, WHAT)?.to_owned(),
            None => BUILT_IN_CLIENT.to_owned(),
        },
        scope: unpack_scope(&scope, WHAT)?,
        created_at,
        expires_at: number::<UnixTime>(&idle, WHAT)?.min(number(&absolute, WHAT)?),
        epoch: match epoch {
            Some(epoch) => number(&epoch, WHAT)?,
            None => 0,
        },
        session_id: session_or_family(&unpack_id(sid.as_deref().unwrap_or_default(), WHAT)?, id),
        auth_time: optional_time(auth_time)?,
        jkt: bound_key(text(jkt.as_deref().unwrap_or_default(), WHAT)?),
    };
    Ok(Some(StoredFamily {
        view,
        current: ShortDigest::from_stored(&current).ok_or_else(|| corrupt(WHAT))?,
        revoked: revoked.is_some(),
        last_used_at: optional_time(used)?,
    }))
}

/// What `is_access_revoked` reads of a family in the old layout: the
/// fields without which `upgrade.lua` takes it for no family, then
/// `revoked`.
pub(super) const LEGACY_FIELDS: [&str; 8] = [
    "user", "client", "scope", "current", "created", "idle_exp", "abs_exp", "revoked",
];

/// Whether the old layout's fields ([`LEGACY_FIELDS`]) are those of a
/// revoked family, as `upgrade.lua` would move it: anything but "0" in
/// `revoked`, a missing field included. A hash missing a required field
/// is no family (it is deleted when met), and no hash at all is none.
pub(super) fn legacy_revoked(fields: &[Option<Vec<u8>>]) -> bool {
    let [
        user,
        client,
        scope,
        current,
        created,
        idle,
        absolute,
        revoked,
    ] = fields
    else {
        return false;
    };
    // As `upgrade.lua`'s `whole`: digits only.
    let is_number = |value: &Option<Vec<u8>>| {
        value
            .as_deref()
            .is_some_and(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit))
    };
    let family = user.is_some()
        && client.is_some()
        && scope.is_some()
        && current
            .as_ref()
            .is_some_and(|c| c.len() >= 32 && c[..32].iter().all(u8::is_ascii_hexdigit))
        && [created, idle, absolute].into_iter().all(is_number);
    family && revoked.as_deref() != Some(b"0")
}

/// The `jkt` field as stored: absent or empty for an unbound family.
pub(super) fn bound_key(jkt: &str) -> Option<String> {
    (!jkt.is_empty()).then(|| jkt.to_owned())
}

/// Families without a session of their own are their own session.
pub(super) fn session_or_family(sid: &str, family_id: &str) -> String {
    if sid.is_empty() {
        family_id.to_owned()
    } else {
        sid.to_owned()
    }
}

/// An epoch as stored. Values below 10^11 are whole-second "not before"
/// marks written by an older version, read as milliseconds.
pub(super) fn stored_epoch(value: Option<u64>) -> u64 {
    match value {
        Some(v) if v < 100_000_000_000 => v * 1000,
        Some(v) => v,
        None => 0,
    }
}

/// The short digest of a token hash computed here (always hex SHA-256).
pub(super) fn short(hash: &TokenHash) -> Result<ShortDigest, StoreError> {
    hash.short().ok_or_else(|| StoreError::Internal {
        backend: super::BACKEND,
        reason: "a token hash is not a hex SHA-256".into(),
    })
}

/// The 12 raw bytes of a family id (24 hex digits).
pub(super) fn raw_family_id(fid: &str) -> Result<[u8; 12], StoreError> {
    let mut raw = [0u8; 12];
    hex::decode_to_slice(fid, &mut raw).map_err(|_| StoreError::Internal {
        backend: super::BACKEND,
        reason: "a family id is not 24 hex digits".into(),
    })?;
    Ok(raw)
}
