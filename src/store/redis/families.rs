//! Refresh-token families and revoked access tokens in Redis.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::keys::{
    client_families_key, consents_key, family_key, family_tokens_key, revoked_access_key,
    session_families_key, user_epoch_key, user_families_key,
};
use super::{RedisStore, corrupt};
use crate::clock::UnixTime;
use crate::crypto::secret::TokenHash;
use crate::store::{
    AccessCheck, FamilyStore, FamilySummary, FamilyView, NewFamily, RotateRequest, Rotation,
    SessionFamily, StoreError, has_offline_access,
};

fn family_from(reply: &[String], id: &str) -> Result<FamilyView, StoreError> {
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
        user_id: user.clone(),
        client_id: client.clone(),
        scope: scope.clone(),
        created_at: created.parse().map_err(|_| corrupt("rotate"))?,
        expires_at: expires.parse().map_err(|_| corrupt("rotate"))?,
        epoch: epoch.parse().map_err(|_| corrupt("rotate"))?,
        session_id: session_or_family(sid, id),
        auth_time: auth_time.parse().map_err(|_| corrupt("rotate"))?,
        jkt: bound_key(jkt),
    })
}

/// The `jkt` field as stored: absent or empty for an unbound family.
fn bound_key(jkt: &str) -> Option<String> {
    (!jkt.is_empty()).then(|| jkt.to_owned())
}

/// Families written before sessions were recorded are their own session.
fn session_or_family(sid: &str, family_id: &str) -> String {
    if sid.is_empty() {
        family_id.to_owned()
    } else {
        sid.to_owned()
    }
}

/// An epoch as stored. Values below 10^11 are whole-second "not before"
/// marks written by an older version, read as milliseconds.
fn stored_epoch(value: Option<u64>) -> u64 {
    match value {
        Some(v) if v < 100_000_000_000 => v * 1000,
        Some(v) => v,
        None => 0,
    }
}

impl RedisStore {
    async fn family_fields(
        &self,
        fid: &str,
    ) -> Result<Option<(FamilyView, String, String)>, StoreError> {
        let mut conn = self.conn.clone();
        let key = family_key(fid);
        let fields: Vec<Option<String>> = self
            .run(async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg(&[
                        "user",
                        "client",
                        "scope",
                        "created",
                        "idle_exp",
                        "abs_exp",
                        "revoked",
                        "current",
                        "epoch",
                        "sid",
                        "auth_time",
                        "jkt",
                    ])
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let [
            Some(user),
            Some(client),
            Some(scope),
            Some(created),
            Some(idle),
            Some(abs),
            Some(revoked),
            Some(current),
            epoch,
            sid,
            auth_time,
            jkt,
        ] = <[Option<String>; 12]>::try_from(fields).map_err(|_| corrupt("HMGET"))?
        else {
            return Ok(None);
        };
        let number = |v: &str| v.parse::<i64>().map_err(|_| corrupt("HMGET"));
        let view = FamilyView {
            id: fid.to_owned(),
            user_id: user,
            client_id: client,
            scope,
            created_at: number(&created)?,
            expires_at: number(&idle)?.min(number(&abs)?),
            // Families from before epochs: their start, as old tokens' iat.
            epoch: match epoch {
                Some(e) => e.parse().map_err(|_| corrupt("HMGET"))?,
                None => u64::try_from(number(&created)?).unwrap_or(0) * 1000,
            },
            session_id: session_or_family(sid.as_deref().unwrap_or(""), fid),
            auth_time: match auth_time {
                Some(at) => number(&at)?,
                None => number(&created)?,
            },
            jkt: bound_key(jkt.as_deref().unwrap_or("")),
        };
        Ok(Some((view, revoked, current)))
    }
}

#[async_trait]
impl FamilyStore for RedisStore {
    async fn create_family(&self, f: &NewFamily) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let (family, tokens, index) = (
            family_key(&f.id),
            family_tokens_key(&f.id),
            user_families_key(&f.user_id),
        );
        let f = f.clone();
        self.run(async move {
            // The user index first: "log out everywhere" must never miss a
            // family. Its expiry only ever moves later (NX sets the first, GT
            // extends), so an index never expires before a family in it.
            redis::pipe()
                .sadd(&index, &f.id)
                .ignore()
                .cmd("EXPIREAT")
                .arg(&index)
                .arg(f.keep_until)
                .arg("NX")
                .ignore()
                .cmd("EXPIREAT")
                .arg(&index)
                .arg(f.keep_until)
                .arg("GT")
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            // The client's index, so deleting the client can revoke them.
            let client = client_families_key(&f.client_id);
            redis::pipe()
                .sadd(&client, &f.id)
                .ignore()
                .cmd("EXPIREAT")
                .arg(&client)
                .arg(f.keep_until)
                .arg("NX")
                .ignore()
                .cmd("EXPIREAT")
                .arg(&client)
                .arg(f.keep_until)
                .arg("GT")
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            // A browser session's index, for `/logout` (a login through the
            // user API is its own session: its family id is the session id).
            if f.session_id != f.id {
                let session = session_families_key(&f.session_id);
                redis::pipe()
                    .sadd(&session, &f.id)
                    .ignore()
                    .cmd("EXPIREAT")
                    .arg(&session)
                    .arg(f.keep_until)
                    .arg("NX")
                    .ignore()
                    .cmd("EXPIREAT")
                    .arg(&session)
                    .arg(f.keep_until)
                    .arg("GT")
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            let mut fields = vec![
                ("user", f.user_id.clone()),
                ("client", f.client_id.clone()),
                ("scope", f.scope.clone()),
                ("created", f.created_at.to_string()),
                ("idle_exp", f.idle_expires_at.to_string()),
                ("abs_exp", f.absolute_expires_at.to_string()),
                ("revoked", "0".to_owned()),
                ("current", f.first_token.as_str().to_owned()),
                ("epoch", f.epoch.to_string()),
                ("sid", f.session_id.clone()),
                ("auth_time", f.auth_time.to_string()),
            ];
            if let Some(jkt) = &f.jkt {
                fields.push(("jkt", jkt.clone()));
            }
            redis::pipe()
                .atomic()
                .hset_multiple(&family, &fields)
                .ignore()
                .hset(&tokens, f.first_token.as_str(), "0")
                .ignore()
                // Kept past the family's expiry while access tokens minted
                // from it live, so its revocation is never forgotten early.
                .expire_at(&family, f.keep_until)
                .ignore()
                .expire_at(&tokens, f.keep_until)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn rotate(&self, r: &RotateRequest<'_>) -> Result<Rotation, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.rotate.prepare_invoke();
        invocation
            .key(family_key(r.family_id))
            .key(family_tokens_key(r.family_id))
            .arg(r.presented.as_str())
            .arg(r.successor.as_str())
            .arg(r.now)
            .arg(r.grace)
            .arg(r.idle_ttl)
            .arg(r.client_id)
            .arg(r.jkt.unwrap_or(""));
        let reply: Vec<String> = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        match reply.first().map(String::as_str) {
            Some("rotated") => Ok(Rotation::Rotated(family_from(&reply, r.family_id)?)),
            Some("grace") => Ok(Rotation::GraceReplay(family_from(&reply, r.family_id)?)),
            Some("reuse") => Ok(Rotation::ReuseDetected),
            Some("key_mismatch") => Ok(Rotation::KeyMismatch),
            Some("invalid") => Ok(Rotation::Invalid),
            _ => Err(corrupt("rotate")),
        }
    }

    async fn live_refresh(
        &self,
        family_id: &str,
        presented: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError> {
        Ok(self
            .family_fields(family_id)
            .await?
            .and_then(|(view, revoked, current)| {
                (revoked == "0" && current == presented.as_str() && view.expires_at > now)
                    .then_some(view)
            }))
    }

    async fn family(
        &self,
        family_id: &str,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError> {
        Ok(self
            .family_fields(family_id)
            .await?
            .and_then(|(view, revoked, _)| {
                (revoked == "0" && view.expires_at > now).then_some(view)
            }))
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.revoke_family.prepare_invoke();
        invocation.key(family_key(family_id)).arg(now);
        self.run(async move { invocation.invoke_async::<i64>(&mut conn).await })
            .await
            .map(|_| ())
    }

    async fn revoke_client(&self, client_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        let key = client_families_key(client_id);
        let mut cursor = 0u64;
        let mut revoked = 0u64;
        // SSCAN in batches: a client may have many families, and one
        // SMEMBERS would answer them all at once.
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
            .arg(floor)
            .arg(self.epoch_ttl.max(1));
        // The epoch first: from here on every older token, family and
        // session fails, even before each family below is marked.
        let (epoch, families): (String, Vec<String>) = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        for family in families {
            self.revoke_family(&family, now).await?;
        }
        epoch.parse().map_err(|_| corrupt("move_epoch"))
    }

    async fn end_session(
        &self,
        session_id: &str,
        now: UnixTime,
    ) -> Result<Vec<SessionFamily>, StoreError> {
        let mut conn = self.conn.clone();
        let key = session_families_key(session_id);
        let members: Vec<String> = self.run(async move { conn.smembers(&key).await }).await?;
        let mut ended = Vec::new();
        for family_id in members {
            let Some((view, revoked, _)) = self.family_fields(&family_id).await? else {
                continue;
            };
            if revoked != "0" || view.expires_at <= now {
                continue;
            }
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
        // Three keys in three hash slots: three commands sent together on
        // the multiplexed connection (a pipeline may not cross slots).
        let (mut a, mut b, mut c) = (self.conn.clone(), self.conn.clone(), self.conn.clone());
        let (jti, epoch_key) = (revoked_access_key(check.jti), user_epoch_key(check.sub));
        let family = check.family.map(family_key);
        let (jti_revoked, stored, family_revoked) = self
            .run(async move {
                tokio::try_join!(
                    async move { a.exists::<_, bool>(jti).await },
                    async move { b.get::<_, Option<u64>>(epoch_key).await },
                    async move {
                        match family {
                            Some(key) => c.hget::<_, _, Option<i64>>(key, "revoked").await,
                            None => Ok(None),
                        }
                    },
                )
            })
            .await?;
        let logged_out = stored_epoch(stored) > check.epoch;
        let family_revoked = family_revoked.is_some_and(|at| at != 0);
        Ok(jti_revoked || logged_out || family_revoked)
    }
}
