//! Bearer-token authentication (`API_TOKEN`).
//!
//! When a token is configured, every request needs `Authorization: Bearer <token>`, except
//! `GET /health`, which load balancers and orchestrators probe without credentials (it reveals
//! only whether InfluxDB answers), and the dashboard's page and assets, which hold no data (the
//! page asks for the token and sends it with its API calls). Unknown paths need the token too,
//! so an anonymous client cannot map the API: it gets 401 everywhere but those.
//!
//! The comparison takes the same time however many leading bytes match (only the length of
//! the token can be learnt from timing, which a long random token makes worthless). Neither
//! the token nor the `Authorization` header is ever logged.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use energy_service::Secret;
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The paths anyone may call without the token besides the dashboard's.
pub const OPEN_PATHS: [&str; 1] = ["/health"];

/// Whether `path` is served without the token; the OpenAPI document (`openapi`) says the same.
pub(crate) fn is_open(path: &str) -> bool {
    OPEN_PATHS.contains(&path) || crate::dashboard::PATHS.contains(&path)
}

/// Middleware (`axum::middleware::from_fn_with_state`): lets a request through only with the
/// configured bearer token, or to an open path.
pub async fn require_bearer_token(
    State(token): State<Secret>,
    request: Request,
    next: Next,
) -> Response {
    if is_open(request.uri().path()) {
        return next.run(request).await;
    }
    match presented_token(request.headers()) {
        Some(given) if same_token(given, token.expose().as_bytes()) => next.run(request).await,
        given => ApiError::Unauthorized {
            token_given: given.is_some(),
        }
        .into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme name is
/// case-insensitive (RFC 9110 §11.1). Any other scheme counts as no token.
fn presented_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

/// Compares in constant time for a given length.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn token_of(authorization: &str) -> Option<Vec<u8>> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        presented_token(&headers).map(<[u8]>::to_vec)
    }

    #[test]
    fn only_the_bearer_scheme_carries_a_token() {
        assert_eq!(token_of("Bearer abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(token_of("bearer  abc ").as_deref(), Some(&b"abc"[..]));
        assert_eq!(token_of("BEARER abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(token_of("Basic YWJjOmRlZg=="), None);
        assert_eq!(token_of("Bearer"), None);
        assert_eq!(token_of("Bearer "), None);
        assert_eq!(token_of("Bearerabc"), None);
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }

    #[test]
    fn a_token_matches_only_itself() {
        assert!(same_token(b"tok-123", b"tok-123"));
        assert!(!same_token(b"tok-124", b"tok-123"));
        assert!(!same_token(b"tok-12", b"tok-123"));
        assert!(!same_token(b"tok-1234", b"tok-123"));
        assert!(!same_token(b"", b"tok-123"));
    }
}
