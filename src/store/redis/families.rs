//! Refresh-token families and revoked access tokens in Redis.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use redis::AsyncCommands;

use super::keys::{
    client_families_key, consents_key, family_key, family_script_keys, legacy_client_families_key,
    legacy_family_key, legacy_session_families_key, legacy_user_families_key, revoked_access_key,
    session_families_key, user_epoch_key, user_families_key,
};
use super::packed::{BUILT_IN_CLIENT, pack_id, pack_scope, unpack_id};
use super::stored::{
    LEGACY_FIELDS, StoredFamily, family_from, legacy_revoked, number, raw_family_id, short,
    stored_epoch, stored_from,
};
use super::{RedisStore, corrupt};
use crate::clock::UnixTime;
use crate::crypto::secret::{ShortDigest, TokenHash};
use crate::store::{
    AccessCheck, CHECKPOINT_EVERY, CHECKPOINTS_KEPT, FamilyStore, FamilySummary, FamilyView,
    NewFamily, RotateRequest, Rotation, SessionFamily, StoreError, has_offline_access,
};

const DAY: i64 = 86_400;

/// The fewest days of client buckets `revoke_client` reads: more than any
/// family is kept, even one created under a longer configured lifetime.
const MIN_CLIENT_HORIZON_DAYS: i64 = 400;

/// Bytes of a client bucket `revoke_client` reads at a time: 1,000 ids.
const CLIENT_BUCKET_CHUNK: isize = 12_000;

/// A pipeline that adds a family to its user's index hash (`field`: its
/// packed id; `session`: its packed session id, empty when the family is
/// its own session) and keeps the index at least until `keep_until`: its
/// expiry only ever moves later (NX sets the first, GT extends), so an
/// index never expires before a family in it.
fn index_family(
    index: &str,
    field: &[u8],
    session: &[u8],
    keep_until: UnixTime,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.hset(index, field, session)
        .ignore()
        .cmd("EXPIREAT")
        .arg(index)
        .arg(keep_until)
        .arg("NX")
        .ignore()
        .cmd("EXPIREAT")
        .arg(index)
        .arg(keep_until)
        .arg("GT")
        .ignore();
    pipe
}

/// A user index hash's fields and values, as stored.
type IndexFields = Vec<(Vec<u8>, Vec<u8>)>;

/// A family as its user's index names it.
pub(super) struct Indexed {
    pub(super) family_id: String,
    /// Its sign-in session, when that is not the family itself.
    pub(super) session_id: Option<String>,
    /// The index hash's field for it; `None` when only the set an older
    /// version kept names it.
    pub(super) field: Option<Vec<u8>>,
}

impl Indexed {
    fn in_session(&self, session_id: &str) -> bool {
        self.session_id.as_deref().unwrap_or(&self.family_id) == session_id
    }
}

impl RedisStore {
    /// A family, whatever its state; moved to the compact layout first if
    /// an older version wrote it.
    pub(super) async fn read_family(&self, fid: &str) -> Result<Option<StoredFamily>, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.read_family.prepare_invoke();
        for key in family_script_keys(fid) {
            invocation.key(key);
        }
        let fields: Vec<Option<Vec<u8>>> = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        stored_from(fields, fid)
    }

    /// The families of a user's index: the hash (packed ids, or the text
    /// of the version before) and the set an older version kept in its
    /// place, one entry per family.
    pub(super) async fn user_index(&self, user_id: &str) -> Result<Vec<Indexed>, StoreError> {
        let (index, legacy) = (
            user_families_key(user_id),
            legacy_user_families_key(user_id),
        );
        let mut conn = self.conn.clone();
        // One slot: both keys carry the same tag.
        let (fields, members): (IndexFields, Vec<String>) = self
            .run(async move {
                redis::pipe()
                    .hgetall(index)
                    .smembers(legacy)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let mut families = BTreeMap::new();
        for (field, session) in fields {
            // An entry that does not decode (never written by Tessera) is
            // skipped, so that it cannot stop the user's logout or listing.
            let decoded = unpack_id(&field, "user index").and_then(|family_id| {
                let session_id = match session.as_slice() {
                    [] => None,
                    session => Some(unpack_id(session, "user index")?),
                };
                Ok((family_id, session_id))
            });
            let Ok((family_id, session_id)) = decoded else {
                tracing::warn!(user_id, "a user index entry does not decode; skipped");
                continue;
            };
            families.insert(
                family_id.clone(),
                Indexed {
                    family_id,
                    session_id,
                    field: Some(field),
                },
            );
        }
        for family_id in members {
            families.entry(family_id.clone()).or_insert(Indexed {
                family_id,
                session_id: None,
                field: None,
            });
        }
        Ok(families.into_values().collect())
    }

    /// The families a session index of an older version names: the hash
    /// `ts{sid}` and the set before it (no duplicates).
    async fn legacy_session_members(&self, sid: &str) -> Result<BTreeSet<String>, StoreError> {
        let (index, legacy) = (session_families_key(sid), legacy_session_families_key(sid));
        let mut conn = self.conn.clone();
        // One slot: both keys carry the same tag.
        let (fields, members): (Vec<String>, Vec<String>) = self
            .run(async move {
                redis::pipe()
                    .hkeys(index)
                    .smembers(legacy)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(fields.into_iter().chain(members).collect())
    }
}

#[async_trait]
impl FamilyStore for RedisStore {
    async fn create_family(&self, f: &NewFamily) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let family = family_key(&f.id);
        let current = short(&f.first_token)?;
        let client_bucket = if f.client_indexed {
            Some(raw_family_id(&f.id)?)
        } else {
            None
        };
        // A login through the user API is its own session: its family id is
        // the session id (and an empty one is read the same way).
        let own_session = f.session_id == f.id || f.session_id.is_empty();
        let session = if own_session {
            Vec::new()
        } else {
            pack_id(&f.session_id)?
        };
        let (user, field) = (pack_id(&f.user_id)?, pack_id(&f.id)?);
        let f = f.clone();
        self.run(async move {
            // The user index first: "log out everywhere" must never miss a
            // family. It names the family's session too, for `/logout`.
            index_family(
                &user_families_key(&f.user_id),
                &field,
                &session,
                f.keep_until,
            )
            .query_async::<()>(&mut conn)
            .await?;
            // The client's index, so deleting the client can revoke them:
            // the family's 12 bytes in the bucket of the day its state is
            // dropped, which expires (whole, no pruning) after that day.
            if let Some(raw) = client_bucket {
                let day = f.keep_until.div_euclid(DAY);
                let bucket = client_families_key(&f.client_id, day);
                redis::pipe()
                    .atomic()
                    .append(&bucket, &raw[..])
                    .ignore()
                    .expire_at(&bucket, (day + 1) * DAY)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            // Fields equal to their default are left out, the others
            // packed (see upgrade.lua and packed.rs).
            let mut fields: Vec<(&str, Vec<u8>)> = vec![
                ("u", user),
                ("s", pack_scope(&f.scope)),
                ("t", f.created_at.to_string().into_bytes()),
                ("i", f.idle_expires_at.to_string().into_bytes()),
                ("a", f.absolute_expires_at.to_string().into_bytes()),
                ("h", current.as_bytes().to_vec()),
            ];
            if f.client_id != BUILT_IN_CLIENT {
                fields.push(("c", f.client_id.clone().into_bytes()));
            }
            if f.epoch != 0 {
                fields.push(("e", f.epoch.to_string().into_bytes()));
            }
            if !session.is_empty() {
                fields.push(("d", session));
            }
            if f.auth_time != f.created_at {
                fields.push(("x", f.auth_time.to_string().into_bytes()));
            }
            if let Some(jkt) = f.jkt.as_ref().filter(|jkt| !jkt.is_empty()) {
                fields.push(("k", jkt.clone().into_bytes()));
            }
            redis::pipe()
                .atomic()
                .hset_multiple(&family, &fields)
                .ignore()
                // Kept past the family's expiry while access tokens minted
                // from it live, so its revocation is never forgotten early.
                .expire_at(&family, f.keep_until)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn rotate(&self, r: &RotateRequest<'_>) -> Result<Rotation, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.rotate.prepare_invoke();
        for key in family_script_keys(r.family_id) {
            invocation.key(key);
        }
        invocation
            .arg(short(r.presented)?.as_bytes())
            .arg(short(r.successor)?.as_bytes())
            .arg(r.now)
            .arg(r.grace)
            .arg(r.idle_ttl)
            .arg(r.client_id)
            .arg(r.jkt.unwrap_or(""))
            .arg(CHECKPOINT_EVERY)
            .arg(CHECKPOINTS_KEPT)
            .arg(BUILT_IN_CLIENT);
        let reply: Vec<Vec<u8>> = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        match reply.first().map(Vec::as_slice) {
            Some(b"rotated") => Ok(Rotation::Rotated(family_from(&reply, r.family_id)?)),
            Some(b"grace") => Ok(Rotation::GraceReplay(family_from(&reply, r.family_id)?)),
            Some(b"reuse") => Ok(Rotation::ReuseDetected),
            Some(b"key_mismatch") => Ok(Rotation::KeyMismatch),
            Some(b"invalid") => Ok(Rotation::Invalid),
            Some(b"unknown") => match &reply[1..] {
                [current, generation, checkpoints] if checkpoints.len() % 16 == 0 => {
                    Ok(Rotation::Unknown {
                        current: ShortDigest::from_stored(current)
                            .ok_or_else(|| corrupt("rotate"))?,
                        checkpoints: checkpoints
                            .chunks_exact(16)
                            .filter_map(ShortDigest::from_stored)
                            .collect(),
                        generation: number(generation, "rotate")?,
                    })
                }
                _ => Err(corrupt("rotate")),
            },
            _ => Err(corrupt("rotate")),
        }
    }

    async fn live_refresh(
        &self,
        family_id: &str,
        presented: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError> {
        let presented = short(presented)?;
        Ok(self
            .read_family(family_id)
            .await?
            .filter(|family| family.live(now) && family.current.matches(&presented))
            .map(|family| family.view))
    }

    async fn family(
        &self,
        family_id: &str,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError> {
        Ok(self
            .read_family(family_id)
            .await?
            .filter(|family| family.live(now))
            .map(|family| family.view))
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.revoke_family.prepare_invoke();
        for key in family_script_keys(family_id) {
            invocation.key(key);
        }
        invocation.arg(now);
        self.run(async move { invocation.invoke_async::<i64>(&mut conn).await })
            .await
            .map(|_| ())
    }

    async fn revoke_client(&self, client_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        // Every bucket that may still hold a family: from today to the
        // longest a family's state is kept. One slot ({cid}). Their lengths
        // first, in one round trip (a few bytes each); then each non-empty
        // bucket in chunks, revoking as we go: a busy client's buckets may
        // hold millions of ids, far too much for one reply.
        let today = now.div_euclid(DAY);
        let horizon = (i64::try_from(self.epoch_ttl).unwrap_or(i64::MAX) / DAY + 2)
            .max(MIN_CLIENT_HORIZON_DAYS);
        let days: Vec<i64> = (today..=today + horizon).collect();
        let mut pipe = redis::pipe();
        for day in &days {
            pipe.strlen(client_families_key(client_id, *day));
        }
        let mut conn = self.conn.clone();
        let lengths: Vec<u64> = self
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        let mut revoked = 0u64;
        for (day, _) in days.iter().zip(lengths).filter(|(_, len)| *len > 0) {
            let bucket = client_families_key(client_id, *day);
            let mut start = 0isize;
            loop {
                let mut conn = self.conn.clone();
                let key = bucket.clone();
                let end = start + CLIENT_BUCKET_CHUNK - 1;
                let chunk: Vec<u8> = self
                    .run(async move { conn.getrange(&key, start, end).await })
                    .await?;
                // Ids are appended whole, 12 bytes at a time, and chunks are
                // a multiple of 12: no id straddles two chunks. A chunk's
                // revocations go out together (the multiplexed connection
                // pipelines them): one round trip per chunk, not per family.
                let families: Vec<String> = chunk.chunks_exact(12).map(hex::encode).collect();
                futures_util::future::try_join_all(
                    families
                        .iter()
                        .map(|family| self.revoke_family(family, now)),
                )
                .await?;
                revoked += families.len() as u64;
                // A short chunk is the end (read to the end, not to the
                // length read above, so ids appended meanwhile are not missed).
                if chunk.len() < CLIENT_BUCKET_CHUNK as usize {
                    break;
                }
                start += CLIENT_BUCKET_CHUNK;
            }
        }
        // Families an older version indexed, in a set: SSCAN in batches
        // (one SMEMBERS would answer them all at once). The set expires
        // by itself after the last of them.
        let key = legacy_client_families_key(client_id);
        let mut cursor = 0u64;
        loop {
            let mut conn = self.conn.clone();
            let scan_key = key.clone();
            let (next, families): (u64, Vec<String>) = self
                .run(async move {
                    redis::cmd("SSCAN")
                        .arg(scan_key)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            for family in families {
                self.revoke_family(&family, now).await?;
                revoked += 1;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(revoked)
    }

    async fn credential_epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let key = user_epoch_key(user_id);
        let stored: Option<u64> = self.run(async move { conn.get(&key).await }).await?;
        Ok(stored_epoch(stored))
    }

    async fn revoke_user(
        &self,
        user_id: &str,
        now: UnixTime,
        floor: u64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.move_epoch.prepare_invoke();
        invocation
            .key(user_epoch_key(user_id))
            .key(consents_key(user_id))
            .key(user_families_key(user_id))
            .key(legacy_user_families_key(user_id))
            .arg(floor)
            .arg(self.epoch_ttl.max(1));
        // The epoch first: from here on every older token, family and
        // session fails, even before each family below is marked.
        let (epoch, indexed): (String, Vec<Vec<u8>>) = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        // An entry that does not decode is skipped (the epoch has moved:
        // its family is dead whatever its own mark says).
        let families: BTreeSet<String> = indexed
            .iter()
            .filter_map(|family| unpack_id(family, "move_epoch").ok())
            .collect();
        for family in families {
            self.revoke_family(&family, now).await?;
        }
        epoch.parse().map_err(|_| corrupt("move_epoch"))
    }

    async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        now: UnixTime,
    ) -> Result<Vec<SessionFamily>, StoreError> {
        // The user's index names each family's session; families written
        // by older versions are in the session's own index.
        let mut members: BTreeSet<String> = self
            .user_index(user_id)
            .await?
            .into_iter()
            .filter(|family| family.in_session(session_id))
            .map(|family| family.family_id)
            .collect();
        members.extend(self.legacy_session_members(session_id).await?);
        let mut ended = Vec::new();
        for family_id in members {
            let Some(family) = self.read_family(&family_id).await? else {
                continue;
            };
            if !family.live(now) || family.view.user_id != user_id {
                continue;
            }
            let view = family.view;
            let kept = has_offline_access(&view.scope);
            if !kept {
                self.revoke_family(&family_id, now).await?;
            }
            ended.push(SessionFamily {
                family_id,
                client_id: view.client_id,
                user_id: view.user_id,
                kept,
            });
        }
        Ok(ended)
    }

    async fn user_families(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> Result<Vec<FamilySummary>, StoreError> {
        self.families_of(user_id, now).await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = revoked_access_key(jti);
        self.run(async move {
            redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("EXAT")
                .arg(expires_at.max(1))
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn is_access_revoked(&self, check: &AccessCheck<'_>) -> Result<bool, StoreError> {
        // Three hash slots: three requests sent together on the multiplexed
        // connection (a pipeline may not cross slots). The family's is a
        // pipeline of two reads in its slot: the old layout's hash FIRST,
        // then the compact layout's mark. A script may move the family
        // between the two reads; the move is atomic, so reading in this
        // order one read at least sees it in the layout it is in: moved
        // before the first read, the second sees the compact mark; moved
        // after it, the first saw the old hash. (The other order could
        // miss it in both: not moved yet for the compact read, and moved
        // away before the old one.)
        let (mut a, mut b, mut c) = (self.conn.clone(), self.conn.clone(), self.conn.clone());
        let (jti, epoch_key) = (revoked_access_key(check.jti), user_epoch_key(check.sub));
        let family = check
            .family
            .map(|fid| (family_key(fid), legacy_family_key(fid)));
        let (jti_revoked, stored, family_revoked) = self
            .run(async move {
                tokio::try_join!(
                    async move { a.exists::<_, bool>(jti).await },
                    async move { b.get::<_, Option<u64>>(epoch_key).await },
                    async move {
                        let Some((key, legacy)) = family else {
                            return Ok::<_, redis::RedisError>(false);
                        };
                        let (legacy_fields, revoked): (Vec<Option<Vec<u8>>>, Option<redis::Value>) =
                            redis::pipe()
                                .cmd("HMGET")
                                .arg(legacy)
                                .arg(&LEGACY_FIELDS[..])
                                .hget(key, "r")
                                .query_async(&mut c)
                                .await?;
                        Ok(revoked.is_some() || legacy_revoked(&legacy_fields))
                    },
                )
            })
            .await?;
        let logged_out = stored_epoch(stored) > check.epoch;
        Ok(jti_revoked || logged_out || family_revoked)
    }
}
