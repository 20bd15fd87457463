//! Revocation (RFC 7009) and introspection (RFC 7662) of the tokens
//! [`TokenService`] issued.

use crate::clock::UnixTime;
use crate::crypto::secret::RefreshToken;
use crate::domain::grants::GrantError;
use crate::resource::{AccessTokenVerifier, VerifyError};
use crate::store::{ClientRecord, StoreError};

use super::TokenService;

/// What introspection reports about a live token (RFC 7662 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub token_type: &'static str,
    /// The DPoP key the token (or its family) is bound to: `cnf.jkt`.
    pub jkt: Option<String>,
    pub scope: String,
    pub client_id: String,
    pub sub: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
}

impl TokenService {
    /// Revokes `token` (refresh or access) if `client` may: RFC 7009. Unknown
    /// or dead tokens are not an error. `Err(UnauthorizedClient)` when the
    /// token belongs to another client.
    pub async fn revoke(
        &self,
        verifier: &AccessTokenVerifier,
        client: &ClientRecord,
        token: &str,
    ) -> Result<(), GrantError> {
        if let Some(refresh) = RefreshToken::parse(token) {
            // The family id inside a token is no secret (it is every access
            // token's `fid`): only the token itself, by its hash, may act.
            if let Some(family) = self
                .store
                .live_refresh(refresh.family_id(), &refresh.hash(), self.clock.now())
                .await?
            {
                if family.client_id != client.id {
                    return Err(GrantError::UnauthorizedClient(
                        "the token was not issued to this client",
                    ));
                }
                self.store
                    .revoke_family(&family.id, self.clock.now())
                    .await?;
            }
            return Ok(());
        }
        match verifier.verify_signature(token).await {
            Ok(claims) if claims.client_id != client.id => Err(GrantError::UnauthorizedClient(
                "the token was not issued to this client",
            )),
            // Kept as long as a verifier with leeway may still accept it.
            Ok(claims) => Ok(self
                .store
                .revoke_access_token(&claims.jti, claims.exp + self.leeway as i64)
                .await?),
            Err(_) => Ok(()),
        }
    }

    /// What RFC 7662 reports about `token`; `None` for anything not live.
    pub async fn introspect(
        &self,
        verifier: &AccessTokenVerifier,
        token: &str,
    ) -> Result<Option<TokenInfo>, GrantError> {
        if RefreshToken::parse(token).is_some() {
            let Some(family) = self.live_family(token).await? else {
                return Ok(None);
            };
            // A family from before the user's credential epoch moved is dead
            // (refresh refuses it) even if its revocation did not land.
            if self.store.credential_epoch(&family.user_id).await? > family.epoch {
                return Ok(None);
            }
            return Ok(Some(TokenInfo {
                token_type: "refresh_token",
                jkt: family.jkt,
                scope: family.scope,
                client_id: family.client_id,
                sub: family.user_id,
                exp: family.expires_at,
                iat: family.created_at,
            }));
        }
        match verifier.verify(token).await {
            // The verifier tolerates other machines' clock skew; the issuer
            // judges its own tokens by its own clock, with none (RFC 7662 §2.2).
            Ok(claims) if claims.exp <= self.clock.now() => Ok(None),
            Ok(claims) => Ok(Some(TokenInfo {
                // RFC 9449 §6.2.
                token_type: if claims.cnf.is_some() {
                    "DPoP"
                } else {
                    "Bearer"
                },
                jkt: claims.cnf.map(|c| c.jkt),
                scope: claims.scope,
                client_id: claims.client_id,
                sub: claims.sub,
                exp: claims.exp,
                iat: claims.iat,
            })),
            Err(VerifyError::Unavailable) => Err(GrantError::Store(StoreError::Unavailable {
                backend: "token store",
                reason: "revocation state unavailable".into(),
            })),
            Err(VerifyError::Invalid(_)) => Ok(None),
        }
    }
}
