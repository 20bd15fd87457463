//! The counter contract of every token store, against the stores themselves
//! (embedded SQLite, one redis-server, a Redis Cluster): `hit` counts,
//! `count` reads, and `release` undoes one hit of the same window, never
//! below zero and never creating a count (on Redis: never a key without a
//! TTL).

use std::sync::Arc;

use tempfile::TempDir;
use tessera::clock::UnixTime;
use tessera::store::TokenStore;
use tessera::store::redis::{RedisStore, RedisTopology};
use tessera::store::sqlite::SqliteStore;

use crate::common::{Backend, redis_cluster, redis_server, unique_email};

const WINDOW: u64 = 3600;

/// The token store of `backend`, and the directory it lives in (SQLite).
async fn token_store(backend: Backend) -> (Arc<dyn TokenStore>, Option<TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            (Arc::new(store), Some(dir))
        }
        Backend::Redis | Backend::Mongo => {
            let topology = RedisTopology::parse(&redis_server().url, false);
            (
                Arc::new(RedisStore::connect(&topology, 60).await.unwrap()),
                None,
            )
        }
        Backend::RedisCluster => {
            let topology = RedisTopology::parse(&redis_cluster().urls(), true);
            (
                Arc::new(RedisStore::connect(&topology, 60).await.unwrap()),
                None,
            )
        }
    }
}

/// The start of a window a little in the future of the wall clock, so that
/// Redis TTLs (`EXPIREAT` the window's end) are real.
fn window_start() -> UnixTime {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let window = WINDOW as i64;
    (now.div_euclid(window) + 1) * window
}

async fn release_undoes_one_hit_and_never_goes_below_zero(backend: Backend) {
    let (store, _dir) = token_store(backend).await;
    let key = unique_email("release");
    let now = window_start() + 10;
    assert_eq!(store.release(&key, WINDOW, now).await.unwrap(), 0);
    assert_eq!(store.count(&key, WINDOW, now).await.unwrap(), 0);
    for expected in 1..=3 {
        assert_eq!(store.hit(&key, WINDOW, now).await.unwrap(), expected);
    }
    assert_eq!(store.release(&key, WINDOW, now + 1).await.unwrap(), 2);
    assert_eq!(store.count(&key, WINDOW, now).await.unwrap(), 2);
    assert_eq!(store.release(&key, WINDOW, now).await.unwrap(), 1);
    assert_eq!(store.release(&key, WINDOW, now).await.unwrap(), 0);
    assert_eq!(store.release(&key, WINDOW, now).await.unwrap(), 0, "floor");
    assert_eq!(store.count(&key, WINDOW, now).await.unwrap(), 0);
    assert_eq!(
        store.hit(&key, WINDOW, now).await.unwrap(),
        1,
        "counts again"
    );
}

async fn release_only_touches_its_own_window(backend: Backend) {
    let (store, _dir) = token_store(backend).await;
    let key = unique_email("window");
    let now = window_start();
    assert_eq!(store.hit(&key, WINDOW, now).await.unwrap(), 1);
    let next = now + WINDOW as i64;
    assert_eq!(store.release(&key, WINDOW, next).await.unwrap(), 0);
    assert_eq!(store.count(&key, WINDOW, next).await.unwrap(), 0);
    assert_eq!(store.count(&key, WINDOW, now).await.unwrap(), 1);
    assert_eq!(store.hit(&key, WINDOW, next).await.unwrap(), 1);
    assert_eq!(store.release(&key, WINDOW, now).await.unwrap(), 0);
    assert_eq!(store.count(&key, WINDOW, next).await.unwrap(), 1);
}

mod sqlite {
    use super::*;

    #[tokio::test]
    async fn release_undoes_one_hit_and_never_goes_below_zero() {
        super::release_undoes_one_hit_and_never_goes_below_zero(Backend::Sqlite).await
    }

    #[tokio::test]
    async fn release_only_touches_its_own_window() {
        super::release_only_touches_its_own_window(Backend::Sqlite).await
    }
}

mod redis {
    use super::*;

    #[tokio::test]
    async fn release_undoes_one_hit_and_never_goes_below_zero() {
        super::release_undoes_one_hit_and_never_goes_below_zero(Backend::Redis).await
    }

    #[tokio::test]
    async fn release_only_touches_its_own_window() {
        super::release_only_touches_its_own_window(Backend::Redis).await
    }

    /// The key a counter of `key` has in the window of `now` (see
    /// `store::redis::keys::counter_key`).
    fn counter_key(key: &str, now: UnixTime) -> String {
        format!("tessera:count:{{{key}}}:{}", now.div_euclid(WINDOW as i64))
    }

    /// Releasing never creates a key, and keeps the TTL of the one `hit` made.
    #[tokio::test]
    async fn release_creates_no_key_and_keeps_the_ttl() {
        let (store, _dir) = token_store(Backend::Redis).await;
        let client = ::redis::Client::open(redis_server().url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let key = unique_email("ttl");
        let now = window_start() + 5;
        let raw = counter_key(&key, now);
        assert_eq!(store.release(&key, WINDOW, now).await.unwrap(), 0);
        let exists: bool = ::redis::cmd("EXISTS")
            .arg(&raw)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!exists, "a release of nothing created {raw}");
        store.hit(&key, WINDOW, now).await.unwrap();
        store.hit(&key, WINDOW, now).await.unwrap();
        for left in [1, 0, 0] {
            assert_eq!(store.release(&key, WINDOW, now).await.unwrap(), left);
            let ttl: i64 = ::redis::cmd("TTL")
                .arg(&raw)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0, "{raw} lost its TTL ({ttl})");
            let value: u64 = ::redis::cmd("GET")
                .arg(&raw)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(value, left);
        }
    }
}

mod redis_cluster {
    use super::*;

    #[tokio::test]
    async fn release_undoes_one_hit_and_never_goes_below_zero() {
        super::release_undoes_one_hit_and_never_goes_below_zero(Backend::RedisCluster).await
    }

    #[tokio::test]
    async fn release_only_touches_its_own_window() {
        super::release_only_touches_its_own_window(Backend::RedisCluster).await
    }
}
