//! `client_credentials` (RFC 6749 §4.4): a confidential client acting for itself.

use crate::domain::grants::{GrantError, Grants};
use crate::domain::scope;
use crate::domain::tokens::IssuedTokens;
use crate::store::ClientRecord;

pub(super) fn apply(
    grants: &Grants,
    client: &ClientRecord,
    requested: Option<&str>,
    jkt: Option<&str>,
) -> Result<IssuedTokens, GrantError> {
    if client.is_public() {
        return Err(GrantError::UnauthorizedClient(
            "public clients cannot use client_credentials",
        ));
    }
    let allowed = client.scopes.join(" ");
    let scope = scope::narrow(requested, &allowed).ok_or(GrantError::InvalidScope(
        "the requested scope exceeds what the client may ask for",
    ))?;
    // RFC 6749 §4.4.3: no refresh token for client_credentials.
    grants.tokens.client_token(client, &scope, jkt)
}
