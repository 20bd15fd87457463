//! The per-user side of families in Redis: the list of a user's live
//! families (through the user's index, never a scan) and forgetting the
//! families of a deleted user.

use redis::AsyncCommands;

use super::keys::{
    family_script_keys, legacy_session_families_key, legacy_user_families_key,
    session_families_key, user_families_key,
};
use super::{RedisStore, stored::StoredFamily};
use crate::clock::UnixTime;
use crate::store::{FamilySummary, StoreError};

/// How old a family id must be before a missing family counts as gone
/// (expired by its TTL) rather than being created right now: a family is
/// indexed before its hash is written (so "sign out everywhere" never misses
/// one), and a code-exchange family's id is fixed when the code is issued.
const GONE_AFTER: i64 = 24 * 3600;

/// Whether a family whose hash is missing expired long ago: its id starts
/// with its creation time (4 bytes of seconds, as an ObjectId). An id that
/// does not parse is never pruned.
fn long_gone(family_id: &str, now: UnixTime) -> bool {
    family_id
        .get(..8)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .is_some_and(|created| i64::from(created) < now - GONE_AFTER)
}

/// A family as the user's list shows it.
fn summary_of(family: StoredFamily) -> FamilySummary {
    let view = family.view;
    FamilySummary {
        id: view.id,
        client_id: view.client_id,
        scope: view.scope,
        session_id: view.session_id,
        created_at: view.created_at,
        last_used_at: family.last_used_at,
        epoch: view.epoch,
    }
}

impl RedisStore {
    /// The user's live families. Index entries whose family has expired
    /// away (its TTL passed) are pruned on the way, from the index and from
    /// the set an older version kept.
    pub(super) async fn families_of(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> Result<Vec<FamilySummary>, StoreError> {
        let mut live = Vec::new();
        let (mut gone_fields, mut gone_members) = (Vec::new(), Vec::new());
        for indexed in self.user_index(user_id).await? {
            match self.read_family(&indexed.family_id).await? {
                Some(family) if family.live(now) => live.push(summary_of(family)),
                Some(_) => {}
                None if long_gone(&indexed.family_id, now) => match indexed.field {
                    Some(field) => gone_fields.push(field),
                    None => gone_members.push(indexed.family_id),
                },
                None => {}
            }
        }
        if !gone_fields.is_empty() || !gone_members.is_empty() {
            let mut conn = self.conn.clone();
            let (index, legacy) = (
                user_families_key(user_id),
                legacy_user_families_key(user_id),
            );
            // One slot ({uid}).
            let mut pipe = redis::pipe();
            if !gone_fields.is_empty() {
                pipe.hdel(index, gone_fields).ignore();
            }
            if !gone_members.is_empty() {
                pipe.srem(legacy, gone_members).ignore();
            }
            self.run(async move { pipe.query_async::<()>(&mut conn).await })
                .await?;
        }
        Ok(live)
    }

    /// Deletes every family in the user's index, with the session index an
    /// older version kept for its browser session (a session belongs to
    /// one user).
    pub(super) async fn forget_families(&self, user_id: &str) -> Result<(), StoreError> {
        for indexed in self.user_index(user_id).await? {
            let family_id = indexed.family_id;
            let sid = self
                .read_family(&family_id)
                .await?
                .map(|family| family.view.session_id);
            if let Some(sid) = sid.filter(|sid| !sid.is_empty() && *sid != family_id) {
                let mut conn = self.conn.clone();
                // One slot ({sid}).
                let keys = vec![
                    session_families_key(&sid),
                    legacy_session_families_key(&sid),
                ];
                self.run(async move { conn.del::<_, ()>(&keys).await })
                    .await?;
            }
            // One slot ({fid}): the family in either layout.
            let mut conn = self.conn.clone();
            let keys = family_script_keys(&family_id).to_vec();
            self.run(async move { conn.del::<_, ()>(&keys).await })
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_missing_families_are_pruned() {
        let now = 2_000_000_000;
        let old = format!("{:08x}0000000000000000", now - GONE_AFTER - 1);
        let young = format!("{:08x}0000000000000000", now - 60);
        assert!(long_gone(&old, now));
        assert!(!long_gone(&young, now));
        assert!(!long_gone("not-an-id", now));
        assert!(!long_gone("", now));
    }
}
