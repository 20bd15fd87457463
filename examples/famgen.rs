//! Fills a token store with realistic refresh-token families, for measuring
//! what the store holds per family and whether refresh rotation stays flat
//! as the store fills (issue #22; `benches/run-state.sh` drives it).
//!
//! ```text
//! cargo run --release --example famgen -- --store redis://127.0.0.1:6379 \
//!     --families 1000000 --concurrency 256 --seed 1
//! cargo run --release --example famgen -- --store sqlite:///tmp/fill --families 100000
//! ```
//!
//! Families are written through Tessera's own store API, the
//! [`FamilyStore`] trait (`create_family`, then `rotate`), so what lands
//! in the store is whatever layout the build has. `--store` takes a
//! `redis://` URL (the store `TESSERA_REDIS_URL` opens) or
//! `sqlite://DIR` (the embedded store `DIR/tessera.db`, as
//! `TESSERA_DATA_DIR=DIR` opens it). Nothing else is written: the users
//! the families name do not exist in a user store, no access token is
//! signed.
//!
//! The mix, drawn from `--seed` (the same seed writes the same families,
//! ids included, whatever `--concurrency`; the token secrets themselves
//! come from the OS generator):
//! - users with 1 to 5 families each, uniformly (mean 3); the last user
//!   takes what is left of `--families`;
//! - each family: with probability 0.6 a user-API login of the built-in
//!   first-party client `tessera` (scope `account email openid phone
//!   profile`, what `/api/users/login` grants a user; the login is its own
//!   session: session id = family id, `auth_time` = creation), else a
//!   family of one of 3 third-party clients through `/authorize` (scope
//!   `email offline_access openid profile`; one browser session per user,
//!   shared by all the user's third-party families, with its sign-in time
//!   as `auth_time`);
//! - with probability 0.05 a family is DPoP-bound (a 43-character `jkt`);
//! - created at a uniform time in the last 7 days, then rotated 0 to 20
//!   times (uniform) at evenly spaced times up to now, each rotation
//!   presenting the current token and its successor derived as
//!   `TokenService::rotate` derives it (HMAC under a successor key);
//! - lifetimes from the default configuration (`Config::default()`: idle
//!   14 days, absolute 30 days, `keep_until` = absolute + the longest
//!   access-token lifetime + leeway), computed as `TokenService` does;
//!   user ids and family ids are 24 hex digits (ObjectId-shaped, a
//!   family id starting with its creation time), client ids 22
//!   base64url characters, as Tessera makes them; every credential epoch 0.
//!
//! Prints progress to stderr and one JSON line (families, users,
//! rotations, seconds, families/s) to stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tessera::config::Config;
use tessera::crypto::secret::{RefreshToken, hmac_sha256};
use tessera::domain::tokens::FIRST_PARTY_CLIENT_ID;
use tessera::store::redis::{RedisStore, RedisTopology};
use tessera::store::sqlite::SqliteStore;
use tessera::store::{FamilyStore, NewFamily, RotateRequest, Rotation};

/// What a user-API login grants a user (`scope::login_scope("user")`).
const LOGIN_SCOPE: &str = "account email openid phone profile";
/// What the third-party relying parties ask for, canonical (sorted).
const RP_SCOPE: &str = "email offline_access openid profile";
const THIRD_PARTY_CLIENTS: usize = 3;
const MAX_ROTATIONS: u64 = 20;
/// How far back families were created.
const CREATED_WITHIN: i64 = 7 * 24 * 3600;

struct Options {
    store: String,
    families: u64,
    concurrency: usize,
    seed: u64,
}

fn parse_options() -> Options {
    let mut options = Options {
        store: "redis://127.0.0.1:6379".into(),
        families: 10_000,
        concurrency: 128,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--store" => options.store = value(),
            "--families" => options.families = value().parse().expect("a number"),
            "--concurrency" => options.concurrency = value().parse().expect("a number"),
            "--seed" => options.seed = value().parse().expect("a number"),
            other => {
                panic!("unknown flag {other} (--store URL --families N --concurrency N --seed N)")
            }
        }
    }
    assert!(options.concurrency > 0, "--concurrency must be positive");
    options
}

/// SplitMix64: small, seedable, good enough to draw a mix (not secrets).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Self(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes()[..chunk.len()]);
        }
        out
    }

    /// A 24-hex-digit id shaped like `secret::new_object_id(time)`.
    fn object_id(&mut self, time: i64) -> String {
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&(time as u32).to_be_bytes());
        id[4..].copy_from_slice(&self.bytes::<8>());
        hex::encode(id)
    }
}

/// Lifetimes as `TokenService` applies them to a family.
#[derive(Clone, Copy)]
struct Lifetimes {
    idle: u64,
    absolute: u64,
    keep_after_expiry: u64,
}

/// Everything shared by the workers.
struct Plan {
    store: Arc<dyn FamilyStore>,
    seed: u64,
    now: i64,
    lifetimes: Lifetimes,
    successor_key: [u8; 32],
    third_party: Vec<String>,
    /// Families of each user, in user order.
    per_user: Vec<u8>,
    next_user: AtomicUsize,
    families_done: AtomicU64,
    rotations_done: AtomicU64,
}

/// Writes user `n`'s families.
async fn write_user(plan: &Plan, n: usize) {
    let mut rng = Rng::new(plan.seed, n as u64 + 1);
    // Users signed up within the last year, before their families.
    let signed_up = plan.now - CREATED_WITHIN - rng.below(365 * 86_400) as i64;
    let user_id = rng.object_id(signed_up);
    // The browser session of the user's third-party families, and when the
    // user signed in to it (before the first of them was created).
    let browser_session_signed_in = plan.now - CREATED_WITHIN - rng.below(3600) as i64;
    let browser_session = rng.object_id(browser_session_signed_in);
    for _ in 0..plan.per_user[n] {
        let created = plan.now - rng.below(CREATED_WITHIN as u64) as i64;
        let id = rng.object_id(created);
        let first_party = rng.chance(0.6);
        let (client_id, scope, session_id, auth_time) = if first_party {
            (FIRST_PARTY_CLIENT_ID, LOGIN_SCOPE, id.clone(), created)
        } else {
            let client = &plan.third_party[rng.below(THIRD_PARTY_CLIENTS as u64) as usize];
            (
                client.as_str(),
                RP_SCOPE,
                browser_session.clone(),
                browser_session_signed_in,
            )
        };
        let jkt = rng
            .chance(0.05)
            .then(|| URL_SAFE_NO_PAD.encode(rng.bytes::<32>()));
        let rotations = rng.below(MAX_ROTATIONS + 1);

        let mut token = RefreshToken::generate(&id);
        let absolute = created + plan.lifetimes.absolute as i64;
        plan.store
            .create_family(&NewFamily {
                id: id.clone(),
                user_id: user_id.clone(),
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                created_at: created,
                idle_expires_at: (created + plan.lifetimes.idle as i64).min(absolute),
                absolute_expires_at: absolute,
                first_token: token.hash(),
                epoch: 0,
                session_id,
                auth_time,
                keep_until: absolute + plan.lifetimes.keep_after_expiry as i64,
                jkt: jkt.clone(),
                // As `TokenService` sets it: the built-in client can be
                // neither deleted nor changed, so it keeps no client index.
                client_indexed: client_id != FIRST_PARTY_CLIENT_ID,
            })
            .await
            .unwrap_or_else(|e| panic!("create_family: {e}"));
        // Evenly spaced rotations from the creation up to now.
        let step = (plan.now - created) / (rotations as i64 + 1);
        for r in 1..=rotations {
            let successor = token.successor(&plan.successor_key);
            let rotation = plan
                .store
                .rotate(&RotateRequest {
                    family_id: &id,
                    client_id,
                    presented: &token.hash(),
                    successor: &successor.hash(),
                    now: created + step * r as i64,
                    grace: 0,
                    idle_ttl: plan.lifetimes.idle,
                    jkt: jkt.as_deref(),
                })
                .await
                .unwrap_or_else(|e| panic!("rotate: {e}"));
            assert!(
                matches!(rotation, Rotation::Rotated(_)),
                "rotation {r} of family {id} was {rotation:?}, not Rotated"
            );
            token = successor;
        }
        plan.families_done.fetch_add(1, Ordering::Relaxed);
        plan.rotations_done.fetch_add(rotations, Ordering::Relaxed);
    }
}

/// The store `--store` names, behind the trait only.
async fn open_store(url: &str, config: &Config) -> Arc<dyn FamilyStore> {
    if let Some(dir) = url.strip_prefix("sqlite://") {
        let dir = std::path::Path::new(dir);
        let dir = if dir.extension().is_some_and(|e| e == "db") {
            dir.parent().expect("a directory")
        } else {
            dir
        };
        Arc::new(SqliteStore::open(dir).unwrap_or_else(|e| panic!("sqlite: {e}")))
    } else {
        // As `Stores::open` sets it for the server.
        let epoch_ttl = config.refresh_absolute_ttl + config.retired_key_window() + 60;
        Arc::new(
            RedisStore::connect(&RedisTopology::parse(url, false), epoch_ttl)
                .await
                .unwrap_or_else(|e| panic!("redis: {e}")),
        )
    }
}

#[tokio::main]
async fn main() {
    let o = parse_options();
    let config = Config::default();
    let store = open_store(&o.store, &config).await;
    let mut rng = Rng::new(o.seed, 0);
    let mut per_user = Vec::new();
    let mut left = o.families;
    while left > 0 {
        let k = (rng.below(5) + 1).min(left);
        per_user.push(k as u8);
        left -= k;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let plan = Arc::new(Plan {
        store,
        seed: o.seed,
        now,
        lifetimes: Lifetimes {
            idle: config.refresh_idle_ttl.min(config.refresh_absolute_ttl),
            absolute: config.refresh_absolute_ttl,
            keep_after_expiry: config.retired_key_window(),
        },
        successor_key: hmac_sha256(&rng.bytes::<32>(), b"tessera refresh successor"),
        third_party: (0..THIRD_PARTY_CLIENTS)
            .map(|_| URL_SAFE_NO_PAD.encode(rng.bytes::<16>()))
            .collect(),
        per_user,
        next_user: AtomicUsize::new(0),
        families_done: AtomicU64::new(0),
        rotations_done: AtomicU64::new(0),
    });

    let began = Instant::now();
    let workers: Vec<_> = (0..o.concurrency)
        .map(|_| {
            let plan = plan.clone();
            tokio::spawn(async move {
                loop {
                    let n = plan.next_user.fetch_add(1, Ordering::Relaxed);
                    if n >= plan.per_user.len() {
                        break;
                    }
                    write_user(&plan, n).await;
                }
            })
        })
        .collect();
    let progress = {
        let plan = plan.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let done = plan.families_done.load(Ordering::Relaxed);
                eprintln!(
                    "famgen: {done} families, {} rotations, {:.0} s",
                    plan.rotations_done.load(Ordering::Relaxed),
                    began.elapsed().as_secs_f64()
                );
            }
        })
    };
    for worker in workers {
        worker.await.expect("a worker");
    }
    progress.abort();
    let seconds = began.elapsed().as_secs_f64();
    let families = plan.families_done.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "store": o.store.split("://").next(), "families": families,
            "users": plan.per_user.len(), "rotations": plan.rotations_done.load(Ordering::Relaxed),
            "seed": o.seed, "concurrency": o.concurrency, "seconds": seconds,
            "families_per_s": families as f64 / seconds,
        })
    );
}
