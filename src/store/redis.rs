//! The Redis token store: refresh-token families, revoked access tokens and
//! authorization codes, with a TTL on every key.
//!
//! Every key of a family carries the family id as a hash tag (`{fid}`), every
//! per-user key the user id (`{uid}`), and every script, transaction and
//! pipeline touches the keys of one hash slot only, so the same code runs
//! on one Redis server and on Redis Cluster (the crate's async cluster
//! client, which follows slot moves and fail-overs by itself).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Cmd, Pipeline, RedisError, RedisFuture, Script, Value};

use crate::clock::UnixTime;
use crate::crypto::secret::TokenHash;
use crate::store::{
    AccessCheck, CodeGrant, CodeRedemption, FamilyView, NewFamily, RotateRequest, Rotation,
    StoreError, TokenStore,
};

const BACKEND: &str = "redis";

/// Upper bound on any one Redis operation, reconnects included.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Rotation in one atomic step (see `TokenStore::rotate`).
/// KEYS: family hash, family token hash.
/// ARGV: presented, successor, now, grace, idle_ttl, client_id.
const ROTATE: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'user', 'client', 'scope', 'created', 'idle_exp', 'abs_exp', 'revoked', 'current')
if not f[1] or f[2] ~= ARGV[6] or f[7] ~= '0' then return {'invalid'} end
local now = tonumber(ARGV[3])
local abs_exp = tonumber(f[6])
local exp = math.min(tonumber(f[5]), abs_exp)
if exp <= now then return {'invalid'} end
local rotated = redis.call('HGET', KEYS[2], ARGV[1])
if not rotated then return {'invalid'} end
if f[8] == ARGV[1] then
  local idle = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3], ARGV[2], '0')
  redis.call('HSET', KEYS[1], 'current', ARGV[2], 'idle_exp', tostring(idle))
  return {'rotated', f[1], f[2], f[3], f[4], tostring(math.min(idle, abs_exp))}
end
local grace = tonumber(ARGV[4])
if grace > 0 and rotated ~= '0' and f[8] == ARGV[2] and now - tonumber(rotated) <= grace then
  return {'grace', f[1], f[2], f[3], f[4], tostring(exp)}
end
redis.call('HSET', KEYS[1], 'revoked', ARGV[3])
return {'reuse'}
"#;

/// Revokes a family only if it exists (a bare hash would have no TTL).
const REVOKE_FAMILY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HGET', KEYS[1], 'revoked') == '0' then
  redis.call('HSET', KEYS[1], 'revoked', ARGV[1])
end
return 1
"#;

/// Marks a code used at most once. KEYS: code hash. ARGV: now.
const REDEEM_CODE: &str = r#"
local c = redis.call('HMGET', KEYS[1], 'client', 'user', 'redirect', 'scope', 'pkce', 'exp', 'family', 'used')
if not c[1] then return {'unknown'} end
if c[8] ~= '0' then return {'replayed', c[7]} end
if tonumber(c[6]) <= tonumber(ARGV[1]) then return {'unknown'} end
redis.call('HSET', KEYS[1], 'used', ARGV[1])
return {'fresh', c[1], c[2], c[3], c[4], c[5], c[6], c[7]}
"#;

/// Checks a one-time code (see `TokenStore::check_otp`). Comparing HMAC
/// digests keyed by the server leaks nothing useful through timing.
/// KEYS: otp hash. ARGV: digest, now, max_attempts.
const CHECK_OTP: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'digest', 'exp', 'attempts')
if not o[1] then return 0 end
if tonumber(o[2]) <= tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) return 0 end
if o[1] == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if n >= tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Where the store's commands go: one server (or a Sentinel-less primary)
/// through a reconnecting manager, or a Redis Cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// How to reach Redis, from `TESSERA_REDIS_URL` and `TESSERA_REDIS_CLUSTER`.
/// No `Debug`: the URLs may carry a password.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTopology {
    Single(String),
    /// Seed nodes of a cluster; the client discovers the rest.
    Cluster(Vec<String>),
}

impl RedisTopology {
    /// Several comma-separated URLs, or `cluster`, mean Redis Cluster.
    pub fn parse(urls: &str, cluster: bool) -> Self {
        let nodes: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        match nodes.as_slice() {
            [one] if !cluster => RedisTopology::Single(one.clone()),
            _ => RedisTopology::Cluster(nodes),
        }
    }
}

/// Redis-backed [`TokenStore`].
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    rotate: Script,
    revoke_family: Script,
    redeem_code: Script,
    check_otp: Script,
    /// How long a "logged out everywhere" mark must outlive the tokens it kills.
    not_before_ttl: u64,
}

fn map_redis(e: RedisError) -> StoreError {
    use redis::ErrorKind::{
        BusyLoadingError, ClusterConnectionNotFound, ClusterDown, MasterDown, TryAgain,
    };
    let cluster_trouble = matches!(
        e.kind(),
        ClusterDown | MasterDown | TryAgain | ClusterConnectionNotFound | BusyLoadingError
    );
    if cluster_trouble
        || e.is_io_error()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_connection_dropped()
    {
        StoreError::Unavailable {
            backend: BACKEND,
            reason: e.to_string(),
        }
    } else {
        StoreError::Internal {
            backend: BACKEND,
            reason: e.to_string(),
        }
    }
}

fn family_key(fid: &str) -> String {
    format!("tessera:fam:{{{fid}}}")
}

fn family_tokens_key(fid: &str) -> String {
    format!("tessera:fam:{{{fid}}}:tok")
}

fn user_families_key(uid: &str) -> String {
    format!("tessera:user:{{{uid}}}:fams")
}

fn user_not_before_key(uid: &str) -> String {
    format!("tessera:user:{{{uid}}}:nbf")
}

fn revoked_access_key(jti: &str) -> String {
    format!("tessera:at:{{{jti}}}")
}

fn consents_key(uid: &str) -> String {
    format!("tessera:user:{{{uid}}}:consents")
}

fn otp_key(uid: &str) -> String {
    format!("tessera:user:{{{uid}}}:otp")
}

fn counter_key(key: &str, bucket: i64) -> String {
    format!("tessera:count:{{{key}}}:{bucket}")
}

fn code_key(hash: &TokenHash) -> String {
    format!("tessera:code:{{{}}}", hash.as_str())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal {
        backend: BACKEND,
        reason: format!("unexpected reply to {what}"),
    }
}

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
    /// Connects to one server or a cluster (`redis://` or `rediss://` URLs).
    /// Reconnects by itself after an outage; each operation is bounded by a
    /// timeout.
    pub async fn connect(
        topology: &RedisTopology,
        not_before_ttl: u64,
    ) -> Result<Self, StoreError> {
        let invalid = |e: RedisError| StoreError::Unavailable {
            backend: BACKEND,
            reason: format!("not a valid Redis URL ({:?})", e.kind()),
        };
        let connecting = async {
            match topology {
                RedisTopology::Single(url) => {
                    let client = redis::Client::open(url.as_str()).map_err(invalid)?;
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Duration::from_secs(1))
                        .set_response_timeout(OP_TIMEOUT)
                        .set_number_of_retries(2)
                        .set_max_delay(500);
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map(Connection::Single)
                        .map_err(map_redis)
                }
                RedisTopology::Cluster(nodes) => {
                    let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                        .connection_timeout(Duration::from_secs(1))
                        .response_timeout(OP_TIMEOUT)
                        .retries(2)
                        .max_retry_wait(500)
                        .build()
                        .map_err(invalid)?;
                    client
                        .get_async_connection()
                        .await
                        .map(Connection::Cluster)
                        .map_err(map_redis)
                }
            }
        };
        let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
            .await
            .map_err(|_| StoreError::Unavailable {
                backend: BACKEND,
                reason: "timed out connecting".into(),
            })??;
        Ok(Self {
            conn,
            rotate: Script::new(ROTATE),
            revoke_family: Script::new(REVOKE_FAMILY),
            redeem_code: Script::new(REDEEM_CODE),
            check_otp: Script::new(CHECK_OTP),
            not_before_ttl,
        })
    }

    /// Runs one operation with the store's timeout and error mapping.
    async fn run<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(OP_TIMEOUT, work).await {
            Ok(result) => result.map_err(map_redis),
            Err(_) => Err(StoreError::Unavailable {
                backend: BACKEND,
                reason: "operation timed out".into(),
            }),
        }
    }

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
impl TokenStore for RedisStore {
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
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        match reply.as_slice() {
            [kind] if kind == "unknown" => Ok(CodeRedemption::Unknown),
            [kind, family] if kind == "replayed" => Ok(CodeRedemption::Replayed {
                family_id: family.clone(),
            }),
            [kind, client, user, redirect, scope, pkce, exp, family] if kind == "fresh" => {
                Ok(CodeRedemption::Fresh(CodeGrant {
                    client_id: client.clone(),
                    user_id: user.clone(),
                    redirect_uri: non_empty(redirect),
                    scope: scope.clone(),
                    pkce: non_empty(pkce),
                    expires_at: exp.parse().map_err(|_| corrupt("redeem"))?,
                    family_id: family.clone(),
                }))
            }
            _ => Err(corrupt("redeem")),
        }
    }

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

    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        let key = consents_key(user_id);
        let member = format!("{client_id} {scope}");
        let mut conn = self.conn.clone();
        self.run(async move {
            redis::pipe()
                .atomic()
                .hset(&key, member, expires_at)
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
        let expires: Option<i64> = self
            .run(async move { conn.hget(&key, member).await })
            .await?;
        Ok(expires.is_some_and(|at| at > now))
    }

    async fn put_otp(
        &self,
        user_id: &str,
        digest: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        let key = otp_key(user_id);
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
        digest: &str,
        now: UnixTime,
        max_attempts: u32,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.check_otp.prepare_invoke();
        invocation
            .key(otp_key(user_id))
            .arg(digest)
            .arg(now)
            .arg(max_attempts);
        let valid: i64 = self
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(valid == 1)
    }

    async fn purge_expired(&self, _now: UnixTime) -> Result<(), StoreError> {
        // Every key carries a TTL: Redis expires them itself.
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.run(async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(|_| ())
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
