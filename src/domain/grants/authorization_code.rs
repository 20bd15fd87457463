//! `authorization_code` (RFC 6749 §4.1) with PKCE (RFC 7636; the rule is
//! `domain::pkce`).

use crate::crypto::secret::{TokenHash, random_token, sha256_hex};
use crate::domain::grants::{GrantError, Grants};
use crate::domain::pkce::{self, VerifierError};
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
    /// The credential epoch of the browser session that approved it.
    pub epoch: u64,
    /// The browser session that approved it, and when its user signed in.
    pub session_id: &'a str,
    pub auth_time: crate::clock::UnixTime,
    /// The request's OpenID Connect `nonce`.
    pub nonce: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub scope: &'a str,
    pub code_challenge: Option<&'a str>,
    pub code_challenge_method: Option<&'a str>,
    /// The request's `dpop_jkt` (RFC 9449 §10): the code is bound to it.
    pub dpop_jkt: Option<&'a str>,
}

fn code_hash(code: &str) -> TokenHash {
    TokenHash::from_stored(sha256_hex(code.as_bytes()))
}

/// Issues a single-use code for an approved request. `plain` PKCE is refused.
pub async fn issue_code(
    grants: &Grants,
    request: AuthorizationRequest<'_>,
) -> Result<String, GrantError> {
    let pkce = pkce::accept_challenge(
        request.client.is_public(),
        request.code_challenge,
        request.code_challenge_method,
    )
    .map_err(|_| GrantError::InvalidRequest("a code_challenge with method S256 is required"))?;
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
                epoch: request.epoch,
                nonce: request.nonce.map(str::to_owned),
                session_id: request.session_id.to_owned(),
                auth_time: request.auth_time,
                dpop_jkt: request.dpop_jkt.map(str::to_owned),
            },
        )
        .await?;
    Ok(code)
}

/// What the token request brings to check a code against.
#[derive(Clone, Copy)]
struct Exchange<'a> {
    client: &'a ClientRecord,
    redirect_uri: Option<&'a str>,
    code_verifier: Option<&'a str>,
    /// The DPoP key the request proved.
    jkt: Option<&'a str>,
}

/// Everything about the exchange that can be checked without using the
/// code: the client it was issued to, the redirect URI, PKCE and the DPoP
/// key. A request that fails here leaves the code for its rightful client.
fn check_exchange(grant: &CodeGrant, exchange: Exchange<'_>) -> Result<(), GrantError> {
    let Exchange {
        client,
        redirect_uri,
        code_verifier,
        jkt,
    } = exchange;
    if grant.client_id != client.id {
        return Err(GrantError::InvalidGrant(
            "the authorization code is invalid, expired or used",
        ));
    }
    // RFC 9449 §10: a code bound with `dpop_jkt` is exchanged only with a
    // proof of that key.
    if grant
        .dpop_jkt
        .as_deref()
        .is_some_and(|bound| jkt != Some(bound))
    {
        return Err(GrantError::InvalidDpopProof(
            "the authorization code is bound to another DPoP key",
        ));
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
    pkce::verify(grant.pkce.as_deref(), code_verifier).map_err(|e| match e {
        VerifierError::Downgrade => GrantError::InvalidGrant(
            "a code_verifier was sent but the authorization request had no code_challenge",
        ),
        VerifierError::Missing | VerifierError::Mismatch => {
            GrantError::InvalidGrant("the code_verifier does not match the code_challenge")
        }
    })
}

pub(super) async fn apply(
    grants: &Grants,
    client: &ClientRecord,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    jkt: Option<&str>,
) -> Result<IssuedTokens, GrantError> {
    let invalid = GrantError::InvalidGrant("the authorization code is invalid, expired or used");
    let hash = code_hash(code);
    let now = grants.tokens.clock().now();
    // Checked before the code is used: a wrong client, redirect URI or
    // verifier must not burn the victim's code.
    let exchange = Exchange {
        client,
        redirect_uri,
        code_verifier,
        jkt,
    };
    if let Some(grant) = grants.store.peek_code(&hash, now).await? {
        check_exchange(&grant, exchange)?;
    }
    let grant = match grants.store.redeem_code(&hash, now).await? {
        CodeRedemption::Fresh(grant) => grant,
        CodeRedemption::Replayed {
            family_id,
            client_id,
        } => {
            // RFC 6749 §4.1.2: a code used twice revokes what it issued —
            // when its own client replays it; anyone else who learnt a used
            // code must not be able to sign the user out with it.
            if client_id == client.id {
                tracing::warn!(family_id = %family_id, client_id = %client.id, "authorization code replayed; revoking its tokens");
                grants.tokens.revoke_family(&family_id).await?;
            }
            return Err(invalid);
        }
        CodeRedemption::Unknown => return Err(invalid),
    };
    // Again on what was redeemed (the peek and the redemption are two steps).
    check_exchange(&grant, exchange)?;
    let Some(role) = grants.current_role(&grant.user_id).await? else {
        return Err(invalid);
    };
    let scope = scope::for_client(
        &scope::narrow(None, &grant.scope).unwrap_or_default(),
        client.first_party,
        &role,
    );
    grants
        .tokens
        .start_session(
            UserGrant {
                user_id: &grant.user_id,
                role: &role,
                client,
                scope: &scope,
                with_refresh: client.grant_types.iter().any(|g| g == "refresh_token"),
                epoch: grant.epoch,
                session_id: &grant.session_id,
                auth_time: grant.auth_time,
                nonce: grant.nonce.as_deref(),
                jkt,
            },
            grant.family_id,
        )
        .await
}
