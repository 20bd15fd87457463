//! Our extractors: JSON bodies whose rejections are problem+json, and the
//! user-token guard for `/api/users`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::domain::grants::Params;
use crate::domain::{FieldErrors, scope};
use crate::http::error::{ApiError, OAuthError};
use crate::resource::{AccessTokenVerifier, AuthScheme, Authenticated};

/// A JSON body. Wrong content type → 415, over the limit → 413, not JSON →
/// 400, JSON of the wrong shape → 422 naming the field (never its value).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// [`ApiJson`] for a body that may be left out: an empty body (whatever
/// its content type, often none) is `T::default()`; anything else must be
/// JSON as for `ApiJson`.
pub struct OptionalApiJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalApiJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        if bytes.is_empty() {
            return Ok(OptionalApiJson(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(OptionalApiJson)
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::MalformedBody("the request body could not be read")
    }
}

/// Parses `bytes` as `T`, turning serde's messages into field errors that
/// say what is wrong without repeating the submitted value.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first, so that `null x` is malformed (400) rather than the wrong shape (422).
    if bytes.is_empty() {
        return Err(ApiError::MalformedBody("the request body is empty"));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map_err(|_| ApiError::MalformedBody("the request body is not valid JSON"))?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::Validation(field_error(&path, &inner)),
            _ => ApiError::MalformedBody("the request body is not valid JSON"),
        }
    })?;
    deserializer
        .end()
        .map_err(|_| ApiError::MalformedBody("the request body is not valid JSON"))?;
    Ok(value)
}

fn field_error(path: &str, error: &serde_json::Error) -> FieldErrors {
    let message = error.to_string();
    let mut errors = FieldErrors::new();
    // serde reports a missing or unknown field on the parent object, with
    // the field's name in backticks in the message.
    let named = message.split('`').nth(1).unwrap_or("").to_owned();
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let (field, what) = if message.starts_with("missing field") {
        (join(&named), "is required")
    } else if message.starts_with("unknown field") {
        (join(&named), "is not allowed")
    } else if message.starts_with("invalid type") {
        (path.to_owned(), "has the wrong type")
    } else {
        (path.to_owned(), "is invalid")
    };
    let field = if field.is_empty() || field == "." {
        "body".to_owned()
    } else {
        field
    };
    errors.insert(field, what.to_owned());
    errors
}

/// An `application/x-www-form-urlencoded` OAuth request (RFC 6749 §3.2).
/// Empty values count as absent (§3.1); a parameter given twice is
/// `invalid_request`. Errors are RFC 6749 JSON, not problem+json.
#[derive(Debug, Clone)]
pub struct OAuthForm(pub Params);

impl<S> FromRequest<S> for OAuthForm
where
    S: Send + Sync,
{
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let essence = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if essence.as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                OAuthError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    "request bodies are limited to 64 KiB",
                )
            } else {
                OAuthError::invalid_request("the request body could not be read")
            }
        })?;
        parse_form(&bytes).map(OAuthForm)
    }
}

/// The request's `DPoP` header (RFC 9449 §4.1), if any: at most one, in
/// visible ASCII (a proof is a compact JWS).
pub fn dpop_proof(
    headers: &axum::http::HeaderMap,
) -> Result<Option<&str>, crate::domain::grants::GrantError> {
    use crate::domain::grants::GrantError;
    let mut values = headers.get_all("dpop").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(GrantError::InvalidDpopProof("send exactly one DPoP header"));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| GrantError::InvalidDpopProof("the DPoP proof is malformed"))
}

/// Parses a form body into parameters, refusing duplicates.
pub fn parse_form(bytes: &[u8]) -> Result<Params, OAuthError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(OAuthError::invalid_request("the body is not valid UTF-8"));
    }
    let mut params = Params::new();
    for (name, value) in form_urlencoded::parse(bytes) {
        if value.is_empty() {
            continue;
        }
        if params
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(OAuthError::invalid_request(format!(
                "parameter {} is repeated",
                printable(&name)
            )));
        }
    }
    Ok(params)
}

/// The query of an admin listing: each parameter at most once, and only
/// those in `allowed` (a typo must not silently widen a listing). Keys are
/// the allowed names, so nothing the caller wrote is ever echoed as a key.
pub fn listing_params(
    raw: Option<&str>,
    allowed: &[&'static str],
) -> Result<BTreeMap<&'static str, String>, ApiError> {
    let mut params = BTreeMap::new();
    let mut errors = FieldErrors::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match allowed.iter().find(|a| **a == name) {
            Some(known) if params.contains_key(known) => {
                errors.insert((*known).to_owned(), "must be given at most once".into());
            }
            Some(known) => {
                params.insert(*known, value.into_owned());
            }
            None => {
                errors.insert(
                    "query".into(),
                    format!("unknown parameter {:?}", printable(&name)),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// A parameter name safe to echo: short and printable.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

/// The client's IP address: the TCP peer, or — only when the peer is a
/// trusted proxy — the rightmost untrusted address of `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

impl<S> FromRequestParts<S> for ClientAddr
where
    Arc<Vec<ipnet::IpNet>>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let trusted = Arc::<Vec<ipnet::IpNet>>::from_ref(state);
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Ok(Self(client_address(peer, &parts.headers, &trusted)))
    }
}

/// RFC 7239-style walk: from the right, skip trusted hops; the first
/// untrusted address is the client. Without a trusted peer the header is
/// ignored (anyone can write it). The walk stops at an entry that is not an
/// address: everything left of it was written by someone we cannot vouch
/// for, so the nearest hop that we trust and that passed it on is the
/// client as far as we can tell. (A client that sends `X-Forwarded-For: x`
/// through a proxy that appends is still found: the proxy's entry is on the
/// right of the garbage.)
pub fn client_address(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Element by element: one odd byte must not make a whole line garbage.
    let values: Vec<std::borrow::Cow<'_, str>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect();
    let mut nearest = peer;
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Ok(ip) = hop.trim().parse::<std::net::IpAddr>() else {
            return nearest;
        };
        if !is_trusted(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// A verified access token that belongs to a user (not a client) and grants
/// `profile`: what the reading endpoints of `/api/users` need.
#[derive(Clone, Debug)]
pub struct UserToken(pub Authenticated);

impl UserToken {
    pub fn user_id(&self) -> &str {
        &self.0.claims.sub
    }
}

/// A verified user access token that grants `account`: what every endpoint
/// that changes the user's own account needs (first-party clients only).
#[derive(Clone, Debug)]
pub struct AccountToken(pub Authenticated);

impl AccountToken {
    pub fn user_id(&self) -> &str {
        &self.0.claims.sub
    }
}

/// The verified user token of the request if it grants `needed`; else the
/// RFC 6750 answer (401 `invalid_token`, or 403 `insufficient_scope`).
async fn user_token_with<S>(
    parts: &mut Parts,
    state: &S,
    needed: &'static str,
) -> Result<Authenticated, Response>
where
    Arc<AccessTokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    let auth = Authenticated::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    if auth.claims.sid.is_none() || !auth.claims.has_scope(needed) {
        return Err(insufficient_scope(needed, auth.scheme()));
    }
    Ok(auth)
}

/// 403 `insufficient_scope` (RFC 6750 §3.1), its challenge in the scheme
/// the token came in: a DPoP request is answered in DPoP (RFC 9449 §7.1).
pub fn insufficient_scope(needed: &'static str, scheme: AuthScheme) -> Response {
    let mut response = ApiError::InsufficientScope(needed).into_response();
    if scheme == AuthScheme::Dpop {
        let challenge = format!(
            "DPoP error=\"insufficient_scope\", scope=\"{needed}\", algs=\"{}\"",
            tessera_resource::dpop::PROOF_ALGORITHMS.join(" ")
        );
        if let Ok(value) = header::HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

impl<S> FromRequestParts<S> for UserToken
where
    Arc<AccessTokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        user_token_with(parts, state, scope::PROFILE)
            .await
            .map(Self)
    }
}

impl<S> FromRequestParts<S> for AccountToken
where
    Arc<AccessTokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        user_token_with(parts, state, scope::ACCOUNT)
            .await
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        age: Option<u8>,
    }

    fn fields(result: Result<Body, ApiError>) -> FieldErrors {
        match result {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn shape_errors_name_the_field_not_the_value() {
        let errors = fields(parse_json(br#"{"email": {"$gt": ""}}"#));
        assert_eq!(errors["email"], "has the wrong type");
        let errors = fields(parse_json(br#"{}"#));
        assert_eq!(errors["email"], "is required");
        let errors = fields(parse_json(br#"{"email": "a", "role": "admin"}"#));
        assert_eq!(errors["role"], "is not allowed");
        let errors = fields(parse_json(br#"{"email": "a", "age": 999}"#));
        assert!(errors.contains_key("age"));
        assert!(!format!("{errors:?}").contains("999"));
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.9, 10.0.0.2".parse().unwrap(),
        );
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: std::net::IpAddr = "192.0.2.5".parse().unwrap();
        // Through trusted hops: the rightmost untrusted address.
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "203.0.113.9".parse::<std::net::IpAddr>().unwrap()
        );
        // From an untrusted peer the header is ignored.
        assert_eq!(client_address(stranger, &headers, &trusted), stranger);
        // Garbage in the header: fall back to the peer.
        headers.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(client_address(proxy, &headers, &trusted), proxy);
        // Garbage written by the client, then the address our proxy saw:
        // the client is the address on the right of the garbage.
        headers.insert("x-forwarded-for", "x, 203.0.113.9".parse().unwrap());
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "203.0.113.9".parse::<std::net::IpAddr>().unwrap()
        );
        // Two header lines: the last line is the nearest.
        headers.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        headers.append("x-forwarded-for", "x, 203.0.113.7".parse().unwrap());
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "203.0.113.7".parse::<std::net::IpAddr>().unwrap()
        );
    }

    proptest::proptest! {
        /// Whatever arrives, parsing answers; it never panics.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_form(&bytes);
            let _ = parse_json::<Body>(&bytes);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = crate::crypto::secret::RefreshToken::parse(text);
            }
        }

        #[test]
        fn forms_round_trip(pairs in proptest::collection::btree_map("[a-z_]{1,12}", "[ -~]{1,40}", 0..8)) {
            let encoded: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
            let parsed = parse_form(encoded.as_bytes()).unwrap();
            proptest::prop_assert_eq!(parsed, pairs.into_iter().collect::<Params>());
        }
    }

    #[test]
    fn syntax_errors_are_malformed() {
        for body in [&b""[..], b"{", b"{\"email\": \"a\"} trailing", b"\xff\xfe"] {
            assert!(
                matches!(parse_json::<Body>(body), Err(ApiError::MalformedBody(_))),
                "{body:?}"
            );
        }
    }
}
