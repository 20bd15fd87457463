//! Issuing tokens: RFC 9068 access tokens, refresh-token families with
//! rotation and reuse detection; revocation and introspection in
//! `introspection.rs`.

mod introspection;

pub use introspection::TokenInfo;

use std::sync::Arc;

use crate::clock::{Clock, UnixTime};
use crate::config::Config;
use crate::crypto::jwt::{self, AccessClaims, IdClaims};
use crate::crypto::keys::KeyRing;
use crate::crypto::secret::{RefreshToken, random_token};
use crate::domain::grants::GrantError;
use crate::store::{
    ClientRecord, FamilyView, NewFamily, RotateRequest, Rotation, StoreError, TokenStore,
};

/// The built-in first-party client that `/api/users/login` issues for.
/// NEVER CHANGE: refresh-token families are bound to it.
pub const FIRST_PARTY_CLIENT_ID: &str = "tessera";

/// The most successor-derivation steps spent on a token the store does
/// not know (Redis keeps no token history): an ancestor of any age is found
/// within them, as the store keeps a checkpoint every as many rotations; a
/// forged token with a real family id costs at most this many
/// HMAC+SHA-256 steps and changes nothing.
pub const MAX_ANCESTRY: u64 = crate::store::CHECKPOINT_EVERY;

/// Lifetimes, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub access: u64,
    pub refresh_idle: u64,
    pub refresh_absolute: u64,
    pub reuse_grace: u64,
}

/// A token response before it is serialised (RFC 6749 §5.1).
#[derive(Debug)]
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub refresh_token: Option<RefreshToken>,
    /// An OpenID Connect ID token, when the scope has `openid`.
    pub id_token: Option<String>,
    /// Whether the access token is bound to a DPoP key (`token_type: DPoP`).
    pub dpop_bound: bool,
}

/// Who a user token is for.
#[derive(Debug, Clone, Copy)]
pub struct UserGrant<'a> {
    pub user_id: &'a str,
    pub role: &'a str,
    pub client: &'a ClientRecord,
    pub scope: &'a str,
    /// Whether to start a refresh-token family.
    pub with_refresh: bool,
    /// The user's credential epoch read when the sign-in began (before the
    /// password was checked).
    pub epoch: u64,
    /// The sign-in session: the browser session of `/authorize`, or the
    /// login itself for the user API.
    pub session_id: &'a str,
    /// When the user signed in to that session.
    pub auth_time: UnixTime,
    /// The authorization request's `nonce`, for the ID token.
    pub nonce: Option<&'a str>,
    /// The DPoP key the request proved: the tokens (and the family) are
    /// bound to it.
    pub jkt: Option<&'a str>,
}

/// The user part of an access token.
#[derive(Clone, Copy)]
struct UserClaims<'a> {
    role: &'a str,
    session: &'a str,
    family: &'a str,
    epoch: u64,
}

/// What an ID token says beyond the access token it comes with.
struct IdTokenFor<'a> {
    user_id: &'a str,
    client: &'a ClientRecord,
    session_id: &'a str,
    auth_time: UnixTime,
    nonce: Option<&'a str>,
}

/// Signs access tokens and keeps refresh-token families.
pub struct TokenService {
    keys: Arc<KeyRing>,
    store: Arc<dyn TokenStore>,
    clock: Clock,
    issuer: String,
    audience: String,
    lifetimes: Lifetimes,
    /// Server-held key from which refresh-token successors are derived.
    successor_key: Vec<u8>,
    /// Seconds a family's state is kept past its absolute expiry: the
    /// longest an access token minted from it may still be accepted.
    keep_after_expiry: u64,
    /// The verifiers' clock leeway: a revocation marker must outlive it.
    leeway: u64,
    /// Seconds an ID token lives.
    id_token_ttl: u64,
    /// Where refresh-token reuse is recorded.
    audit: Arc<crate::domain::audit::Audit>,
}

impl TokenService {
    pub fn new(
        config: &Config,
        keys: Arc<KeyRing>,
        store: Arc<dyn TokenStore>,
        clock: Clock,
        successor_key: Vec<u8>,
        audit: Arc<crate::domain::audit::Audit>,
    ) -> Self {
        Self {
            keys,
            store,
            clock,
            issuer: config.issuer.clone(),
            audience: config.audience().to_owned(),
            lifetimes: Lifetimes {
                access: config.access_token_ttl,
                refresh_idle: config.refresh_idle_ttl,
                refresh_absolute: config.refresh_absolute_ttl,
                reuse_grace: config.refresh_reuse_grace,
            },
            successor_key,
            keep_after_expiry: config.retired_key_window(),
            leeway: config.clock_leeway,
            id_token_ttl: config.id_token_ttl,
            audit,
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn access_ttl(&self, client: &ClientRecord) -> u64 {
        client.access_token_ttl.unwrap_or(self.lifetimes.access)
    }

    fn idle_ttl(&self, client: &ClientRecord) -> u64 {
        client
            .refresh_token_ttl
            .unwrap_or(self.lifetimes.refresh_idle)
            .min(self.lifetimes.refresh_absolute)
    }

    /// Signs an access token; `user` for user tokens.
    fn sign_access(
        &self,
        sub: &str,
        client: &ClientRecord,
        scope: &str,
        user: Option<UserClaims<'_>>,
        jkt: Option<&str>,
        now: UnixTime,
    ) -> Result<String, GrantError> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: sub.to_owned(),
            aud: self.audience.clone(),
            exp: now + self.access_ttl(client) as i64,
            iat: now,
            jti: random_token::<16>(),
            client_id: client.id.clone(),
            scope: scope.to_owned(),
            role: user.map(|u| u.role.to_owned()),
            sid: user.map(|u| u.session.to_owned()),
            fid: user.map(|u| u.family.to_owned()),
            cep: user.map(|u| u.epoch),
            cnf: jkt.map(|jkt| tessera_resource::Confirmation {
                jkt: jkt.to_owned(),
            }),
        };
        Ok(jwt::sign(&claims, self.keys.current().active())?)
    }

    /// An ID token to go with `access_token` when `scope` has `openid`,
    /// signed with the RS256 key (OpenID Discovery §3).
    fn id_token_if_openid(
        &self,
        scope: &str,
        access_token: &str,
        id: IdTokenFor<'_>,
        now: UnixTime,
    ) -> Result<Option<String>, GrantError> {
        if !scope.split(' ').any(|s| s == crate::domain::scope::OPENID) {
            return Ok(None);
        }
        let keys = self.keys.current();
        let key = keys.id_token_key();
        let claims = IdClaims {
            iss: self.issuer.clone(),
            sub: id.user_id.to_owned(),
            aud: id.client.id.clone(),
            exp: now + self.id_token_ttl as i64,
            iat: now,
            auth_time: id.auth_time,
            nonce: id.nonce.map(str::to_owned),
            at_hash: Some(jwt::left_half_hash(access_token, key.alg())),
            azp: id.client.id.clone(),
            sid: id.session_id.to_owned(),
            amr: vec!["pwd".to_owned()],
        };
        Ok(Some(jwt::sign_jws(&claims, jwt::ID_TOKEN_TYP, key)?))
    }

    /// The claims of an ID token this server signed, `iss` checked, whether
    /// or not it has expired (RP-Initiated Logout §2 and `id_token_hint`
    /// accept expired ones); `None` for anything else.
    pub fn verify_id_token(&self, token: &str) -> Option<IdClaims> {
        if token.len() > 8 * 1024 {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some(jwt::ID_TOKEN_TYP) {
            return None;
        }
        let (alg, key) = self.keys.current().decoding_key(header.kid.as_deref()?)?;
        if header.alg != alg {
            return None;
        }
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        validation.set_issuer(&[&self.issuer]);
        jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// A Back-Channel Logout token (§2.4) for `client_id` about the session
    /// `session_id` of `user_id`, signed like ID tokens.
    pub fn logout_token(
        &self,
        client_id: &str,
        user_id: &str,
        session_id: &str,
    ) -> Result<String, GrantError> {
        let now = self.clock.now();
        let claims = serde_json::json!({
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + 120,
            "jti": random_token::<16>(),
            "sub": user_id,
            "sid": session_id,
            "events": { crate::domain::oidc::BACKCHANNEL_LOGOUT_EVENT: {} },
        });
        let keys = self.keys.current();
        Ok(jwt::sign_jws(&claims, "logout+jwt", keys.id_token_key())?)
    }

    /// The user an `id_token_hint` names, if it is an ID token of ours
    /// issued to `client_id`.
    pub async fn id_token_subject(&self, token: &str, client_id: &str) -> Option<String> {
        self.verify_id_token(token)
            .filter(|claims| claims.aud == client_id)
            .map(|claims| claims.sub)
    }

    /// An access token for a client acting on its own behalf (`client_credentials`).
    pub fn client_token(
        &self,
        client: &ClientRecord,
        scope: &str,
        jkt: Option<&str>,
    ) -> Result<IssuedTokens, GrantError> {
        let access_token =
            self.sign_access(&client.id, client, scope, None, jkt, self.clock.now())?;
        Ok(IssuedTokens {
            access_token,
            expires_in: self.access_ttl(client),
            scope: scope.to_owned(),
            refresh_token: None,
            id_token: None,
            dpop_bound: jkt.is_some(),
        })
    }

    /// A new family id (fixed before a code exchange so a code replay can revoke it).
    pub fn new_family_id(&self) -> String {
        crate::crypto::secret::new_object_id(self.clock.now())
    }

    /// Starts a session for a user: an access token and, if asked, the first
    /// refresh token of a new family `family_id`.
    ///
    /// The session starts only if the user's credential epoch is still the
    /// one read when the sign-in began: a password change (or "sign out
    /// everywhere") that lands while the password was being checked wins.
    /// The family is written first and the epoch read after it, so that a
    /// move that lands in between either is seen here (and the family is
    /// revoked at once) or happens after the family is indexed (and revokes
    /// it with the user's other families).
    pub async fn start_session(
        &self,
        grant: UserGrant<'_>,
        family_id: String,
    ) -> Result<IssuedTokens, GrantError> {
        let now = self.clock.now();
        let mut refresh_token = None;
        if grant.with_refresh {
            let refresh = RefreshToken::generate(&family_id);
            let absolute = now + self.lifetimes.refresh_absolute as i64;
            self.store
                .create_family(&NewFamily {
                    id: family_id.clone(),
                    user_id: grant.user_id.to_owned(),
                    client_id: grant.client.id.clone(),
                    scope: grant.scope.to_owned(),
                    created_at: now,
                    idle_expires_at: (now + self.idle_ttl(grant.client) as i64).min(absolute),
                    absolute_expires_at: absolute,
                    first_token: refresh.hash(),
                    epoch: grant.epoch,
                    session_id: grant.session_id.to_owned(),
                    auth_time: grant.auth_time,
                    keep_until: absolute + self.keep_after_expiry as i64,
                    jkt: grant.jkt.map(str::to_owned),
                    client_indexed: grant.client.id != FIRST_PARTY_CLIENT_ID,
                })
                .await?;
            refresh_token = Some(refresh);
        }
        if self.store.credential_epoch(grant.user_id).await? != grant.epoch {
            if grant.with_refresh {
                self.store.revoke_family(&family_id, now).await?;
            }
            return Err(GrantError::InvalidGrant(
                "the user's credentials changed during sign-in; sign in again",
            ));
        }
        let access_token = self.sign_access(
            grant.user_id,
            grant.client,
            grant.scope,
            Some(UserClaims {
                role: grant.role,
                session: grant.session_id,
                family: &family_id,
                epoch: grant.epoch,
            }),
            grant.jkt,
            now,
        )?;
        let id_token = self.id_token_if_openid(
            grant.scope,
            &access_token,
            IdTokenFor {
                user_id: grant.user_id,
                client: grant.client,
                session_id: grant.session_id,
                auth_time: grant.auth_time,
                nonce: grant.nonce,
            },
            now,
        )?;
        Ok(IssuedTokens {
            access_token,
            expires_in: self.access_ttl(grant.client),
            scope: grant.scope.to_owned(),
            refresh_token,
            id_token,
            dpop_bound: grant.jkt.is_some(),
        })
    }

    /// The user's credential epoch now.
    pub async fn credential_epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        self.store.credential_epoch(user_id).await
    }

    /// Rotates `presented` for `client` in one atomic store step. Returns the
    /// family and the successor (the same successor again for a replay
    /// within the grace period). `jkt`: the DPoP key the request proved,
    /// which a bound family requires.
    pub async fn rotate(
        &self,
        client: &ClientRecord,
        presented: &str,
        jkt: Option<&str>,
    ) -> Result<(FamilyView, RefreshToken), GrantError> {
        let token = RefreshToken::parse(presented)
            .ok_or(GrantError::InvalidGrant("the refresh token is invalid"))?;
        let successor = token.successor(&self.successor_key);
        let (presented_hash, successor_hash) = (token.hash(), successor.hash());
        let rotation = self
            .store
            .rotate(&RotateRequest {
                family_id: token.family_id(),
                client_id: &client.id,
                presented: &presented_hash,
                successor: &successor_hash,
                now: self.clock.now(),
                grace: self.lifetimes.reuse_grace,
                idle_ttl: self.idle_ttl(client),
                jkt,
            })
            .await?;
        match rotation {
            Rotation::Rotated(family) | Rotation::GraceReplay(family) => Ok((family, successor)),
            Rotation::ReuseDetected => Err(self.reuse_detected(client, token.family_id()).await),
            Rotation::Unknown {
                current,
                mut checkpoints,
                generation,
            } => {
                // RFC 9700 §4.14.2: an older ancestor of the current token
                // is a replay too. Tokens are derived, so walking the chain
                // from the presented one tells an ancestor from a forgery
                // without any history kept: within MAX_ANCESTRY steps it
                // reaches the current token or, however old it is, one of
                // the checkpoints kept every MAX_ANCESTRY rotations.
                let steps = generation.min(MAX_ANCESTRY);
                checkpoints.push(current);
                if token.is_ancestor_of(&self.successor_key, &checkpoints, steps) {
                    self.store
                        .revoke_family(token.family_id(), self.clock.now())
                        .await?;
                    Err(self.reuse_detected(client, token.family_id()).await)
                } else {
                    Err(GrantError::InvalidGrant(
                        "the refresh token is invalid, expired or revoked",
                    ))
                }
            }
            Rotation::KeyMismatch => {
                metrics::counter!("tessera_dpop_refused_total", "reason" => "family_key")
                    .increment(1);
                Err(GrantError::InvalidGrant(
                    "the refresh token is bound to a DPoP key this request did not prove",
                ))
            }
            Rotation::Invalid => Err(GrantError::InvalidGrant(
                "the refresh token is invalid, expired or revoked",
            )),
        }
    }

    /// Records a detected reuse (the family is already revoked) and the
    /// error to answer with.
    async fn reuse_detected(&self, client: &ClientRecord, family_id: &str) -> GrantError {
        metrics::counter!("tessera_refresh_reuse_detected_total").increment(1);
        tracing::warn!(family_id = %family_id, client_id = %client.id, "refresh token reuse detected; family revoked");
        // The family id is no secret (every access token's `fid`).
        let event =
            crate::domain::audit::Event::new(crate::domain::audit::EventType::RefreshReuseDetected)
                .client(&client.id)
                .detail(serde_json::json!({ "family_id": family_id }));
        self.audit.record(event).await;
        GrantError::InvalidGrant("the refresh token was already used; the session has been revoked")
    }

    /// An access token for a family that was just rotated.
    pub fn refreshed_access(
        &self,
        client: &ClientRecord,
        family: &FamilyView,
        role: &str,
        scope: &str,
        successor: RefreshToken,
        jkt: Option<&str>,
    ) -> Result<IssuedTokens, GrantError> {
        let access_token = self.sign_access(
            &family.user_id,
            client,
            scope,
            Some(UserClaims {
                role,
                session: &family.session_id,
                family: &family.id,
                epoch: family.epoch,
            }),
            jkt,
            self.clock.now(),
        )?;
        // OIDC Core §12.2: a new ID token on refresh, same `sub`, no nonce —
        // for relying parties. The built-in client's families (user API
        // logins) are not OpenID sign-ins of a relying party, and §12.2 lets
        // a refresh omit the ID token: their refresh stays one signature.
        let scope_for_id = if client.id == FIRST_PARTY_CLIENT_ID {
            ""
        } else {
            scope
        };
        let id_token = self.id_token_if_openid(
            scope_for_id,
            &access_token,
            IdTokenFor {
                user_id: &family.user_id,
                client,
                session_id: &family.session_id,
                auth_time: family.auth_time,
                nonce: None,
            },
            self.clock.now(),
        )?;
        Ok(IssuedTokens {
            access_token,
            expires_in: self.access_ttl(client),
            scope: scope.to_owned(),
            refresh_token: Some(successor),
            id_token,
            dpop_bound: jkt.is_some(),
        })
    }

    /// The live family a refresh token belongs to, if the token is current.
    pub async fn live_family(&self, presented: &str) -> Result<Option<FamilyView>, StoreError> {
        let Some(token) = RefreshToken::parse(presented) else {
            return Ok(None);
        };
        self.store
            .live_refresh(token.family_id(), &token.hash(), self.clock.now())
            .await
    }

    pub async fn revoke_family(&self, family_id: &str) -> Result<(), StoreError> {
        self.store.revoke_family(family_id, self.clock.now()).await
    }

    /// Moves the user's credential epoch: every family, access token,
    /// authorization code, browser session and sign-in in flight that began
    /// before is dead; everything that begins after lives.
    pub async fn revoke_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.store
            .revoke_user(user_id, self.clock.now(), self.clock.now_millis())
            .await
    }
}
