//! Which browser origins may call the API (`CORS_ORIGINS`), and the CORS layer that says so.
//!
//! Without CORS headers a browser lets only pages served by this host read the answers, which
//! is the safe default. A dashboard served from elsewhere needs its origin listed here. The
//! layer allows GET and the `Authorization` header (for `API_TOKEN`), never credentials
//! (cookies): the API does not use them, and `*` with credentials would be refused anyway.

use std::time::Duration;

use axum::http::{header, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The value of `CORS_ORIGINS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers at all.
    None,
    /// `*`: any origin.
    Any,
    /// Exactly these origins, as browsers send them (`scheme://host[:port]`, lower case).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parses a comma-separated list of origins, or `*`. Empty items are skipped, so an empty
    /// value means [`CorsOrigins::None`].
    pub fn parse(s: &str) -> Result<Self, String> {
        let items: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect();
        match items.as_slice() {
            [] => Ok(CorsOrigins::None),
            ["*"] => Ok(CorsOrigins::Any),
            _ => items
                .iter()
                .map(|item| parse_origin(item))
                .collect::<Result<_, _>>()
                .map(CorsOrigins::List),
        }
    }

    /// The layer to put in front of the routes, or `None` when no origin is allowed.
    pub fn layer(&self) -> Option<CorsLayer> {
        let allow_origin = match self {
            CorsOrigins::None => return None,
            CorsOrigins::Any => AllowOrigin::any(),
            CorsOrigins::List(origins) => AllowOrigin::list(
                origins
                    .iter()
                    // parse_origin admits only visible ASCII, which is always a header value.
                    .filter_map(|origin| HeaderValue::from_str(origin).ok()),
            ),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow_origin)
                .allow_methods([Method::GET])
                .allow_headers([header::AUTHORIZATION])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// One origin: `http://` or `https://`, a host (name, IPv4 or bracketed IPv6) and an optional
/// port, nothing else — browsers send exactly that in `Origin`, so anything more (a path, a
/// trailing slash) could never match and is an operator's mistake worth stopping for.
fn parse_origin(item: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("{item:?} is not an origin: {why}"));
    if item == "*" {
        return bad("`*` allows any origin and must stand alone");
    }
    let origin = item.to_ascii_lowercase();
    let Some((scheme, authority)) = origin.split_once("://") else {
        return bad("expected scheme://host[:port], e.g. https://dash.example.com");
    };
    if scheme != "http" && scheme != "https" {
        return bad("the scheme must be http or https");
    }
    if authority.contains(['/', '?', '#']) {
        return bad("an origin has no path, query or trailing slash");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !host_ok {
        return bad("the host must be a name, an IPv4 address or a bracketed IPv6 address");
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return bad("the port must be a number from 1 to 65535");
        }
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_no_cors_and_a_lone_star_means_any_origin() {
        assert_eq!(CorsOrigins::parse("").unwrap(), CorsOrigins::None);
        assert_eq!(CorsOrigins::parse(" , ").unwrap(), CorsOrigins::None);
        assert_eq!(CorsOrigins::parse("*").unwrap(), CorsOrigins::Any);
        assert!(CorsOrigins::None.layer().is_none());
        assert!(CorsOrigins::Any.layer().is_some());
    }

    #[test]
    fn origins_are_listed_as_browsers_send_them() {
        assert_eq!(
            CorsOrigins::parse(
                "https://Dash.Example.com, http://localhost:5173,http://[::1]:8080,"
            )
            .unwrap(),
            CorsOrigins::List(vec![
                "https://dash.example.com".into(),
                "http://localhost:5173".into(),
                "http://[::1]:8080".into(),
            ])
        );
    }

    #[test]
    fn anything_that_is_not_an_origin_is_refused() {
        for bad in [
            "dash.example",
            "http://dash.example/",
            "http://dash.example/app",
            "ftp://dash.example",
            "http://",
            "http://dash example",
            "http://dash.example:0",
            "http://dash.example:99999",
            "http://dash.example:",
            "http://user@dash.example",
            "*,http://dash.example",
            "null",
        ] {
            let error = CorsOrigins::parse(bad).unwrap_err();
            assert!(error.contains("is not an origin"), "{bad}: {error}");
        }
    }
}
