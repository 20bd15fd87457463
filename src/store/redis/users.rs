//! The per-user side of families in Redis: the list of a user's live
//! families (through the user's index, never a scan) and forgetting the
//! families of a deleted user.

use redis::AsyncCommands;

use super::keys::{family_key, family_tokens_key, session_families_key, user_families_key};
use super::{RedisStore, corrupt};
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

/// What the list needs of a family, and whether it still lives.
struct Listed {
    summary: FamilySummary,
    live: bool,
}

impl RedisStore {
    /// The user's live families. Index members whose family has expired
    /// away (its TTL passed) are pruned on the way.
    pub(super) async fn families_of(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> Result<Vec<FamilySummary>, StoreError> {
        let index = user_families_key(user_id);
        let mut conn = self.conn.clone();
        let key = index.clone();
        let members: Vec<String> = self.run(async move { conn.smembers(&key).await }).await?;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for family_id in members {
            match self.listed(&family_id, now).await? {
                Some(listed) if listed.live => live.push(listed.summary),
                Some(_) => {}
                None if long_gone(&family_id, now) => gone.push(family_id),
                None => {}
            }
        }
        if !gone.is_empty() {
            let mut conn = self.conn.clone();
            self.run(async move { conn.srem::<_, _, ()>(&index, gone).await })
                .await?;
        }
        Ok(live)
    }

    async fn listed(&self, family_id: &str, now: UnixTime) -> Result<Option<Listed>, StoreError> {
        let mut conn = self.conn.clone();
        let key = family_key(family_id);
        let fields: Vec<Option<String>> = self
            .run(async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg(&[
                        "client", "scope", "created", "idle_exp", "abs_exp", "revoked", "epoch",
                        "sid", "used",
                    ])
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let [
            Some(client),
            Some(scope),
            Some(created),
            Some(idle),
            Some(abs),
            Some(revoked),
            epoch,
            sid,
            used,
        ] = <[Option<String>; 9]>::try_from(fields).map_err(|_| corrupt("HMGET"))?
        else {
            return Ok(None);
        };
        let number = |v: &str| v.parse::<i64>().map_err(|_| corrupt("HMGET"));
        let created_at = number(&created)?;
        let expires_at = number(&idle)?.min(number(&abs)?);
        let summary = FamilySummary {
            id: family_id.to_owned(),
            client_id: client,
            scope,
            session_id: match sid {
                Some(sid) if !sid.is_empty() => sid,
                _ => family_id.to_owned(),
            },
            created_at,
            last_used_at: match used {
                Some(at) => number(&at)?,
                None => created_at,
            },
            // Families from before epochs: their start, as old tokens' iat.
            epoch: match epoch {
                Some(e) => e.parse().map_err(|_| corrupt("HMGET"))?,
                None => u64::try_from(created_at).unwrap_or(0) * 1000,
            },
        };
        Ok(Some(Listed {
            live: revoked == "0" && expires_at > now,
            summary,
        }))
    }

    /// Deletes every family in the user's index with its tokens and its
    /// browser session's index (a session belongs to one user).
    pub(super) async fn forget_families(&self, user_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let index = user_families_key(user_id);
        let members: Vec<String> = self.run(async move { conn.smembers(&index).await }).await?;
        for family_id in members {
            let mut conn = self.conn.clone();
            let key = family_key(&family_id);
            let sid: Option<String> = self
                .run(async move { conn.hget(&key, "sid").await })
                .await?;
            if let Some(sid) = sid.filter(|sid| !sid.is_empty() && *sid != family_id) {
                let mut conn = self.conn.clone();
                let key = session_families_key(&sid);
                self.run(async move { conn.del::<_, ()>(&key).await })
                    .await?;
            }
            // One slot ({fid}): the family and its tokens go together.
            let mut conn = self.conn.clone();
            let keys = vec![family_key(&family_id), family_tokens_key(&family_id)];
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
