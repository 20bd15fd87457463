//! Signup, login, profile and password rules.

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::{Clock, UnixTime};
use crate::crypto::password::PasswordHasher;
use crate::crypto::secret::{new_object_id, sha256_hex};
use crate::domain::DomainError;
use crate::domain::audit::{Audit, Event, EventType};
use crate::domain::clients::first_party_client;
use crate::domain::grants::GrantError;
use crate::domain::scope;
use crate::domain::throttle::{Limit, Throttle, ThrottleError, address_bucket};
use crate::domain::tokens::{IssuedTokens, TokenService, UserGrant};
use crate::domain::validate::{self, Checks};
use crate::mail::{Notice, Outbox};
use crate::store::{ProfileChange, StoreError, UserRecord, UserStore};

/// Failed logins per account (any email, known or not) before a lockout window.
pub const LOGIN_FAILURES_PER_ACCOUNT: Limit = Limit {
    max: 10,
    window: 15 * 60,
};
/// Failed logins per client address before a lockout window.
pub const LOGIN_FAILURES_PER_ADDRESS: Limit = Limit {
    max: 100,
    window: 15 * 60,
};

/// Failed checks of the current password (`updatepassword`) per account.
pub const PASSWORD_CHECK_FAILURES_PER_ACCOUNT: Limit = Limit {
    max: 5,
    window: 15 * 60,
};

/// An id no user has (ids are 24 hex digits), for the epoch read of a
/// login with an unknown email.
const UNKNOWN_USER: &str = "-";

/// A signed-in user: who, in which credential epoch (read before the
/// password was checked), in which sign-in session, since when.
#[derive(Debug)]
pub struct SignedIn {
    pub user: UserRecord,
    pub epoch: u64,
    /// A new id per sign-in (24 hex digits, like family ids).
    pub session_id: String,
    pub auth_time: UnixTime,
}

/// Replaces `user`'s password hash (if it is still the one read) and ends
/// every session of theirs. The credential epoch moves before the hash is
/// replaced *and* after: whatever fails or interleaves, no session from
/// before survives the new password. It runs as a task of its own, so a
/// request that times out or is cancelled cannot stop it half-way.
pub(crate) async fn replace_password(
    users: Arc<dyn UserStore>,
    tokens: Arc<TokenService>,
    clock: Clock,
    user: &UserRecord,
    new_hash: String,
) -> Result<bool, DomainError> {
    let (id, expected) = (user.id.clone(), user.password_hash.clone());
    tokio::spawn(async move {
        tokens.revoke_user(&id).await?;
        let replaced = users
            .replace_password_hash(&id, &expected, &new_hash, clock.now_datetime())
            .await?;
        if replaced {
            tokens.revoke_user(&id).await?;
        }
        Ok(replaced)
    })
    .await
    .map_err(|_| DomainError::Hasher(crate::crypto::password::HasherError::Failed))?
}

/// The role every new account gets.
pub const DEFAULT_ROLE: &str = "user";

/// A signup as received (not yet validated). No `Debug`: it holds a password.
pub struct Signup {
    pub email: String,
    pub password: String,
    pub fname: String,
    pub lname: String,
    pub gender: Option<String>,
    pub mobile: Option<String>,
}

/// A profile update as received (not yet validated).
#[derive(Debug, Default)]
pub struct ProfileUpdate {
    pub fname: Option<String>,
    pub lname: Option<String>,
    pub gender: Option<String>,
}

/// The user-management rules.
pub struct UserService {
    users: Arc<dyn UserStore>,
    tokens: Arc<TokenService>,
    hasher: PasswordHasher,
    outbox: Arc<dyn Outbox>,
    throttle: Throttle,
    clock: Clock,
    audit: Arc<Audit>,
    /// Signups per client address (per hour).
    signups_per_address: Limit,
}

/// Where a sign-in comes from: the client address and the client it is for.
#[derive(Clone, Copy, Debug)]
pub struct SignInFrom<'a> {
    pub ip: IpAddr,
    pub client_id: &'a str,
}

impl UserService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserStore>,
        tokens: Arc<TokenService>,
        hasher: PasswordHasher,
        outbox: Arc<dyn Outbox>,
        throttle: Throttle,
        clock: Clock,
        audit: Arc<Audit>,
        signups_per_address: u64,
    ) -> Self {
        Self {
            users,
            tokens,
            hasher,
            outbox,
            throttle,
            clock,
            audit,
            signups_per_address: Limit {
                max: signups_per_address,
                window: 3600,
            },
        }
    }

    /// Registers a user; `EmailTaken` when the normalised email exists.
    /// Each address has a budget of signups, taken before any work, and a
    /// taken email is answered before the (costly) hash is computed: a
    /// signup flood can neither fill the store nor the bcrypt queue.
    pub async fn signup(&self, signup: Signup, client: IpAddr) -> Result<UserRecord, DomainError> {
        let mut checks = Checks::default();
        let email = checks.check("email", validate::email(&signup.email));
        checks.check("password", validate::password(&signup.password));
        let fname = checks.check("fname", validate::name(&signup.fname));
        let lname = checks.check("lname", validate::name(&signup.lname));
        let gender = match &signup.gender {
            Some(g) => checks.check("gender", validate::gender(g)),
            None => None,
        };
        let mobile = match &signup.mobile {
            Some(m) => checks.check("mobile", validate::mobile(m)),
            None => None,
        };
        checks.finish().map_err(DomainError::Validation)?;
        let (Some(email), Some(fname), Some(lname)) = (email, fname, lname) else {
            unreachable!("checks.finish() returned Ok, so every required field parsed");
        };

        let admitted = self
            .throttle
            .admit(
                &format!("signup:addr:{}", address_bucket(client)),
                self.signups_per_address,
            )
            .await;
        self.audit_throttled(&admitted, "signup", client).await;
        admitted?;
        if self.users.user_by_email(&email).await?.is_some() {
            return Err(DomainError::EmailTaken);
        }
        let password_hash = self.hasher.hash(&signup.password).await?;
        let now = self.clock.now_datetime();
        let user = UserRecord {
            id: new_object_id(now.unix_timestamp()),
            email,
            password_hash,
            fname,
            lname,
            gender,
            mobile,
            role: DEFAULT_ROLE.to_owned(),
            email_verified: false,
            disabled: false,
            created_at: now,
            updated_at: now,
        };
        let record = self
            .audit
            .stamp(Event::new(EventType::UserCreated).user(&user.id).ip(client));
        match self.users.create_user(&user, &record).await {
            Ok(()) => {
                self.audit.emit(&record);
                Ok(user)
            }
            Err(StoreError::Duplicate) => Err(DomainError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks a password and starts a session for the first-party client,
    /// bound to the DPoP key `jkt` if the request proved one.
    /// Unknown email and wrong password fail alike, in about the same time.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        jkt: Option<&str>,
    ) -> Result<IssuedTokens, DomainError> {
        let from = SignInFrom {
            ip: client,
            client_id: crate::domain::tokens::FIRST_PARTY_CLIENT_ID,
        };
        let signed_in = self.authenticate(email, password, from).await?;
        let client = first_party_client();
        let grant = UserGrant {
            user_id: &signed_in.user.id,
            role: &signed_in.user.role,
            client: &client,
            scope: scope::login_scope(&signed_in.user.role),
            with_refresh: true,
            epoch: signed_in.epoch,
            session_id: &signed_in.session_id,
            auth_time: signed_in.auth_time,
            nonce: None,
            jkt,
        };
        // A login through the user API is its own sign-in session: its one
        // family has the session's id.
        self.tokens
            .start_session(grant, signed_in.session_id.clone())
            .await
            .map_err(|e| match e {
                // The password checked was replaced while it was checked.
                GrantError::InvalidGrant(_) => DomainError::InvalidCredentials,
                other => DomainError::from(other),
            })
    }

    /// The user with `email` if `password` is theirs, and their credential
    /// epoch as it was *before* the password was checked.
    ///
    /// Each attempt takes a slot of the account's and the address's budget
    /// before bcrypt runs, so N guesses in parallel verify at most the
    /// budget; a success gives its slots back (only failures count). An
    /// exhausted budget answers 429 before any password is checked, whether
    /// or not the account exists.
    ///
    /// A disabled account answers `AccountDisabled` only after its correct
    /// password; a wrong one is the same `InvalidCredentials` as ever.
    pub async fn authenticate(
        &self,
        email: &str,
        password: &str,
        from: SignInFrom<'_>,
    ) -> Result<SignedIn, DomainError> {
        let normalised = email.trim().to_lowercase();
        let account = format!("login-fail:acct:{}", sha256_hex(normalised.as_bytes()));
        let address = format!("login-fail:addr:{}", address_bucket(from.ip));
        let reserved = self
            .throttle
            .reserve(&[
                (&account, LOGIN_FAILURES_PER_ACCOUNT),
                (&address, LOGIN_FAILURES_PER_ADDRESS),
            ])
            .await;
        self.audit_throttled(&reserved, "login", from.ip).await;
        let reservation = reserved?;
        match self.verify_credentials(email, password, from).await {
            Err(DomainError::InvalidCredentials) => {
                metrics::counter!("tessera_login_failures_total").increment(1);
                drop(reservation);
                Err(DomainError::InvalidCredentials)
            }
            Ok(signed_in) => {
                reservation.refund().await;
                self.audit
                    .record(
                        Event::new(EventType::LoginSucceeded)
                            .user(&signed_in.user.id)
                            .client(from.client_id)
                            .ip(from.ip),
                    )
                    .await;
                Ok(signed_in)
            }
            // A disabled account's right password, an outage or a busy
            // hasher is not a failed guess.
            other => {
                reservation.refund().await;
                other
            }
        }
    }

    /// Records a refused request once per window and address, so that a
    /// flood of them writes one event, not one each.
    async fn audit_throttled<T>(
        &self,
        result: &Result<T, ThrottleError>,
        action: &str,
        ip: IpAddr,
    ) {
        if !matches!(result, Err(ThrottleError::Throttled(_))) {
            return;
        }
        let key = format!("audit-throttled:{action}:{}", address_bucket(ip));
        match self
            .throttle
            .first_in_window(&key, LOGIN_FAILURES_PER_ADDRESS.window)
            .await
        {
            Ok(true) => {
                let event = Event::new(EventType::Throttled)
                    .ip(ip)
                    .detail(serde_json::json!({ "action": action }));
                self.audit.record(event).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot count throttled requests for the audit"),
        }
    }

    /// A failed sign-in: the user when the email is theirs (never an
    /// arbitrary string: the email only when it is one, cut short).
    async fn audit_failed_login(
        &self,
        email: Option<&str>,
        user: Option<&UserRecord>,
        reason: &str,
        from: SignInFrom<'_>,
    ) {
        let mut event = Event::new(EventType::LoginFailed)
            .client(from.client_id)
            .ip(from.ip)
            .detail(serde_json::json!({ "reason": reason }));
        if let Some(email) = email {
            event = event.detail(serde_json::json!({ "email": email }));
        }
        if let Some(user) = user {
            event = event.user(&user.id);
        }
        self.audit.record(event).await;
    }

    async fn verify_credentials(
        &self,
        email: &str,
        password: &str,
        from: SignInFrom<'_>,
    ) -> Result<SignedIn, DomainError> {
        let email = validate::email(email).ok();
        let user = match &email {
            Some(email) => self.users.user_by_email(email).await?,
            None => None,
        };
        // Read before the password is checked: a change that lands during
        // the check moves the epoch past this one, and the session dies.
        // (Read for unknown emails too, so both paths do the same work.)
        let epoch = self
            .tokens
            .credential_epoch(user.as_ref().map_or(UNKNOWN_USER, |u| u.id.as_str()))
            .await?;
        // Over 72 bytes bcrypt would compare a truncation: such a password
        // can never be right, but it still costs the time of a verify.
        let Some(user) = user.filter(|_| password.len() <= 72) else {
            self.hasher.verify_dummy(password).await?;
            self.audit_failed_login(email.as_deref(), None, "invalid_credentials", from)
                .await;
            return Err(DomainError::InvalidCredentials);
        };
        if !self.hasher.verify(password, &user.password_hash).await? {
            self.audit_failed_login(email.as_deref(), Some(&user), "invalid_credentials", from)
                .await;
            return Err(DomainError::InvalidCredentials);
        }
        // The hash was read before the epoch: a change that replaced it in
        // between moved the epoch before this read of it, so only the hash
        // can tell. The password checked must still be the user's.
        // Re-read after the epoch: a disable writes its flag before it
        // moves the epoch, so a sign-in that read the new epoch sees the flag.
        let now = self.users.user_by_id(&user.id).await?;
        let still_current = now
            .as_ref()
            .is_some_and(|now| now.password_hash == user.password_hash);
        if !still_current {
            return Err(DomainError::InvalidCredentials);
        }
        if user.disabled || now.is_some_and(|now| now.disabled) {
            self.audit_failed_login(email.as_deref(), Some(&user), "account_disabled", from)
                .await;
            return Err(DomainError::AccountDisabled);
        }
        self.rehash_if_needed(&user, password).await;
        Ok(SignedIn {
            user,
            epoch,
            session_id: self.tokens.new_family_id(),
            auth_time: self.clock.now(),
        })
    }

    /// Brings a hash to the configured cost after a successful login.
    /// Best effort: a failure leaves the old, still valid hash.
    async fn rehash_if_needed(&self, user: &UserRecord, password: &str) {
        if !self.hasher.needs_rehash(&user.password_hash) {
            return;
        }
        let result = async {
            let new_hash = self.hasher.hash(password).await?;
            let now = self.clock.now_datetime();
            self.users
                .replace_password_hash(&user.id, &user.password_hash, &new_hash, now)
                .await?;
            Ok::<_, DomainError>(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(user_id = %user.id, cost = self.hasher.cost(), "password rehashed")
            }
            Err(e) => tracing::warn!(user_id = %user.id, error = %e, "password rehash failed"),
        }
    }

    /// A sign-in session for a user who has just proved who they are by
    /// creating the account (the sign-up page signs the new user in).
    pub async fn sign_in_new_user(&self, user: UserRecord) -> Result<SignedIn, DomainError> {
        let epoch = self.tokens.credential_epoch(&user.id).await?;
        Ok(SignedIn {
            user,
            epoch,
            session_id: self.tokens.new_family_id(),
            auth_time: self.clock.now(),
        })
    }

    /// The user of a browser session that began in credential epoch
    /// `epoch`, if the user still exists and the epoch has not moved since
    /// (a password change or "sign out everywhere" ends every session).
    pub async fn session_user(
        &self,
        id: &str,
        epoch: u64,
        session_id: &str,
        auth_time: UnixTime,
    ) -> Result<Option<SignedIn>, DomainError> {
        let (user, current) =
            tokio::try_join!(self.users.user_by_id(id), self.tokens.credential_epoch(id))?;
        Ok(user
            .filter(|u| current == epoch && !u.disabled)
            .map(|user| SignedIn {
                user,
                epoch,
                session_id: session_id.to_owned(),
                auth_time,
            }))
    }

    /// The user with `id` (from a verified token).
    pub async fn profile(&self, id: &str) -> Result<UserRecord, DomainError> {
        self.users
            .user_by_id(id)
            .await?
            .ok_or(DomainError::UserNotFound)
    }

    /// Changes any of first name, last name and gender.
    pub async fn update_profile(
        &self,
        id: &str,
        update: ProfileUpdate,
    ) -> Result<UserRecord, DomainError> {
        let mut checks = Checks::default();
        let change = ProfileChange {
            fname: update
                .fname
                .and_then(|v| checks.check("fname", validate::name(&v))),
            lname: update
                .lname
                .and_then(|v| checks.check("lname", validate::name(&v))),
            gender: update
                .gender
                .and_then(|v| checks.check("gender", validate::gender(&v))),
        };
        checks.finish().map_err(DomainError::Validation)?;
        self.users
            .update_profile(id, &change, self.clock.now_datetime())
            .await?
            .ok_or(DomainError::UserNotFound)
    }

    /// Replaces the password after checking the current one, then logs the
    /// user out everywhere (other sessions and their access tokens die).
    /// The check has an attempt budget per account, taken before bcrypt
    /// runs: a stolen access token cannot guess the password at bcrypt speed.
    pub async fn change_password(
        &self,
        id: &str,
        old: &str,
        new: &str,
        ip: IpAddr,
    ) -> Result<(), DomainError> {
        validate::password(new).map_err(|m| DomainError::field("new_password", &m))?;
        let user = self.profile(id).await?;
        let budget = format!("password-check-fail:user:{id}");
        let reservation = self
            .throttle
            .reserve(&[(&budget, PASSWORD_CHECK_FAILURES_PER_ACCOUNT)])
            .await?;
        let matched = match old.len() <= 72 {
            true => self.hasher.verify(old, &user.password_hash).await,
            false => Ok(false),
        };
        match matched {
            Ok(true) => reservation.refund().await,
            Ok(false) => {
                drop(reservation);
                return Err(DomainError::WrongPassword);
            }
            // A busy hasher is not a guess.
            Err(e) => {
                reservation.refund().await;
                return Err(e.into());
            }
        }
        let new_hash = self.hasher.hash(new).await?;
        let replaced = replace_password(
            self.users.clone(),
            self.tokens.clone(),
            self.clock.clone(),
            &user,
            new_hash,
        )
        .await?;
        if !replaced {
            // Someone changed the password between our read and our write.
            return Err(DomainError::WrongPassword);
        }
        self.outbox.send(&user.email, Notice::PasswordChanged);
        self.audit
            .record(Event::new(EventType::PasswordChanged).user(&user.id).ip(ip))
            .await;
        Ok(())
    }

    /// Sets the mobile number (E.164).
    pub async fn update_mobile(&self, id: &str, mobile: &str) -> Result<UserRecord, DomainError> {
        let mobile = validate::mobile(mobile).map_err(|m| DomainError::field("mobile", m))?;
        self.users
            .update_mobile(id, &mobile, self.clock.now_datetime())
            .await?
            .ok_or(DomainError::UserNotFound)
    }

    /// The user if their role is admin now. Admin calls re-read the role on
    /// every call, so a demoted admin's live token stops working at once.
    pub async fn require_admin(&self, id: &str) -> Result<UserRecord, DomainError> {
        match self.users.user_by_id(id).await? {
            Some(user) if user.role == scope::ADMIN_ROLE && !user.disabled => Ok(user),
            _ => Err(DomainError::NotAdmin),
        }
    }
}
