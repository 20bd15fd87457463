//! The compact Redis layout of refresh-token families: one small hash per
//! family whatever its number of rotations, reuse of an ancestor detected
//! without any token history, and families written by older versions (the
//! old layout) still working, found by every index reader, moved as met.

use ::redis::AsyncCommands;
use ::redis::aio::MultiplexedConnection;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest;
use tessera::config::Secret;
use tessera::crypto::secret::{RefreshToken, hmac_sha256, new_object_id};
use tessera::domain::clients::NewClient;
use tessera::domain::tokens::UserGrant;
use tessera::store::ClientRecord;

use crate::common::{
    Backend, PASSWORD, TestApp, TestUser, assert_invalid_token, assert_oauth_error, body,
};

/// The token secret of these tests' apps, so a test can derive successors
/// as the server does.
const TOKEN_SECRET: &str = "redis layout tests: a token secret of 32+ characters";

/// The successor key the server derives from [`TOKEN_SECRET`].
fn successor_key() -> [u8; 32] {
    hmac_sha256(TOKEN_SECRET.as_bytes(), b"tessera refresh successor")
}

async fn spawn(grace: u64) -> TestApp {
    TestApp::spawn_on_with(Backend::Redis, |c| {
        c.token_secret = Some(Secret::new(TOKEN_SECRET.to_owned()));
        c.refresh_reuse_grace = grace;
    })
    .await
}

async fn redis(app: &TestApp) -> MultiplexedConnection {
    let url = app.config.redis_url.as_ref().expect("redis").expose();
    ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn refresh(app: &TestApp, client_id: &str, token: &str) -> reqwest::Response {
    app.post_form(
        "/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token),
        ],
    )
    .await
}

fn string(v: &Value, key: &str) -> String {
    v[key].as_str().expect(key).to_owned()
}

/// Refreshes `token` as the first-party client; (access, refresh).
async fn rotated(app: &TestApp, token: &str) -> (String, String) {
    let response = refresh(app, "tessera", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = body(response).await;
    (
        string(&tokens, "access_token"),
        string(&tokens, "refresh_token"),
    )
}

/// The family ids `/api/users/sessions` lists for `user`.
async fn listed_families(app: &TestApp, user: &TestUser) -> Vec<String> {
    let listed = body(
        app.get_auth("/api/users/sessions", &user.access_token)
            .await,
    )
    .await;
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| string(s, "id"))
        .collect()
}

fn family_of(refresh_token: &str) -> String {
    RefreshToken::parse(refresh_token)
        .expect("a refresh token")
        .family_id()
        .to_owned()
}

fn short_digest(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes())[..16].to_vec()
}

/// A login and `rotations` refreshes: every refresh token of the chain,
/// oldest first, and the newest access token.
async fn chain(app: &TestApp, user: &TestUser, rotations: usize) -> (Vec<String>, String) {
    let tokens = body(app.login(&user.email, PASSWORD).await).await;
    let mut access = string(&tokens, "access_token");
    let mut chain = vec![string(&tokens, "refresh_token")];
    for _ in 0..rotations {
        let (next_access, next) = rotated(app, chain.last().unwrap()).await;
        access = next_access;
        chain.push(next);
    }
    (chain, access)
}

#[tokio::test]
async fn a_family_is_one_small_hash_whatever_its_rotations() {
    let app = spawn(0).await;
    let user = app.user("compact").await;
    let (tokens, access) = chain(&app, &user, 3).await;
    let fid = family_of(&tokens[0]);
    let mut conn = redis(&app).await;
    let key = format!("tf{{{fid}}}");

    let old: u32 = conn
        .exists(&[
            format!("tessera:fam:{{{fid}}}"),
            format!("tessera:fam:{{{fid}}}:tok"),
        ])
        .await
        .unwrap();
    assert_eq!(old, 0, "no old-layout key, no token history");
    let generation: u64 = conn.hget(&key, "n").await.unwrap();
    assert_eq!(generation, 3);
    let current: Vec<u8> = conn.hget(&key, "h").await.unwrap();
    assert_eq!(current, short_digest(&tokens[3]));
    let revoked: bool = conn.hexists(&key, "r").await.unwrap();
    assert!(!revoked);
    let encoding: String = ::redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(encoding, "listpack");
    let expires: i64 = ::redis::cmd("EXPIRETIME")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(expires > app.clock.now() + app.config.refresh_absolute_ttl as i64);

    let bytes: u64 = ::redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let index = format!("tu{{{}}}", user.id);
    let index_bytes: u64 = ::redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&index)
        .query_async(&mut conn)
        .await
        .unwrap();
    let members: Vec<(Vec<u8>, Vec<u8>)> = conn.hgetall(&index).await.unwrap();
    eprintln!(
        "MEMORY USAGE {key}: {bytes} bytes; user index {index_bytes} bytes for {} families",
        members.len()
    );
    // Measured on Redis 7.0 (jemalloc): 168 bytes (a 96-byte listpack, the
    // 32-byte key, the object and its dict entry); a user whose epoch moved
    // (13 more bytes of fields) takes the next listpack class.
    assert!(bytes <= 200, "a family takes {bytes} bytes");
    // The family's own session: its 12 raw bytes, no session named.
    assert!(members.contains(&(hex::decode(&fid).unwrap(), Vec::new())));
    // Packed: the user id raw, the scope as bits, no client (the built-in one).
    let user_field: Vec<u8> = conn.hget(&key, "u").await.unwrap();
    assert_eq!(user_field, hex::decode(&user.id).unwrap());
    let scope_field: Vec<u8> = conn.hget(&key, "s").await.unwrap();
    assert_eq!(scope_field.len(), 2, "{scope_field:?}");
    let client_field: bool = conn.hexists(&key, "c").await.unwrap();
    assert!(!client_field, "the built-in client is left out");
    // The built-in client's families are never indexed by client.
    let (_, buckets): (u64, Vec<String>) = ::redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("tc{tessera}*")
        .arg("COUNT")
        .arg(100_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(buckets.is_empty(), "{buckets:?}");

    // More rotations do not grow it.
    let mut last = tokens[3].clone();
    for _ in 0..20 {
        last = rotated(&app, &last).await.1;
    }
    let after: u64 = ::redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        after <= bytes + 8,
        "{after} after 23 rotations, {bytes} after 3"
    );
    let generation: u64 = conn.hget(&key, "n").await.unwrap();
    assert_eq!(generation, 23);
    assert_eq!(
        app.get_auth("/api/users/me", &access).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn ancestors_two_and_five_rotations_back_revoke_the_family() {
    let app = spawn(0).await;
    let user = app.user("ancestors").await;
    let mut conn = redis(&app).await;
    for back in [2, 5] {
        let (tokens, access) = chain(&app, &user, 6).await;
        let current = tokens.last().unwrap();
        let ancestor = &tokens[tokens.len() - 1 - back];
        assert_oauth_error(
            refresh(&app, "tessera", ancestor).await,
            400,
            "invalid_grant",
        )
        .await;
        // The whole family is dead: its newest token and its access tokens.
        assert_oauth_error(
            refresh(&app, "tessera", current).await,
            400,
            "invalid_grant",
        )
        .await;
        assert_invalid_token(app.get_auth("/api/users/me", &access).await).await;
        let revoked: bool = conn
            .hexists(format!("tf{{{}}}", family_of(current)), "r")
            .await
            .unwrap();
        assert!(revoked, "{back} rotations back");
    }
}

#[tokio::test]
async fn a_forged_token_is_invalid_and_leaves_the_family_alive() {
    let app = spawn(0).await;
    let user = app.user("forged").await;
    let (tokens, access) = chain(&app, &user, 2).await;
    let fid = family_of(&tokens[0]);
    // A real family id, a secret the server never derived.
    let forged = RefreshToken::generate(&fid);
    assert_oauth_error(
        refresh(&app, "tessera", forged.expose()).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        app.get_auth("/api/users/me", &access).await.status(),
        StatusCode::OK
    );
    rotated(&app, &tokens[2]).await;
}

#[tokio::test]
async fn the_predecessor_within_the_grace_gets_the_same_successor() {
    let app = spawn(60).await;
    let user = app.user("grace").await;
    let (first_access, first) = rotated(&app, &user.refresh_token).await;
    let (_, again) = rotated(&app, &user.refresh_token).await;
    assert_eq!(again, first, "the same successor, no fork");
    // Past the grace, the predecessor is reuse.
    app.clock.advance(61);
    assert_oauth_error(
        refresh(&app, "tessera", &user.refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(refresh(&app, "tessera", &first).await, 400, "invalid_grant").await;
    assert_invalid_token(app.get_auth("/api/users/me", &first_access).await).await;
}

/// What older versions wrote for a family: its hash, every token digest,
/// and its user, client and (if any) session sets.
/// Registers a public third-party client (code and refresh grants) allowed
/// `scopes`; its record.
async fn third_party(app: &TestApp, name: &str, scopes: &[&str]) -> ClientRecord {
    let (client_id, _) = app
        .client(NewClient {
            name: name.into(),
            public: true,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: vec!["https://third-party.example/cb".into()],
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..NewClient::default()
        })
        .await;
    app.state
        .user_store
        .client(&client_id)
        .await
        .unwrap()
        .unwrap()
}

/// Starts a family of `client` for `user` in browser session `session_id`,
/// as a code exchange would; its id and first refresh token.
async fn start_family(
    app: &TestApp,
    user: &TestUser,
    client: &ClientRecord,
    session_id: &str,
    scope: &str,
) -> (String, String) {
    let epoch = app.state.tokens.credential_epoch(&user.id).await.unwrap();
    let fid = app.state.tokens.new_family_id();
    let issued = app
        .state
        .tokens
        .start_session(
            UserGrant {
                user_id: &user.id,
                role: "user",
                client,
                scope,
                with_refresh: true,
                epoch,
                session_id,
                auth_time: app.clock.now(),
                nonce: None,
                jkt: None,
            },
            fid.clone(),
        )
        .await
        .unwrap();
    (fid, issued.refresh_token.unwrap().expose().to_owned())
}

struct LegacyFamily<'a> {
    id: &'a str,
    user_id: &'a str,
    client_id: &'a str,
    scope: &'a str,
    session_id: Option<&'a str>,
    /// Every token issued, oldest first; the last is current.
    tokens: &'a [RefreshToken],
    epoch: u64,
}

impl<'a> LegacyFamily<'a> {
    /// A family of the built-in client from a user-API login (its own
    /// session), scope `account`.
    fn first_party(id: &'a str, user_id: &'a str, tokens: &'a [RefreshToken], epoch: u64) -> Self {
        Self {
            id,
            user_id,
            client_id: "tessera",
            scope: "account",
            session_id: None,
            tokens,
            epoch,
        }
    }
}

async fn write_legacy(app: &TestApp, conn: &mut MultiplexedConnection, f: LegacyFamily<'_>) {
    let now = app.clock.now();
    let keep_until = now + 30 * 86_400;
    let family = format!("tessera:fam:{{{}}}", f.id);
    let tokens = format!("tessera:fam:{{{}}}:tok", f.id);
    let current = f.tokens.last().unwrap().hash();
    let _: () = ::redis::pipe()
        .hset_multiple(
            &family,
            &[
                ("user", f.user_id.to_owned()),
                ("client", f.client_id.to_owned()),
                ("scope", f.scope.to_owned()),
                ("created", (now - 100).to_string()),
                ("idle_exp", (now + 3600).to_string()),
                ("abs_exp", (now + 86_400).to_string()),
                ("revoked", "0".to_owned()),
                ("current", current.as_str().to_owned()),
                ("epoch", f.epoch.to_string()),
                ("sid", f.session_id.unwrap_or(f.id).to_owned()),
                ("auth_time", (now - 100).to_string()),
                ("used", (now - 10).to_string()),
            ],
        )
        .expire_at(&family, keep_until)
        .query_async(conn)
        .await
        .unwrap();
    for (i, token) in f.tokens.iter().enumerate() {
        let rotated_at = if i + 1 == f.tokens.len() {
            "0".to_owned()
        } else {
            (now - 50).to_string()
        };
        let _: () = conn
            .hset(&tokens, token.hash().as_str(), rotated_at)
            .await
            .unwrap();
    }
    let _: () = conn.expire_at(&tokens, keep_until).await.unwrap();
    let mut sets = vec![
        format!("tessera:user:{{{}}}:fams", f.user_id),
        format!("tessera:client:{{{}}}:fams", f.client_id),
    ];
    if let Some(sid) = f.session_id {
        sets.push(format!("tessera:sess:{{{sid}}}:fams"));
    }
    for set in sets {
        let _: () = conn.sadd(&set, f.id).await.unwrap();
        let _: () = conn.expire_at(&set, keep_until).await.unwrap();
    }
}

/// A chain of `len` tokens of family `fid` as the server derives them.
fn legacy_chain(fid: &str, len: usize) -> Vec<RefreshToken> {
    let key = successor_key();
    let mut tokens = vec![RefreshToken::generate(fid)];
    while tokens.len() < len {
        let next = tokens.last().unwrap().successor(&key);
        tokens.push(next);
    }
    tokens
}

#[tokio::test]
async fn families_of_the_old_layout_keep_working() {
    let app = spawn(0).await;
    let user = app.user("legacy").await;
    let epoch = app.state.tokens.credential_epoch(&user.id).await.unwrap();
    let mut conn = redis(&app).await;
    let scope = "account email openid phone profile";

    // A family rotated twice before the upgrade: refreshed through the API,
    // it moves to the compact layout with its TTL and its history's length.
    let a = new_object_id(app.clock.now());
    let a_tokens = legacy_chain(&a, 3);
    write_legacy(
        &app,
        &mut conn,
        LegacyFamily {
            scope,
            ..LegacyFamily::first_party(&a, &user.id, &a_tokens, epoch)
        },
    )
    .await;
    let old_expiry: i64 = ::redis::cmd("EXPIRETIME")
        .arg(format!("tessera:fam:{{{a}}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let (a_access, a_next) = rotated(&app, a_tokens[2].expose()).await;
    assert_eq!(
        app.get_auth("/api/users/me", &a_access).await.status(),
        StatusCode::OK
    );
    let old: u32 = conn
        .exists(&[
            format!("tessera:fam:{{{a}}}"),
            format!("tessera:fam:{{{a}}}:tok"),
        ])
        .await
        .unwrap();
    assert_eq!(old, 0, "the old keys are gone");
    let key = format!("tf{{{a}}}");
    let generation: u64 = conn.hget(&key, "n").await.unwrap();
    assert_eq!(generation, 3);
    let current: Vec<u8> = conn.hget(&key, "h").await.unwrap();
    assert_eq!(current, short_digest(&a_next));
    let expiry: i64 = ::redis::cmd("EXPIRETIME")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((expiry - old_expiry).abs() <= 1, "{expiry} vs {old_expiry}");
    // A token from before the upgrade, three rotations back: reuse.
    assert_oauth_error(
        refresh(&app, "tessera", a_tokens[0].expose()).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(
        refresh(&app, "tessera", &a_next).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_invalid_token(app.get_auth("/api/users/me", &a_access).await).await;

    // A family never touched since the upgrade: listed, and found by
    // "sign out everywhere" through the old user set.
    let b = new_object_id(app.clock.now());
    let b_tokens = legacy_chain(&b, 1);
    write_legacy(
        &app,
        &mut conn,
        LegacyFamily {
            scope,
            ..LegacyFamily::first_party(&b, &user.id, &b_tokens, epoch)
        },
    )
    .await;
    let ids = listed_families(&app, &user).await;
    assert!(ids.contains(&b), "{ids:?}");
    assert!(ids.contains(&family_of(&user.refresh_token)), "{ids:?}");
    assert!(!ids.contains(&a), "revoked");

    // A third-party client's families, one of each layout, found when the
    // client is deleted: the old client set, and today's day buckets.
    let client = third_party(&app, "Layout", &["profile"]).await;
    let client_id = client.id.clone();
    let c = new_object_id(app.clock.now());
    write_legacy(
        &app,
        &mut conn,
        LegacyFamily {
            id: &c,
            user_id: &user.id,
            client_id: &client_id,
            scope: "profile",
            session_id: Some("legacy-session"),
            tokens: &legacy_chain(&c, 2),
            epoch,
        },
    )
    .await;
    let (d, _) = start_family(&app, &user, &client, "compact-session", "profile").await;
    let keep_until: i64 = ::redis::cmd("EXPIRETIME")
        .arg(format!("tf{{{d}}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let bucket: Vec<u8> = conn
        .get(format!("tc{{{client_id}}}:{}", keep_until / 86_400))
        .await
        .unwrap();
    assert_eq!(bucket, hex::decode(&d).unwrap(), "12 raw bytes");
    // The user's index names the family's session; no session index.
    let session: Option<Vec<u8>> = conn
        .hget(format!("tu{{{}}}", user.id), hex::decode(&d).unwrap())
        .await
        .unwrap();
    assert_eq!(session.as_deref(), Some(&b"compact-session"[..]));
    let session_index: bool = conn.exists("ts{compact-session}").await.unwrap();
    assert!(!session_index);

    let admin = app.admin_token("layout-admin").await;
    let deleted = app
        .http
        .delete(app.url(&format!("/api/admin/clients/{client_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for fid in [&c, &d] {
        let revoked: bool = conn.hexists(format!("tf{{{fid}}}"), "r").await.unwrap();
        assert!(revoked, "{fid} revoked with its client");
    }

    // Sign out everywhere finds the untouched old-layout family too.
    let signed_out = app
        .http
        .delete(app.url("/api/users/sessions"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let revoked: bool = conn.hexists(format!("tf{{{b}}}"), "r").await.unwrap();
    assert!(revoked, "the old-layout family was revoked");
    assert_oauth_error(
        refresh(&app, "tessera", b_tokens[0].expose()).await,
        400,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn an_unmoved_old_family_revocation_is_honoured_by_access_checks() {
    let app = spawn(0).await;
    let user = app.user("legacy-revoked").await;
    let epoch = app.state.tokens.credential_epoch(&user.id).await.unwrap();
    let mut conn = redis(&app).await;
    let fid = new_object_id(app.clock.now());
    write_legacy(
        &app,
        &mut conn,
        LegacyFamily::first_party(&fid, &user.id, &legacy_chain(&fid, 1), epoch),
    )
    .await;
    let check = tessera::store::AccessCheck {
        jti: "no-such-jti",
        sub: &user.id,
        family: Some(&fid),
        epoch,
    };
    let store = &app.state.token_store;
    assert!(!store.is_access_revoked(&check).await.unwrap());
    let _: () = conn
        .hset(format!("tessera:fam:{{{fid}}}"), "revoked", app.clock.now())
        .await
        .unwrap();
    assert!(store.is_access_revoked(&check).await.unwrap());
    // Moved by a read: still revoked, now in the compact layout.
    assert_eq!(store.family(&fid, app.clock.now()).await.unwrap(), None);
    assert!(store.is_access_revoked(&check).await.unwrap());
    let moved: bool = conn.hexists(format!("tf{{{fid}}}"), "r").await.unwrap();
    assert!(moved);
}

#[tokio::test]
async fn a_thief_rotating_past_256_times_is_still_caught() {
    let app = spawn(0).await;
    let user = app.user("outrun").await;
    // The victim's token, then a thief who rotates it 300 times: far more
    // than one walk (256 steps) reaches, but a checkpoint was written at
    // the 256th rotation.
    let (tokens, access) = chain(&app, &user, 300).await;
    let fid = family_of(&tokens[0]);
    let mut conn = redis(&app).await;
    let key = format!("tf{{{fid}}}");
    let checkpoints: Vec<u8> = conn.hget(&key, "p").await.unwrap();
    assert_eq!(checkpoints, short_digest(&tokens[256]), "one checkpoint");

    assert_oauth_error(
        refresh(&app, "tessera", &tokens[0]).await,
        400,
        "invalid_grant",
    )
    .await;
    let revoked: bool = conn.hexists(&key, "r").await.unwrap();
    assert!(revoked, "the victim's replay revoked the family");
    assert_oauth_error(
        refresh(&app, "tessera", tokens.last().unwrap()).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_invalid_token(app.get_auth("/api/users/me", &access).await).await;
}

#[tokio::test]
async fn at_most_64_checkpoints_are_kept() {
    let app = spawn(0).await;
    let user = app.user("checkpoint-cap").await;
    let (tokens, _) = chain(&app, &user, 0).await;
    let fid = family_of(&tokens[0]);
    let mut conn = redis(&app).await;
    let key = format!("tf{{{fid}}}");
    // A family one rotation short of its 64th checkpoint, already holding
    // 64: the next checkpoint pushes the oldest out.
    let full = vec![7u8; 64 * 16];
    let _: () = conn
        .hset_multiple(&key, &[("n", b"16383".to_vec()), ("p", full)])
        .await
        .unwrap();
    let (_, successor) = rotated(&app, &tokens[0]).await;
    let checkpoints: Vec<u8> = conn.hget(&key, "p").await.unwrap();
    assert_eq!(checkpoints.len(), 64 * 16, "capped at 1 KiB");
    assert_eq!(&checkpoints[..63 * 16], &vec![7u8; 63 * 16][..]);
    assert_eq!(&checkpoints[63 * 16..], &short_digest(&successor)[..]);
}

#[tokio::test]
async fn a_long_old_family_keeps_its_last_256_tokens_recognisable() {
    let app = spawn(0).await;
    let user = app.user("legacy-long").await;
    let epoch = app.state.tokens.credential_epoch(&user.id).await.unwrap();
    let mut conn = redis(&app).await;
    let fid = new_object_id(app.clock.now());
    // 300 tokens before the upgrade (299 rotations).
    let tokens = legacy_chain(&fid, 300);
    write_legacy(
        &app,
        &mut conn,
        LegacyFamily::first_party(&fid, &user.id, &tokens, epoch),
    )
    .await;
    // Moved and rotated 20 times: token 44 is 275 rotations back, out of
    // one walk's reach but 255 steps before the checkpoint the move wrote.
    let mut current = rotated(&app, tokens[299].expose()).await.1;
    let key = format!("tf{{{fid}}}");
    let checkpoints: Vec<u8> = conn.hget(&key, "p").await.unwrap();
    assert_eq!(checkpoints, short_digest(tokens[299].expose()));
    for _ in 0..19 {
        current = rotated(&app, &current).await.1;
    }
    let generation: u64 = conn.hget(&key, "n").await.unwrap();
    assert_eq!(generation, 319);
    assert_oauth_error(
        refresh(&app, "tessera", tokens[44].expose()).await,
        400,
        "invalid_grant",
    )
    .await;
    let revoked: bool = conn.hexists(&key, "r").await.unwrap();
    assert!(revoked);
    assert_oauth_error(
        refresh(&app, "tessera", &current).await,
        400,
        "invalid_grant",
    )
    .await;
}

/// Writes an old-layout family of one token for `user` and returns its id.
async fn one_legacy_family(
    app: &TestApp,
    conn: &mut MultiplexedConnection,
    user: &TestUser,
) -> (String, RefreshToken) {
    let epoch = app.state.tokens.credential_epoch(&user.id).await.unwrap();
    let fid = new_object_id(app.clock.now());
    let tokens = legacy_chain(&fid, 1);
    write_legacy(
        app,
        conn,
        LegacyFamily::first_party(&fid, &user.id, &tokens, epoch),
    )
    .await;
    (fid, tokens[0].clone())
}

#[tokio::test]
async fn old_families_without_a_ttl_or_a_revoked_mark_or_a_client() {
    let app = spawn(0).await;
    let user = app.user("legacy-edges").await;
    let mut conn = redis(&app).await;
    let store = &app.state.token_store;
    let now = app.clock.now();

    // No TTL: the moved family expires a fixed two days after its
    // absolute expiry (longer than any access token minted from it).
    let (fid, token) = one_legacy_family(&app, &mut conn, &user).await;
    let old = format!("tessera:fam:{{{fid}}}");
    let _: () = conn.persist(&old).await.unwrap();
    let absolute: i64 = conn.hget(&old, "abs_exp").await.unwrap();
    let (_, next) = rotated(&app, token.expose()).await;
    let expiry: i64 = ::redis::cmd("EXPIRETIME")
        .arg(format!("tf{{{fid}}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(expiry, absolute + 2 * 86_400);
    rotated(&app, &next).await;

    // No `revoked` field: older readers took it for dead, and so does
    // every reader now, before the move and after it.
    let (fid, token) = one_legacy_family(&app, &mut conn, &user).await;
    let _: () = conn
        .hdel(format!("tessera:fam:{{{fid}}}"), "revoked")
        .await
        .unwrap();
    let epoch = app.state.tokens.credential_epoch(&user.id).await.unwrap();
    let check = tessera::store::AccessCheck {
        jti: "no-such-jti",
        sub: &user.id,
        family: Some(&fid),
        epoch,
    };
    assert!(store.is_access_revoked(&check).await.unwrap());
    assert_oauth_error(
        refresh(&app, "tessera", token.expose()).await,
        400,
        "invalid_grant",
    )
    .await;
    let revoked: bool = conn.hexists(format!("tf{{{fid}}}"), "r").await.unwrap();
    assert!(revoked, "moved as a revoked family");
    assert!(store.is_access_revoked(&check).await.unwrap());

    // No `client` (or idle or absolute expiry): no family; its keys go.
    for missing in ["client", "idle_exp", "abs_exp"] {
        let (fid, token) = one_legacy_family(&app, &mut conn, &user).await;
        let _: () = conn
            .hdel(format!("tessera:fam:{{{fid}}}"), missing)
            .await
            .unwrap();
        assert_eq!(store.family(&fid, now).await.unwrap(), None, "{missing}");
        assert_oauth_error(
            refresh(&app, "tessera", token.expose()).await,
            400,
            "invalid_grant",
        )
        .await;
        let left: u32 = conn
            .exists(&[
                format!("tf{{{fid}}}"),
                format!("tessera:fam:{{{fid}}}"),
                format!("tessera:fam:{{{fid}}}:tok"),
            ])
            .await
            .unwrap();
        assert_eq!(left, 0, "{missing}");
    }
}

#[tokio::test]
async fn deleting_a_client_reads_big_buckets_in_chunks() {
    let app = spawn(0).await;
    let user = app.user("big-bucket").await;
    let mut conn = redis(&app).await;
    let client = third_party(&app, "Busy", &["profile"]).await;
    let client_id = client.id.clone();
    let start = |session_id: &'static str| {
        let (app, user, client) = (&app, &user, &client);
        async move {
            start_family(app, user, client, session_id, "profile")
                .await
                .0
        }
    };
    let first = start("busy-1").await;
    let keep_until: i64 = ::redis::cmd("EXPIRETIME")
        .arg(format!("tf{{{first}}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let bucket = format!("tc{{{client_id}}}:{}", keep_until / 86_400);
    // 2,500 ids of families long gone: the real ones sit before and after,
    // across three chunks.
    let filler: Vec<u8> = (0..2_500u32)
        .flat_map(|i| {
            let mut id = [0u8; 12];
            id[8..].copy_from_slice(&i.to_be_bytes());
            id
        })
        .collect();
    let _: () = conn.append(&bucket, filler).await.unwrap();
    let last = start("busy-2").await;
    let len: usize = conn.strlen(&bucket).await.unwrap();
    assert_eq!(len, 12 * 2_502);

    let revoked = app
        .state
        .token_store
        .revoke_client(&client_id, app.clock.now())
        .await
        .unwrap();
    assert_eq!(revoked, 2_502);
    for fid in [&first, &last] {
        let revoked: bool = conn.hexists(format!("tf{{{fid}}}"), "r").await.unwrap();
        assert!(revoked, "{fid}");
    }
}

/// Rewrites a family of this version as the version before wrote it: ids
/// and scope as text, the client named even when it is the built-in one,
/// the user index's field as text with no session, and the session in an
/// index of its own (`ts{sid}`).
async fn write_as_version_six(
    conn: &mut MultiplexedConnection,
    user: &TestUser,
    f: &tessera::store::FamilyView,
) {
    let key = format!("tf{{{}}}", f.id);
    let keep_until: i64 = ::redis::cmd("EXPIRETIME")
        .arg(&key)
        .query_async(conn)
        .await
        .unwrap();
    let mut fields = vec![
        ("u", user.id.clone()),
        ("c", f.client_id.clone()),
        ("s", f.scope.clone()),
    ];
    if f.session_id != f.id {
        fields.push(("d", f.session_id.clone()));
    }
    let index = format!("tu{{{}}}", user.id);
    let _: () = ::redis::pipe()
        .hset_multiple(&key, &fields)
        .hdel(&index, hex::decode(&f.id).unwrap())
        .hset(&index, &f.id, "")
        .query_async(conn)
        .await
        .unwrap();
    if f.session_id != f.id {
        let session = format!("ts{{{}}}", f.session_id);
        let _: () = ::redis::pipe()
            .hset(&session, &f.id, "")
            .expire_at(&session, keep_until)
            .query_async(conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn families_of_the_version_before_keep_working() {
    let app = spawn(0).await;
    let user = app.user("version-six").await;
    let other = app.user("version-six-other").await;
    let store = &app.state.token_store;
    let mut conn = redis(&app).await;
    let client = third_party(&app, "Version six", &["profile"]).await;
    let client_id = client.id.clone();
    // A browser session with a third-party family, and a user-API login.
    let sid = new_object_id(app.clock.now());
    let (fid, token) = start_family(&app, &user, &client, &sid, "profile").await;
    let login = family_of(&user.refresh_token);
    let now = app.clock.now();
    for id in [&fid, &login] {
        let view = store.family(id, now).await.unwrap().expect("live");
        write_as_version_six(&mut conn, &user, &view).await;
        // Read back as it was.
        assert_eq!(store.family(id, now).await.unwrap(), Some(view));
    }
    let c: String = conn.hget(format!("tf{{{login}}}"), "c").await.unwrap();
    assert_eq!(c, "tessera", "the built-in client named, as version 6 did");

    // Both rotate (the built-in client matched whether named or left out).
    let response = refresh(&app, &client_id, &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let third_party_next = string(&body(response).await, "refresh_token");
    let (_, login_next) = rotated(&app, &user.refresh_token).await;
    // Both listed.
    let ids = listed_families(&app, &user).await;
    assert!(ids.contains(&fid) && ids.contains(&login), "{ids:?}");

    // Another user naming the session ends nothing of it.
    let ended = store.end_session(&other.id, &sid, now).await.unwrap();
    assert!(ended.is_empty(), "{ended:?}");
    // The session's index of version 6 finds its family.
    let ended = store.end_session(&user.id, &sid, now).await.unwrap();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].family_id, fid);
    assert!(!ended[0].kept);
    assert_oauth_error(
        refresh(&app, &client_id, &third_party_next).await,
        400,
        "invalid_grant",
    )
    .await;
    // A user-API login is its own session.
    let ended = store.end_session(&user.id, &login, now).await.unwrap();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_oauth_error(
        refresh(&app, "tessera", &login_next).await,
        400,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn a_session_ends_through_the_users_index() {
    let app = spawn(0).await;
    let user = app.user("index-session").await;
    let other = app.user("index-session-other").await;
    let store = &app.state.token_store;
    let client = third_party(&app, "Index session", &["profile", "offline_access"]).await;
    let start = |session_id: &'static str, scope: &'static str| {
        let (app, user, client) = (&app, &user, &client);
        async move { start_family(app, user, client, session_id, scope).await.0 }
    };
    // Session ids of any shape: the user's index packs them or keeps the text.
    let online = start("twelve-chars", "profile").await;
    let offline = start("twelve-chars", "offline_access profile").await;
    let elsewhere = start("another session", "profile").await;
    let now = app.clock.now();
    assert!(
        store
            .end_session(&other.id, "twelve-chars", now)
            .await
            .unwrap()
            .is_empty()
    );
    let mut ended = store
        .end_session(&user.id, "twelve-chars", now)
        .await
        .unwrap();
    ended.sort_by(|a, b| a.family_id.cmp(&b.family_id));
    let mut expected = vec![(online.clone(), false), (offline.clone(), true)];
    expected.sort();
    assert_eq!(
        ended
            .iter()
            .map(|f| (f.family_id.clone(), f.kept))
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(store.family(&online, now).await.unwrap(), None);
    assert!(store.family(&offline, now).await.unwrap().is_some());
    let still = store.family(&elsewhere, now).await.unwrap().expect("live");
    assert_eq!(still.session_id, "another session");
}
