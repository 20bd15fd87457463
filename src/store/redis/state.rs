//! Authorization codes, counters, consents and one-time codes in Redis.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::keys::{code_key, consents_key, counter_key, otp_key};
use super::{RedisStore, corrupt};
use crate::clock::UnixTime;
use crate::crypto::secret::TokenHash;
use crate::store::{
    CodeGrant, CodeRedemption, CodeStore, ConsentRecord, ConsentStore, CounterStore, OtpCheck,
    OtpPurpose, OtpStore, StoreError,
};

#[async_trait]
impl CodeStore for RedisStore {
    async fn put_code(&self, code: &TokenHash, g: &CodeGrant) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = code_key(code);
        let g = g.clone();
        self.run(async move {
            redis::pipe()
                .atomic()
                .hset_multiple(
                    &key,
                    &[
                        ("client", g.client_id.clone()),
                        ("user", g.user_id.clone()),
                        ("redirect", g.redirect_uri.clone().unwrap_or_default()),
                        ("scope", g.scope.clone()),
                        ("pkce", g.pkce.clone().unwrap_or_default()),
                        ("exp", g.expires_at.to_string()),
                        ("family", g.family_id.clone()),
                        ("used", "0".to_owned()),
                        ("epoch", g.epoch.to_string()),
                        ("nonce", g.nonce.clone().unwrap_or_default()),
                        ("sid", g.session_id.clone()),
                        ("auth_time", g.auth_time.to_string()),
                        ("jkt", g.dpop_jkt.clone().unwrap_or_default()),
                    ],
                )
                .ignore()
                // Kept past expiry so a late replay still revokes what the code issued.
                .expire_at(&key, g.expires_at + 600)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn peek_code(
        &self,
        code: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<CodeGrant>, StoreError> {
        let mut conn = self.conn.clone();
        let key = code_key(code);
        let fields: Vec<Option<String>> = self
            .run(async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg(&[
                        "client",
                        "user",
                        "redirect",
                        "scope",
                        "pkce",
                        "exp",
                        "family",
                        "epoch",
                        "used",
                        "nonce",
                        "sid",
                        "auth_time",
                        "jkt",
                    ])
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let [
            Some(client),
            Some(user),
            Some(redirect),
            Some(scope),
            Some(pkce),
            Some(exp),
            Some(family),
            epoch,
            Some(used),
            nonce,
            sid,
            auth_time,
            jkt,
        ] = <[Option<String>; 13]>::try_from(fields).map_err(|_| corrupt("peek"))?
        else {
            return Ok(None);
        };
        let grant = code_grant([
            &client,
            &user,
            &redirect,
            &scope,
            &pkce,
            &exp,
            &family,
            epoch.as_deref().unwrap_or("0"),
            nonce.as_deref().unwrap_or(""),
            sid.as_deref().unwrap_or(""),
            auth_time.as_deref().unwrap_or("0"),
            jkt.as_deref().unwrap_or(""),
        ])?;
        Ok((used == "0" && grant.expires_at > now).then_some(grant))
    }

    async fn redeem_code(
        &self,
        code: &TokenHash,
        now: UnixTime,
    ) -> Result<CodeRedemption, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.redeem_code.prepare_invoke();
        invocation.key(code_key(code)).arg(now);
        let reply: Vec<String> = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        match reply.as_slice() {
            [kind] if kind == "unknown" => Ok(CodeRedemption::Unknown),
            [kind, family, client] if kind == "replayed" => Ok(CodeRedemption::Replayed {
                family_id: family.clone(),
                client_id: client.clone(),
            }),
            [
                kind,
                client,
                user,
                redirect,
                scope,
                pkce,
                exp,
                family,
                epoch,
                nonce,
                sid,
                auth_time,
                jkt,
            ] if kind == "fresh" => Ok(CodeRedemption::Fresh(code_grant([
                client, user, redirect, scope, pkce, exp, family, epoch, nonce, sid, auth_time, jkt,
            ])?)),
            _ => Err(corrupt("redeem")),
        }
    }
}

/// A code's grant from its stored fields: client, user, redirect URI, scope,
/// PKCE challenge, expiry, family, epoch, nonce, session, sign-in time,
/// DPoP key thumbprint (empty strings for absent values).
fn code_grant(fields: [&str; 12]) -> Result<CodeGrant, StoreError> {
    let [
        client,
        user,
        redirect,
        scope,
        pkce,
        exp,
        family,
        epoch,
        nonce,
        sid,
        auth_time,
        jkt,
    ] = fields;
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(CodeGrant {
        client_id: client.to_owned(),
        user_id: user.to_owned(),
        redirect_uri: non_empty(redirect),
        scope: scope.to_owned(),
        pkce: non_empty(pkce),
        expires_at: exp.parse().map_err(|_| corrupt("code"))?,
        family_id: family.to_owned(),
        epoch: epoch.parse().map_err(|_| corrupt("code"))?,
        nonce: non_empty(nonce),
        session_id: sid.to_owned(),
        auth_time: auth_time.parse().map_err(|_| corrupt("code"))?,
        dpop_jkt: non_empty(jkt),
    })
}

#[async_trait]
impl CounterStore for RedisStore {
    async fn hit(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError> {
        let window = window.max(1) as i64;
        let bucket = now.div_euclid(window);
        let key = counter_key(key, bucket);
        let mut conn = self.conn.clone();
        let (count,): (u64,) = self
            .run(async move {
                redis::pipe()
                    .atomic()
                    .incr(&key, 1)
                    .expire_at(&key, (bucket + 1) * window)
                    .ignore()
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(count)
    }

    async fn count(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError> {
        let window = window.max(1) as i64;
        let key = counter_key(key, now.div_euclid(window));
        let mut conn = self.conn.clone();
        let count: Option<u64> = self.run(async move { conn.get(&key).await }).await?;
        Ok(count.unwrap_or(0))
    }

    async fn release(&self, key: &str, window: u64, now: UnixTime) -> Result<u64, StoreError> {
        let window = window.max(1) as i64;
        let key = counter_key(key, now.div_euclid(window));
        let mut conn = self.conn.clone();
        let mut invocation = self.release_counter.prepare_invoke();
        invocation.key(key);
        let left: i64 = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(left.max(0) as u64)
    }
}

/// A consent's stored value: "expires_at granted_at" (older versions
/// stored the expiry alone: no grant time).
fn consent_value(value: &str) -> Option<(UnixTime, Option<UnixTime>)> {
    let mut parts = value.split(' ');
    let expires_at = parts.next()?.parse().ok()?;
    let granted_at = match parts.next() {
        Some(at) => Some(at.parse().ok()?),
        None => None,
    };
    Some((expires_at, granted_at))
}

#[async_trait]
impl ConsentStore for RedisStore {
    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        granted_at: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        let key = consents_key(user_id);
        let member = format!("{client_id} {scope}");
        let mut conn = self.conn.clone();
        self.run(async move {
            redis::pipe()
                .atomic()
                .hset(&key, member, format!("{expires_at} {granted_at}"))
                .ignore()
                .expire_at(&key, expires_at)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn has_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let key = consents_key(user_id);
        let member = format!("{client_id} {scope}");
        let mut conn = self.conn.clone();
        let stored: Option<String> = self
            .run(async move { conn.hget(&key, member).await })
            .await?;
        match stored {
            None => Ok(false),
            Some(value) => {
                let (expires_at, _) = consent_value(&value).ok_or_else(|| corrupt("consent"))?;
                Ok(expires_at > now)
            }
        }
    }

    async fn consents(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        let key = consents_key(user_id);
        let mut conn = self.conn.clone();
        let stored: Vec<(String, String)> =
            self.run(async move { conn.hgetall(&key).await }).await?;
        let mut consents = Vec::new();
        for (member, value) in stored {
            let (client_id, scope) = member.split_once(' ').ok_or_else(|| corrupt("consent"))?;
            let (expires_at, granted_at) =
                consent_value(&value).ok_or_else(|| corrupt("consent"))?;
            if expires_at > now {
                consents.push(ConsentRecord {
                    client_id: client_id.to_owned(),
                    scope: scope.to_owned(),
                    granted_at,
                    expires_at,
                });
            }
        }
        Ok(consents)
    }

    async fn revoke_consent(&self, user_id: &str, client_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.revoke_consent.prepare_invoke();
        invocation.key(consents_key(user_id)).arg(client_id);
        let forgotten: i64 = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(forgotten > 0)
    }
}

#[async_trait]
impl OtpStore for RedisStore {
    async fn put_otp(
        &self,
        user_id: &str,
        purpose: OtpPurpose,
        digest: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        let key = otp_key(user_id, purpose);
        let digest = digest.to_owned();
        let mut conn = self.conn.clone();
        self.run(async move {
            redis::pipe()
                .atomic()
                .del(&key)
                .ignore()
                .hset_multiple(
                    &key,
                    &[
                        ("digest", digest),
                        ("exp", expires_at.to_string()),
                        ("attempts", "0".to_owned()),
                    ],
                )
                .ignore()
                .expire_at(&key, expires_at)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn check_otp(
        &self,
        user_id: &str,
        purpose: OtpPurpose,
        digest: &str,
        now: UnixTime,
        max_attempts: u32,
    ) -> Result<OtpCheck, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.check_otp.prepare_invoke();
        invocation
            .key(otp_key(user_id, purpose))
            .arg(digest)
            .arg(now)
            .arg(max_attempts);
        let outcome: i64 = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        match outcome {
            1 => Ok(OtpCheck::Match),
            0 => Ok(OtpCheck::Mismatch),
            2 => Ok(OtpCheck::NoCode),
            _ => Err(corrupt("check_otp")),
        }
    }
}
