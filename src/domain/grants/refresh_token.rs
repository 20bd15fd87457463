//! `refresh_token` (RFC 6749 §6) with rotation on every use.

use crate::domain::grants::{GrantError, Grants};
use crate::domain::scope;
use crate::domain::tokens::{FIRST_PARTY_CLIENT_ID, IssuedTokens};
use crate::store::ClientRecord;

pub(super) async fn apply(
    grants: &Grants,
    client: &ClientRecord,
    presented: &str,
    requested_scope: Option<&str>,
    jkt: Option<&str>,
) -> Result<IssuedTokens, GrantError> {
    // A narrowed scope is checked before rotating: an invalid_scope answer
    // must not cost the client its refresh token. Only a current token's
    // family is checked here; anything else (a spent token, another
    // client's, a bound family without its key) goes on to `rotate`, which
    // alone decides reuse (RFC 9700 §4.14.2: revoke the family), the grace
    // replay, and a bound family's key before either — so a `scope`
    // parameter neither skips reuse detection nor lets a thief without the
    // key tell a current token from a spent one (both end in key_mismatch).
    if let Some(requested) = requested_scope {
        let family = grants
            .tokens
            .live_family(presented)
            .await?
            .filter(|f| f.client_id == client.id)
            .filter(|f| f.jkt.is_none() || f.jkt.as_deref() == jkt);
        if let Some(family) = family {
            scope::narrow(Some(requested), &family.scope).ok_or(GrantError::InvalidScope(
                "a refresh may narrow the scope, never widen it",
            ))?;
        }
    }
    let (family, successor) = grants.tokens.rotate(client, presented, jkt).await?;
    let scope = scope::narrow(requested_scope, &family.scope).ok_or(GrantError::InvalidScope(
        "a refresh may narrow the scope, never widen it",
    ))?;
    // Both reads at once: the role decides `admin`, the epoch whether the
    // family outlived a password change or "sign out everywhere".
    let (role, epoch) = tokio::try_join!(
        grants.current_role(&family.user_id),
        grants.tokens.credential_epoch(&family.user_id),
    )?;
    let role = match role {
        Some(role) if epoch <= family.epoch => role,
        // The user is gone, or their credentials changed after the family
        // began: so is the session.
        _ => {
            grants.tokens.revoke_family(&family.id).await?;
            return Err(GrantError::InvalidGrant(
                "the refresh token is invalid, expired or revoked",
            ));
        }
    };
    // The built-in client's families follow what a login grants now, so
    // sessions from before a change of the login scope gain or lose with it.
    let scope = if client.id == FIRST_PARTY_CLIENT_ID {
        scope::narrow(requested_scope, scope::login_scope(&role)).unwrap_or(scope)
    } else {
        scope
    };
    let scope = scope::for_client(&scope, client.first_party, &role);
    grants
        .tokens
        .refreshed_access(client, &family, &role, &scope, successor, jkt)
}
