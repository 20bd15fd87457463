//! `authorization_code` (RFC 6749 §4.1) with PKCE (RFC 7636), using
//! oxide-auth's PKCE extension for the challenge and its verification.

use std::borrow::Cow;

use oxide_auth::code_grant::extensions::Pkce;
use oxide_auth::primitives::grant::Value;

use crate::crypto::secret::{TokenHash, random_token, sha256_hex};
use crate::domain::grants::{GrantError, Grants};
use crate::domain::scope;
use crate::domain::tokens::{IssuedTokens, UserGrant};
use crate::store::{ClientRecord, CodeGrant, CodeRedemption};

/// Prefix of authorization codes. NEVER CHANGE.
pub const CODE_PREFIX: &str = "tsa_";

/// How long a code may wait for its exchange (RFC 6749 §4.1.2: short).
pub const CODE_TTL: i64 = 60;

/// An approved authorization request, ready to become a code.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    pub client: &'a ClientRecord,
    pub user_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub scope: &'a str,
    pub code_challenge: Option<&'a str>,
    pub code_challenge_method: Option<&'a str>,
}

fn pkce_for(client: &ClientRecord) -> Pkce {
    // Public clients cannot keep a secret, so the code must be bound to them.
    if client.is_public() {
        Pkce::required()
    } else {
        Pkce::optional()
    }
}

fn code_hash(code: &str) -> TokenHash {
    TokenHash::from_stored(sha256_hex(code.as_bytes()))
}

/// Issues a single-use code for an approved request. `plain` PKCE is refused.
pub async fn issue_code(
    grants: &Grants,
    request: AuthorizationRequest<'_>,
) -> Result<String, GrantError> {
    // Method defaults to `plain` in RFC 7636 when omitted; plain is refused.
    let method = request
        .code_challenge
        .map(|_| request.code_challenge_method.unwrap_or("plain"));
    let pkce = pkce_for(request.client)
        .challenge(
            method.map(Cow::Borrowed),
            request.code_challenge.map(Cow::Borrowed),
        )
        .map_err(|()| GrantError::InvalidRequest("a code_challenge with method S256 is required"))?
        .map(|value| value.into_private_value().ok().flatten())
        .unwrap_or(None);
    let code = format!("{CODE_PREFIX}{}", random_token::<32>());
    let now = grants.tokens.clock().now();
    grants
        .store
        .put_code(
            &code_hash(&code),
            &CodeGrant {
                client_id: request.client.id.clone(),
                user_id: request.user_id.to_owned(),
                redirect_uri: request.redirect_uri.map(str::to_owned),
                scope: request.scope.to_owned(),
                pkce,
                expires_at: now + CODE_TTL,
                family_id: grants.tokens.new_family_id(),
            },
        )
        .await?;
    Ok(code)
}

pub(super) async fn apply(
    grants: &Grants,
    client: &ClientRecord,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
) -> Result<IssuedTokens, GrantError> {
    let invalid = GrantError::InvalidGrant("the authorization code is invalid, expired or used");
    let now = grants.tokens.clock().now();
    let grant = match grants.store.redeem_code(&code_hash(code), now).await? {
        CodeRedemption::Fresh(grant) => grant,
        CodeRedemption::Replayed { family_id } => {
            // RFC 6749 §4.1.2: a code used twice revokes what it issued.
            tracing::warn!(family_id = %family_id, client_id = %client.id, "authorization code replayed; revoking its tokens");
            grants.tokens.revoke_family(&family_id).await?;
            return Err(invalid);
        }
        CodeRedemption::Unknown => return Err(invalid),
    };
    if grant.client_id != client.id {
        return Err(invalid);
    }
    if grant
        .redirect_uri
        .as_deref()
        .is_some_and(|expected| redirect_uri != Some(expected))
    {
        return Err(GrantError::InvalidGrant(
            "redirect_uri does not match the authorization request",
        ));
    }
    // RFC 9700 §4.8.2 (PKCE downgrade): a verifier for a code issued
    // without a challenge means someone stripped the challenge. oxide-auth
    // accepts that case, so it is refused here.
    if grant.pkce.is_none() && code_verifier.is_some() {
        return Err(GrantError::InvalidGrant(
            "a code_verifier was sent but the authorization request had no code_challenge",
        ));
    }
    pkce_for(client)
        .verify(
            grant.pkce.map(|p| Value::private(Some(p))),
            code_verifier.map(Cow::Borrowed),
        )
        .map_err(|()| {
            GrantError::InvalidGrant("the code_verifier does not match the code_challenge")
        })?;
    let scope = scope::narrow(None, &grant.scope).unwrap_or_default();
    let Some(role) = grants.current_role(&grant.user_id).await? else {
        return Err(invalid);
    };
    grants
        .tokens
        .start_session(
            UserGrant {
                user_id: &grant.user_id,
                role: &role,
                client,
                scope: &scope,
                with_refresh: client.grant_types.iter().any(|g| g == "refresh_token"),
            },
            grant.family_id,
        )
        .await
}
