//! Storage traits and their models. One module per backend; the domain only
//! ever sees trait objects: [`Directory`] (users and clients, or one of its
//! parts [`UserStore`] and [`ClientStore`]) and [`TokenStore`] (the sum of
//! [`FamilyStore`], [`CodeStore`], [`CounterStore`], [`ConsentStore`],
//! [`OtpStore`], [`ReplayStore`] and [`PushedRequestStore`]).
//!
//! Every method is atomic on its own: callers never compose two calls into
//! one logical step.

pub mod admin;
pub mod mongo;
mod pushed;
pub mod redis;
mod replay;
pub mod sqlite;
mod state;

pub use admin::{AccountChange, EventQuery, EventRecord, EventStore, UserQuery};
pub use pushed::{PushedRequest, PushedRequestStore};
pub use replay::ReplayStore;
pub use state::{ConsentRecord, ConsentStore, CounterStore, OtpCheck, OtpPurpose, OtpStore};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::clock::UnixTime;
use crate::crypto::secret::{ShortDigest, TokenHash};

/// What a backend can go wrong with, in terms the domain can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time (→ 503).
    #[error("{backend} is unavailable: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    /// A unique constraint refused the write.
    #[error("duplicate key")]
    Duplicate,
    /// The backend answered something we cannot interpret (→ 500).
    #[error("{backend} failed: {reason}")]
    Internal {
        backend: &'static str,
        reason: String,
    },
}

/// A user as stored, hash included. Never serialised to a response as is,
/// and its `Debug` leaves the hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// 24 hex digits (an ObjectId on MongoDB).
    pub id: String,
    /// Normalised: trimmed, lower case.
    pub email: String,
    pub password_hash: String,
    pub fname: String,
    pub lname: String,
    pub gender: Option<String>,
    pub mobile: Option<String>,
    pub role: String,
    /// Whether the user proved control of the email address (a mailed code:
    /// a completed password reset or email verification).
    pub email_verified: bool,
    /// Set by an administrator: the user cannot sign in, refresh or reset
    /// their password until it is cleared.
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A partial profile update; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileChange {
    pub fname: Option<String>,
    pub lname: Option<String>,
    pub gender: Option<String>,
}

/// A registered OAuth client. Its `Debug` leaves the secret digests out.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 (hex) of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    /// SHA-256 (hex) of the secret before the last rotation, accepted
    /// until `previous_secret_expires_at` (the rotation's grace).
    pub previous_secret_hash: Option<String>,
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    pub first_party: bool,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub access_token_ttl: Option<u64>,
    pub refresh_token_ttl: Option<u64>,
    /// Where `/logout` may send the browser back to (exact match).
    pub post_logout_redirect_uris: Vec<String>,
    /// Where a back-channel `logout_token` is POSTed when a session ends.
    pub backchannel_logout_uri: Option<String>,
    /// RFC 9449 §5.2: the client's access tokens are always DPoP-bound.
    pub dpop_bound_access_tokens: bool,
    /// RFC 9126 §6: the client's authorization requests must come through
    /// `/par` (a pushed `request_uri`).
    pub require_pushed_authorization_requests: bool,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("public", &self.is_public())
            .field("first_party", &self.first_party)
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ClientRecord {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }
}

/// Users: MongoDB in production, SQLite embedded.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user and the event recording it (one transaction where
    /// the backend has them); `Duplicate` when the email is taken.
    async fn create_user(&self, user: &UserRecord, event: &EventRecord) -> Result<(), StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Applies `change`; returns the updated user, `None` if it does not exist.
    async fn update_profile(
        &self,
        id: &str,
        change: &ProfileChange,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Replaces the hash only if it is still `expected` (no lost update
    /// between a concurrent password change and a login-time rehash).
    async fn replace_password_hash(
        &self,
        id: &str,
        expected: &str,
        new_hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    async fn update_mobile(
        &self,
        id: &str,
        mobile: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Marks the user's email as proven; the updated user, `None` if there
    /// is no such user.
    async fn mark_email_verified(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Applies an administrator's change and writes its events (one
    /// transaction where the backend has them); the updated user, `None`
    /// if there is no such user.
    async fn update_account(
        &self,
        id: &str,
        change: &AccountChange,
        now: OffsetDateTime,
        events: &[EventRecord],
    ) -> Result<Option<UserRecord>, StoreError>;
    /// One page of users in `(email, id)` order: an index range, never a scan.
    async fn list_users(&self, query: &UserQuery) -> Result<Vec<UserRecord>, StoreError>;
    /// Whether any user has the admin role.
    async fn any_admin(&self) -> Result<bool, StoreError>;
    /// Deletes the user record and writes its events in one atomic step
    /// (one transaction where the backend has them); false if there was
    /// none. (Their token-store state is the caller's:
    /// `TokenStore::forget_user`.)
    async fn delete_user(&self, id: &str, events: &[EventRecord]) -> Result<bool, StoreError>;
}

/// Registered OAuth clients: kept beside the users.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Inserts a client and its event; `Duplicate` when the id is taken.
    async fn create_client(
        &self,
        client: &ClientRecord,
        event: &EventRecord,
    ) -> Result<(), StoreError>;
    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError>;
    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// Replaces the settings of `client.id` (name, URIs, scopes, grant
    /// types, lifetimes, the DPoP and PAR requirements; never its secrets,
    /// kind or creation time) and
    /// writes the event; false if there is no such client.
    async fn update_client(
        &self,
        client: &ClientRecord,
        event: &EventRecord,
    ) -> Result<bool, StoreError>;
    /// Replaces the secret digest if it is still `expected`, keeping
    /// `expected` as the previous digest until `keep_previous_until` (or
    /// dropping any previous one when `None`); writes the event. False when
    /// the client is gone or its secret changed meanwhile.
    async fn rotate_client_secret(
        &self,
        id: &str,
        expected: &str,
        new_hash: &str,
        keep_previous_until: Option<OffsetDateTime>,
        event: &EventRecord,
    ) -> Result<bool, StoreError>;
    /// Deletes a client and writes the event; false if there was no such client.
    async fn delete_client(&self, id: &str, event: &EventRecord) -> Result<bool, StoreError>;
}

/// The user-side backend as a whole: users, clients, the audit trail, and
/// its health. `Arc<dyn Directory>` coerces to `Arc<dyn UserStore>`,
/// `Arc<dyn ClientStore>` or `Arc<dyn EventStore>` for a service that
/// needs only one of them.
#[async_trait]
pub trait Directory: UserStore + ClientStore + EventStore + Send + Sync {
    /// Whether the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// The name `/readyz` reports for this backend.
    fn backend_name(&self) -> &'static str;
}

/// A refresh-token family: every token that descends from one login or grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFamily {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: UnixTime,
    pub idle_expires_at: UnixTime,
    pub absolute_expires_at: UnixTime,
    /// Hash of the family's first refresh token.
    pub first_token: TokenHash,
    /// The user's credential epoch when the sign-in that started it began.
    pub epoch: u64,
    /// The sign-in session it belongs to (the browser session of
    /// `/authorize`, or the login itself for `/api/users/login`).
    pub session_id: String,
    /// When the user signed in to that session (OIDC `auth_time`).
    pub auth_time: UnixTime,
    /// Until when the family's state (its revocation above all) must be
    /// kept: past its absolute expiry, as long as an access token minted
    /// from it may still be presented.
    pub keep_until: UnixTime,
    /// The RFC 7638 thumbprint of the DPoP key the family is bound to
    /// (RFC 9449 §5): every refresh must prove possession of that key.
    pub jkt: Option<String>,
    /// Whether `revoke_client` must be able to find it. False for the
    /// built-in first-party client, which can be neither deleted nor
    /// changed: a backend may then skip the client's index.
    pub client_indexed: bool,
}

/// A live family as the domain sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyView {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: UnixTime,
    /// When the current token stops working if unused (min of idle and absolute).
    pub expires_at: UnixTime,
    /// The credential epoch the family was started in.
    pub epoch: u64,
    /// The sign-in session it belongs to.
    pub session_id: String,
    /// When the user signed in to that session.
    pub auth_time: UnixTime,
    /// The DPoP key thumbprint the family is bound to, if any.
    pub jkt: Option<String>,
}

/// One rotation attempt: everything the backend needs to decide in one
/// atomic step.
#[derive(Clone, Debug)]
pub struct RotateRequest<'a> {
    pub family_id: &'a str,
    /// The authenticated client: a token of another client's family is
    /// `Invalid` and changes nothing.
    pub client_id: &'a str,
    pub presented: &'a TokenHash,
    /// Hash of the successor derived from the presented token.
    pub successor: &'a TokenHash,
    pub now: UnixTime,
    /// Seconds after a rotation during which a replay of the rotated token
    /// answers with the same successor instead of revoking the family.
    pub grace: u64,
    /// Seconds a family may sit unused.
    pub idle_ttl: u64,
    /// The thumbprint of the key the request's DPoP proof was signed
    /// with, if it carried one: a family bound to another key (or bound,
    /// and no proof) is `KeyMismatch` and changes nothing.
    pub jkt: Option<&'a str>,
}

/// Rotations between two checkpoints in a store that keeps no token
/// history (see [`Rotation::Unknown`]): the most successor-derivation steps
/// a walk needs from any recognised ancestor to a known digest.
pub const CHECKPOINT_EVERY: u64 = 256;

/// The newest checkpoints such a store keeps: ancestors up to
/// `CHECKPOINT_EVERY × CHECKPOINTS_KEPT` rotations back are recognised, and
/// neither the stored checkpoints nor a walk's comparisons grow beyond.
pub const CHECKPOINTS_KEPT: u64 = 64;

/// The outcome of a rotation attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was current: the successor is current now.
    Rotated(FamilyView),
    /// The presented token was rotated within the grace period and its
    /// successor is still current: answer with that successor again.
    GraceReplay(FamilyView),
    /// An already-rotated token was presented: the family is now revoked
    /// (RFC 9700 §4.14.2).
    ReuseDetected,
    /// The family is bound to a DPoP key the request did not prove
    /// possession of. Nothing changed: a thief without the key can
    /// neither use the token nor burn the family by trying.
    KeyMismatch,
    /// Unknown token, revoked or expired family.
    Invalid,
    /// The family is live but the presented token is neither its current
    /// token nor the one just before it, and the store keeps no history to
    /// tell an older ancestor from a forgery (Redis). Nothing changed. The
    /// caller walks the successor chain from the presented token at most
    /// `min(generation, CHECKPOINT_EVERY)` steps: reaching `current` or a checkpoint
    /// makes it an ancestor (reuse: revoke), anything else is invalid.
    /// Stores that keep every token's digest never answer this.
    Unknown {
        current: ShortDigest,
        /// The tokens current after every `CHECKPOINT_EVERY`th rotation
        /// (the newest `CHECKPOINTS_KEPT`): with them a recognised ancestor
        /// is at most `CHECKPOINT_EVERY` steps from a known digest.
        checkpoints: Vec<ShortDigest>,
        /// How many rotations the family has had.
        generation: u64,
    },
}

/// An authorization code's grant, stored under the code's hash until used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeGrant {
    pub client_id: String,
    pub user_id: String,
    /// The `redirect_uri` of the authorization request, if it carried one.
    pub redirect_uri: Option<String>,
    pub scope: String,
    /// The PKCE challenge as encoded for verification, if any.
    pub pkce: Option<String>,
    pub expires_at: UnixTime,
    /// The family the exchange will create, fixed up front so that a replay
    /// of the code can revoke what the code issued.
    pub family_id: String,
    /// The user's credential epoch in the browser session that approved it.
    pub epoch: u64,
    /// The OpenID Connect `nonce` of the request, echoed in the ID token.
    pub nonce: Option<String>,
    /// The browser session that approved it, and when its user signed in.
    pub session_id: String,
    pub auth_time: UnixTime,
    /// The `dpop_jkt` of the request (RFC 9449 §10): the exchange must
    /// come with a DPoP proof of this key.
    pub dpop_jkt: Option<String>,
}

/// What redeeming a code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First use: the grant, now marked used.
    Fresh(CodeGrant),
    /// The code was used before: the family it issued (to revoke when the
    /// replay comes from the client the code was issued to).
    Replayed {
        family_id: String,
        client_id: String,
    },
    /// Never issued, or expired.
    Unknown,
}

/// What the resource layer needs to know to decide whether a signature-valid
/// access token has been revoked since it was issued.
#[derive(Clone, Debug)]
pub struct AccessCheck<'a> {
    pub jti: &'a str,
    pub sub: &'a str,
    /// The refresh family the token came from.
    pub family: Option<&'a str>,
    /// The credential epoch the token was issued in: revoked when the
    /// user's epoch has moved past it.
    pub epoch: u64,
}

/// Whether a family's scope keeps it alive past the end of its sign-in
/// session (OIDC Core §11: `offline_access`).
pub fn has_offline_access(scope: &str) -> bool {
    scope.split(' ').any(|s| s == "offline_access")
}

/// A family of a sign-in session that ended (see `FamilyStore::end_session`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFamily {
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    /// Whether it was kept (it has `offline_access`) rather than revoked.
    pub kept: bool,
}

/// A family of a user's as the "sessions" listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilySummary {
    pub id: String,
    pub client_id: String,
    pub scope: String,
    /// The sign-in session it belongs to.
    pub session_id: String,
    pub created_at: UnixTime,
    /// The last rotation (the creation if it never rotated).
    pub last_used_at: UnixTime,
    /// The credential epoch it was started in: older than the user's
    /// current epoch means dead, whatever its own state says.
    pub epoch: u64,
}

/// Refresh-token families and revoked access tokens.
#[async_trait]
pub trait FamilyStore: Send + Sync {
    /// Records a new family with its first token.
    async fn create_family(&self, family: &NewFamily) -> Result<(), StoreError>;
    /// Rotates, replays within grace, or detects reuse — one atomic step.
    async fn rotate(&self, request: &RotateRequest<'_>) -> Result<Rotation, StoreError>;
    /// The family of `presented` if it is the current token of a live family.
    async fn live_refresh(
        &self,
        family_id: &str,
        presented: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError>;
    /// The family `family_id` if it is live (for revocation by its client).
    async fn family(
        &self,
        family_id: &str,
        now: UnixTime,
    ) -> Result<Option<FamilyView>, StoreError>;
    /// Revokes one family (all its refresh tokens and access tokens).
    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<(), StoreError>;
    /// Revokes every family of one client (a deleted client, or one that
    /// may no longer refresh); returns how many families it found.
    async fn revoke_client(&self, client_id: &str, now: UnixTime) -> Result<u64, StoreError>;
    /// The user's credential epoch (0 if it never moved).
    async fn credential_epoch(&self, user_id: &str) -> Result<u64, StoreError>;
    /// Moves the user's credential epoch to `max(epoch + 1, floor)` (floor:
    /// the wall clock in milliseconds, so an epoch that expired from a
    /// store with TTLs never comes back lower), then revokes every family
    /// of the user and forgets their consents: every token, family, code
    /// and browser session of an earlier epoch is dead. Returns the new epoch.
    async fn revoke_user(
        &self,
        user_id: &str,
        now: UnixTime,
        floor: u64,
    ) -> Result<u64, StoreError>;
    /// Ends a sign-in session of a user: revokes its live families except
    /// those whose scope has `offline_access`, and returns every live family
    /// it had (to tell their clients). A family that is its own session
    /// (a user-API login) is the session its id names. Families of other
    /// users are never touched, whatever session they name.
    async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        now: UnixTime,
    ) -> Result<Vec<SessionFamily>, StoreError>;
    /// The user's live families (not revoked, not expired), in no order.
    /// Reads the user's own index, never every family.
    async fn user_families(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> Result<Vec<FamilySummary>, StoreError>;
    /// Marks one access token revoked until it expires.
    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError>;
    /// Whether a signature-valid access token was revoked, in one round trip.
    async fn is_access_revoked(&self, check: &AccessCheck<'_>) -> Result<bool, StoreError>;
}

/// Authorization codes, each usable once.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Stores an authorization code's grant until `grant.expires_at`.
    async fn put_code(&self, code: &TokenHash, grant: &CodeGrant) -> Result<(), StoreError>;
    /// The grant of an unused, unexpired code, without using it (so that a
    /// request from the wrong client cannot burn the rightful one's code).
    async fn peek_code(
        &self,
        code: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<CodeGrant>, StoreError>;
    /// Marks a code used and returns its grant — at most once.
    async fn redeem_code(
        &self,
        code: &TokenHash,
        now: UnixTime,
    ) -> Result<CodeRedemption, StoreError>;
}

/// Refresh-token families, revoked access tokens, authorization codes, OTPs,
/// consents, counters and pushed authorization requests: Redis in
/// production, SQLite embedded. Every method of the parts is reachable
/// through `Arc<dyn TokenStore>`.
#[async_trait]
pub trait TokenStore:
    FamilyStore
    + CodeStore
    + CounterStore
    + ConsentStore
    + OtpStore
    + ReplayStore
    + PushedRequestStore
    + Send
    + Sync
{
    /// Drops state that can no longer matter (expired families, codes,
    /// pushed requests, revocations of expired tokens). Backends with
    /// TTLs may do nothing.
    async fn purge_expired(&self, now: UnixTime) -> Result<(), StoreError>;
    /// Drops the token-store state of a deleted user: families (revoked
    /// or not) with their tokens, consents, one-time codes and (where the
    /// backend can find them) authorization codes. Keeps the credential
    /// epoch: access tokens of the user must stay refused until they
    /// expire, and only the epoch says so once the families are gone. The
    /// caller moves the epoch first (`revoke_user`).
    async fn forget_user(&self, user_id: &str) -> Result<(), StoreError>;
    /// Whether the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// The name `/readyz` reports for this backend.
    fn backend_name(&self) -> &'static str;
}
