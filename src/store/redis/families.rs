//! Refresh-token families and revoked access tokens in Redis.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::keys::{
    consents_key, family_key, family_tokens_key, revoked_access_key, user_families_key,
    user_not_before_key,
};
use super::{RedisStore, corrupt};
use crate::clock::UnixTime;
use crate::crypto::secret::TokenHash;
use crate::store::{
    AccessCheck, FamilyStore, FamilyView, NewFamily, RotateRequest, Rotation, StoreError,
};

fn family_from(reply: &[String], id: &str) -> Result<FamilyView, StoreError> {
    let [_, user, client, scope, created, expires, ..] = reply else {
        return Err(corrupt("rotate"));
    };
    Ok(FamilyView {
        id: id.to_owned(),
        user_id: user.clone(),
        client_id: client.clone(),
        scope: scope.clone(),
        created_at: created.parse().map_err(|_| corrupt("rotate"))?,
        expires_at: expires.parse().map_err(|_| corrupt("rotate"))?,
    })
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
                        "user", "client", "scope", "created", "idle_exp", "abs_exp", "revoked",
                        "current",
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
        ] = <[Option<String>; 8]>::try_from(fields).map_err(|_| corrupt("HMGET"))?
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
            // The user index first: "log out everywhere" must never miss a family.
            redis::pipe()
                .sadd(&index, &f.id)
                .ignore()
                .expire_at(&index, f.absolute_expires_at)
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            redis::pipe()
                .atomic()
                .hset_multiple(
                    &family,
                    &[
                        ("user", f.user_id.clone()),
                        ("client", f.client_id.clone()),
                        ("scope", f.scope.clone()),
                        ("created", f.created_at.to_string()),
                        ("idle_exp", f.idle_expires_at.to_string()),
                        ("abs_exp", f.absolute_expires_at.to_string()),
                        ("revoked", "0".to_owned()),
                        ("current", f.first_token.as_str().to_owned()),
                    ],
                )
                .ignore()
                .hset(&tokens, f.first_token.as_str(), "0")
                .ignore()
                .expire_at(&family, f.absolute_expires_at)
                .ignore()
                .expire_at(&tokens, f.absolute_expires_at)
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
            .arg(r.client_id);
        let reply: Vec<String> = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        match reply.first().map(String::as_str) {
            Some("rotated") => Ok(Rotation::Rotated(family_from(&reply, r.family_id)?)),
            Some("grace") => Ok(Rotation::GraceReplay(family_from(&reply, r.family_id)?)),
            Some("reuse") => Ok(Rotation::ReuseDetected),
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

    async fn revoke_user(&self, user_id: &str, now: UnixTime) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let (nbf, index) = (user_not_before_key(user_id), user_families_key(user_id));
        let consents = consents_key(user_id);
        let ttl = self.not_before_ttl;
        let families: Vec<String> = self
            .run(async move {
                // The mark first: from here on every older access token fails.
                let _: () = conn.set_ex(&nbf, now, ttl).await?;
                let _: () = conn.del(&consents).await?;
                conn.smembers(&index).await
            })
            .await?;
        for family in families {
            self.revoke_family(&family, now).await?;
        }
        Ok(())
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
        let (jti, nbf) = (
            revoked_access_key(check.jti),
            user_not_before_key(check.sub),
        );
        let family = check.sid.map(family_key);
        let (jti_revoked, not_before, family_revoked) = self
            .run(async move {
                tokio::try_join!(
                    async move { a.exists::<_, bool>(jti).await },
                    async move { b.get::<_, Option<i64>>(nbf).await },
                    async move {
                        match family {
                            Some(key) => c.hget::<_, _, Option<i64>>(key, "revoked").await,
                            None => Ok(None),
                        }
                    },
                )
            })
            .await?;
        let logged_out = not_before.is_some_and(|nbf| nbf > check.iat);
        let family_revoked = family_revoked.is_some_and(|at| at != 0);
        Ok(jti_revoked || logged_out || family_revoked)
    }
}
