//! The Redis token store: refresh-token families, revoked access tokens,
//! authorization codes, consents, one-time codes and counters, with a TTL on
//! every key.
//!
//! Every key of a family carries the family id as a hash tag (`{fid}`), every
//! per-user key the user id (`{uid}`), and every script, transaction and
//! pipeline touches the keys of one hash slot only, so the same code runs
//! on one Redis server and on Redis Cluster (the crate's async cluster
//! client, which follows slot moves and fail-overs by itself).
//!
//! - this module: the connection, the topology, errors and timeouts, and the
//!   [`TokenStore`] impl (ping);
//! - `keys.rs`: the key layout;
//! - `families.rs`: the [`FamilyStore`](crate::store::FamilyStore) impl;
//! - `state.rs`: codes, counters, consents and one-time codes;
//! - `pushed.rs`: pushed authorization requests (RFC 9126);
//! - `replay.rs`: DPoP proofs already seen ([`ReplayStore`](crate::store::ReplayStore));
//! - `users.rs`: a user's list of families, and forgetting a deleted user;
//! - `scripts/*.lua`: the server-side scripts, one atomic step each.

mod families;
mod keys;
mod packed;
mod pushed;
mod replay;
mod state;
mod stored;
mod users;

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};

use crate::clock::UnixTime;
use crate::store::{OtpPurpose, StoreError, TokenStore};
use keys::{consents_key, legacy_user_families_key, otp_key, user_families_key};

const BACKEND: &str = "redis";

/// Upper bound on any one Redis operation, reconnects included.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Rotation in one atomic step (see `FamilyStore::rotate`). Every family
/// script starts with the prelude that moves a family of the old layout to
/// the compact one.
const ROTATE: &str = concat!(
    include_str!("scripts/upgrade.lua"),
    include_str!("scripts/rotate.lua")
);
/// Revokes a family only if it exists (a bare hash would have no TTL).
const REVOKE_FAMILY: &str = concat!(
    include_str!("scripts/upgrade.lua"),
    include_str!("scripts/revoke_family.lua")
);
/// Reads a family (moving it to the compact layout first if need be).
const READ_FAMILY: &str = concat!(
    include_str!("scripts/upgrade.lua"),
    include_str!("scripts/read_family.lua")
);
/// Marks a code used at most once.
const REDEEM_CODE: &str = include_str!("scripts/redeem_code.lua");
/// Checks a one-time code (see `OtpStore::check_otp`). Comparing HMAC
/// digests keyed by the server leaks nothing useful through timing.
const CHECK_OTP: &str = include_str!("scripts/check_otp.lua");
/// Undoes one hit of a counter, never below zero, never creating a key.
const RELEASE_COUNTER: &str = include_str!("scripts/release_counter.lua");
/// Moves a user's credential epoch (see `FamilyStore::revoke_user`).
const MOVE_EPOCH: &str = include_str!("scripts/move_epoch.lua");
/// Forgets a user's consents to one client (see `ConsentStore::revoke_consent`).
const REVOKE_CONSENT: &str = include_str!("scripts/revoke_consent.lua");

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
    read_family: Script,
    redeem_code: Script,
    check_otp: Script,
    release_counter: Script,
    move_epoch: Script,
    revoke_consent: Script,
    /// How long a moved credential epoch is kept: as long as anything of an
    /// earlier epoch (a family, an access token minted from one) may live.
    epoch_ttl: u64,
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

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal {
        backend: BACKEND,
        reason: format!("unexpected reply to {what}"),
    }
}

impl RedisStore {
    /// Connects to one server or a cluster (`redis://` or `rediss://` URLs).
    /// Reconnects by itself after an outage; each operation is bounded by a
    /// timeout.
    pub async fn connect(topology: &RedisTopology, epoch_ttl: u64) -> Result<Self, StoreError> {
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
            read_family: Script::new(READ_FAMILY),
            redeem_code: Script::new(REDEEM_CODE),
            check_otp: Script::new(CHECK_OTP),
            release_counter: Script::new(RELEASE_COUNTER),
            move_epoch: Script::new(MOVE_EPOCH),
            revoke_consent: Script::new(REVOKE_CONSENT),
            epoch_ttl,
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
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn purge_expired(&self, _now: UnixTime) -> Result<(), StoreError> {
        // Every key carries a TTL: Redis expires them itself.
        Ok(())
    }

    async fn forget_user(&self, user_id: &str) -> Result<(), StoreError> {
        // The families first, the index that finds them last: a failure
        // half-way leaves the index for a retry to find what is left.
        self.forget_families(user_id).await?;
        let mut keys = vec![
            user_families_key(user_id),
            legacy_user_families_key(user_id),
            consents_key(user_id),
        ];
        keys.extend(OtpPurpose::ALL.map(|purpose| otp_key(user_id, purpose)));
        // One slot ({uid}); the epoch key stays (see the trait).
        let mut conn = self.conn.clone();
        self.run(async move {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
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
