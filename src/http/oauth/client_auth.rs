//! Client authentication at the OAuth endpoints (RFC 6749 §2.3):
//! `client_secret_basic`, `client_secret_post` or `none`.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::domain::clients::ClientCredentials;
use crate::domain::grants::{GrantError, Params};
use crate::http::error::OAuthError;

/// How the client authenticated, and whether it used HTTP Basic (which
/// decides the shape of a 401).
pub struct PresentedClient {
    pub credentials: ClientCredentials,
    pub basic: bool,
}

/// The client a request to an OAuth endpoint authenticates as (RFC 6749
/// §2.3), and whether it used HTTP Basic (a later 401 must then carry a
/// Basic challenge).
pub async fn authenticated_client(
    state: &crate::http::AppState,
    headers: &HeaderMap,
    params: &Params,
    from: std::net::IpAddr,
) -> Result<(crate::store::ClientRecord, bool), OAuthError> {
    let presented = presented_client(headers, params)?;
    let client = state
        .clients
        .authenticate(&presented.credentials, from)
        .await
        .map_err(|e| OAuthError::from(e).with_basic(presented.basic))?;
    Ok((client, presented.basic))
}

/// Reads the client's credentials from the Authorization header or the form.
/// Using more than one method is `invalid_request` (RFC 6749 §2.3).
pub fn presented_client(
    headers: &HeaderMap,
    params: &Params,
) -> Result<PresentedClient, OAuthError> {
    let invalid_client = || OAuthError::from(GrantError::InvalidClient);
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    let header_value = authorization.next();
    if authorization.next().is_some() {
        return Err(OAuthError::invalid_request(
            "the Authorization header is repeated",
        ));
    }
    let Some(value) = header_value else {
        let client_id = params.get("client_id").ok_or_else(invalid_client)?.clone();
        let credentials = match params.get("client_secret") {
            Some(secret) => ClientCredentials::Secret {
                client_id,
                secret: secret.clone(),
            },
            None => ClientCredentials::PublicId { client_id },
        };
        return Ok(PresentedClient {
            credentials,
            basic: false,
        });
    };
    let basic_failure = || invalid_client().with_basic(true);
    let value = value.to_str().map_err(|_| basic_failure())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(basic_failure)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(basic_failure());
    }
    if params.contains_key("client_secret") {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not both Basic and client_secret",
        ));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| basic_failure())?;
    let decoded = String::from_utf8(decoded).map_err(|_| basic_failure())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(basic_failure)?;
    // RFC 6749 §2.3.1: both halves are form-urlencoded before Base64.
    let client_id = url_decode(id).ok_or_else(basic_failure)?;
    let secret = url_decode(secret).ok_or_else(basic_failure)?;
    if params
        .get("client_id")
        .is_some_and(|form_id| *form_id != client_id)
    {
        return Err(OAuthError::invalid_request(
            "client_id differs from the Basic credentials",
        ));
    }
    Ok(PresentedClient {
        credentials: ClientCredentials::Secret { client_id, secret },
        basic: true,
    })
}

fn url_decode(part: &str) -> Option<String> {
    let plus_as_space = part.replace('+', " ");
    let decoded: Vec<u8> = percent_decode(&plus_as_space)?;
    String::from_utf8(decoded).ok()
}

fn percent_decode(input: &str) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        headers
    }

    #[test]
    fn basic_credentials_are_url_decoded() {
        let presented = presented_client(&basic("my%20client", "a%2Bb+c"), &Params::new()).unwrap();
        assert!(presented.basic);
        assert_eq!(
            presented.credentials,
            ClientCredentials::Secret {
                client_id: "my client".into(),
                secret: "a+b c".into()
            }
        );
    }

    #[test]
    fn two_methods_are_refused() {
        let mut params = Params::new();
        params.insert("client_secret".into(), "x".into());
        let error = presented_client(&basic("a", "b"), &params).err().unwrap();
        assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
    }
}
