//! The `/account` sections built on `AccountService`: the sessions (refresh
//! families) with sign-out buttons and "sign out everywhere", the connected
//! apps with revoke, email verification and deletion. Each action calls the
//! function its JSON endpoint calls (`/api/users/sessions`, `/consents`,
//! `/verifyemail`, `/verifyemailotps`, `DELETE /api/users/me`).

use std::net::IpAddr;

use serde::Serialize;
use serde_json::json;

use crate::clock::UnixTime;
use crate::domain::DomainError;
use crate::domain::audit::Actor;
use crate::domain::grants::Params;
use crate::domain::users::SignedIn;
use crate::http::AppState;
use crate::http::browser::failure_page;
use crate::http::pages::forms::{Done, field, refused};

/// A session as the page lists it.
#[derive(Serialize)]
pub struct SessionView {
    id: String,
    client_name: String,
    created: String,
    last_used: String,
    /// Started by this browser's sign-in.
    current: bool,
}

/// A connected app as the page lists it.
#[derive(Serialize)]
pub struct AppView {
    client_id: String,
    client_name: String,
    scopes: String,
    granted: String,
}

/// The sessions and the connected apps of the signed-in user.
pub async fn lists(
    state: &AppState,
    user: &SignedIn,
) -> Result<(Vec<SessionView>, Vec<AppView>), DomainError> {
    let id = &user.user.id;
    let (sessions, consents) =
        tokio::try_join!(state.account.sessions(id), state.account.consents(id))?;
    let sessions = sessions
        .into_iter()
        .map(|s| SessionView {
            current: s.session_id == user.session_id,
            id: s.id,
            client_name: s.client_name,
            created: when(s.created_at),
            last_used: when(s.last_used_at),
        })
        .collect();
    let apps = consents
        .into_iter()
        .map(|c| AppView {
            client_id: c.client_id,
            client_name: c.client_name,
            scopes: c.scopes.join(", "),
            granted: when(c.granted_at),
        })
        .collect();
    Ok((sessions, apps))
}

/// `2026-11-30 12:05 UTC`.
fn when(at: UnixTime) -> String {
    match time::OffsetDateTime::from_unix_timestamp(at) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "-".to_owned(),
    }
}

/// One of this module's actions, or `None` when `action` is not one.
pub async fn act(
    state: &AppState,
    user: &SignedIn,
    action: &str,
    params: &Params,
    client: IpAddr,
) -> Option<Done> {
    let id = &user.user.id;
    let account = &state.account;
    let own = Actor::Own { ip: client };
    Some(match action {
        "revoke_session" => match account
            .revoke_session(id, field(params, "session"), own)
            .await
        {
            Ok(()) => Done::Notice("session_revoked"),
            Err(e) => Done::Page(failure_page(state, e)),
        },
        // Moves the credential epoch: this browser's session ends too.
        "sign_out_everywhere" => match account.sign_out_everywhere(id, own).await {
            Ok(()) => Done::SignedOut("everywhere"),
            Err(e) => Done::Page(failure_page(state, e)),
        },
        "revoke_app" => match account
            .revoke_consent(id, field(params, "client_id"), own)
            .await
        {
            Ok(()) => Done::Notice("app_revoked"),
            Err(e) => Done::Page(failure_page(state, e)),
        },
        "send_code" => match account.request_email_verification(id, client).await {
            Ok(()) => Done::Notice("code_sent"),
            Err(e) => refused(state, e, "otp", json!({})),
        },
        "verify_email" => match account.verify_email(id, field(params, "otp"), client).await {
            Ok(_) => Done::Notice("verified"),
            Err(e) => refused(state, e, "otp", json!({})),
        },
        "delete" => match account
            .delete_account(id, field(params, "password"), client)
            .await
        {
            Ok(()) => {
                tracing::info!(user_id = %id, "account deleted (page)");
                Done::SignedOut("deleted")
            }
            Err(e) => refused(state, e, "password", json!({})),
        },
        _ => return None,
    })
}
