//! OpenID Connect rules that are not about tokens: which user claims a
//! scope releases (Core §5.4), and the back-channel logout of clients.

use serde_json::{Map, Value, json};

use crate::domain::scope;
use crate::store::UserRecord;

/// The claims of `user` that `scope` releases, `sub` always (Core §5.4):
/// `profile` → names, gender, `updated_at`; `email` → `email`,
/// `email_verified` (true only after a mailed code proved the mailbox);
/// `phone` → `phone_number`, `phone_number_verified` (never verified here).
pub fn user_claims(user: &UserRecord, granted: &str) -> Map<String, Value> {
    let has = |name: &str| granted.split(' ').any(|s| s == name);
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user.id));
    if has(scope::PROFILE) {
        let name = format!("{} {}", user.fname, user.lname);
        claims.insert("name".into(), json!(name.trim()));
        claims.insert("given_name".into(), json!(user.fname));
        claims.insert("family_name".into(), json!(user.lname));
        if let Some(gender) = &user.gender {
            claims.insert("gender".into(), json!(gender));
        }
        claims.insert("updated_at".into(), json!(user.updated_at.unix_timestamp()));
    }
    if has(scope::EMAIL) {
        claims.insert("email".into(), json!(user.email));
        claims.insert("email_verified".into(), json!(user.email_verified));
    }
    if has(scope::PHONE)
        && let Some(mobile) = &user.mobile
    {
        claims.insert("phone_number".into(), json!(mobile));
        claims.insert("phone_number_verified".into(), json!(false));
    }
    claims
}

/// Ends sign-in sessions and tells the clients that asked to be told
/// (Back-Channel Logout 1.0).
pub struct Logout {
    tokens: std::sync::Arc<crate::domain::tokens::TokenService>,
    store: std::sync::Arc<dyn crate::store::TokenStore>,
    clients: std::sync::Arc<crate::domain::clients::ClientService>,
    audit: std::sync::Arc<crate::domain::audit::Audit>,
    http: reqwest::Client,
}

/// The `events` member of every logout token (Back-Channel Logout §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How often a logout token is sent before giving up, and the first wait.
const BACKCHANNEL_ATTEMPTS: u32 = 4;
const BACKCHANNEL_FIRST_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

impl Logout {
    pub fn new(
        tokens: std::sync::Arc<crate::domain::tokens::TokenService>,
        store: std::sync::Arc<dyn crate::store::TokenStore>,
        clients: std::sync::Arc<crate::domain::clients::ClientService>,
        audit: std::sync::Arc<crate::domain::audit::Audit>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "back-channel HTTP client without its timeout");
                reqwest::Client::new()
            });
        Self {
            tokens,
            store,
            clients,
            audit,
            http,
        }
    }

    /// Ends the sign-in session `session_id` of user `user_id`: its families without
    /// `offline_access` are revoked at once; every client with a family in
    /// it that registered a `backchannel_logout_uri` is sent a logout token
    /// in the background (retried with backoff, never blocking the caller).
    pub async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        ip: std::net::IpAddr,
    ) -> Result<(), crate::store::StoreError> {
        let now = self.tokens.clock().now();
        let ended = self.store.end_session(user_id, session_id, now).await?;
        let mut event = crate::domain::audit::Event::new(crate::domain::audit::EventType::Logout)
            .ip(ip)
            .detail(serde_json::json!({ "session_id": session_id, "families": ended.len() }));
        if let Some(family) = ended.first() {
            event = event.user(&family.user_id);
        }
        // Recorded when it revoked something: replaying an ended session's
        // cookie (or a hint) in a loop writes nothing.
        if ended.iter().any(|f| !f.kept) {
            self.audit.record(event).await;
        }
        let mut told = std::collections::BTreeSet::new();
        for family in ended {
            if !told.insert(family.client_id.clone()) {
                continue;
            }
            let Some(client) = self.clients.get(&family.client_id).await? else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            let token = match self
                .tokens
                .logout_token(&client.id, &family.user_id, session_id)
            {
                Ok(token) => token,
                Err(e) => {
                    tracing::error!(error = %e, client_id = %client.id, "logout token not signed");
                    continue;
                }
            };
            tokio::spawn(send_logout_token(self.http.clone(), uri, token, client.id));
        }
        Ok(())
    }
}

/// POSTs one logout token, retrying with backoff on failure.
async fn send_logout_token(http: reqwest::Client, uri: String, token: String, client_id: String) {
    let mut wait = BACKCHANNEL_FIRST_RETRY;
    for attempt in 1..=BACKCHANNEL_ATTEMPTS {
        let sent = http
            .post(&uri)
            .form(&[("logout_token", token.as_str())])
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                metrics::counter!("tessera_backchannel_logout_total", "outcome" => "sent")
                    .increment(1);
                return;
            }
            Ok(response) => {
                tracing::warn!(%client_id, status = %response.status(), attempt, "back-channel logout refused")
            }
            Err(e) => tracing::warn!(%client_id, error = %e, attempt, "back-channel logout failed"),
        }
        if attempt < BACKCHANNEL_ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    metrics::counter!("tessera_backchannel_logout_total", "outcome" => "failed").increment(1);
}
