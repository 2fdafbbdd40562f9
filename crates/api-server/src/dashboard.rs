//! The dashboard at `GET /`: one page, its script, style sheet and icon, compiled into the
//! binary, so it works on a network without internet access and needs no files next to the
//! binary.
//!
//! The page and its assets hold no data: the script reads everything from the API, sending the
//! bearer token when the server asks for one (the page then asks the user for it). So they are
//! served without the token (see `auth`), like `/health`.
//!
//! Every asset is answered with:
//! - a `Content-Security-Policy` that allows scripts, styles, images and API calls from this
//!   origin only: no inline script or style, no other origin, no framing. Should a panel id
//!   ever reach the page as markup despite the script's care (it only sets text), it could not
//!   run anything;
//! - `Cache-Control: no-cache` with an `ETag`: a browser keeps its copy but asks each time
//!   whether it is still current, and gets a body-less 304 when it is. After an upgrade, the
//!   new page and script arrive together, never an old script with a new page.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::Paths;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
    /// A hash of `body`, computed at compile time.
    etag: u64,
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, body: &'static str) -> Self {
        Asset {
            path,
            content_type,
            body,
            etag: fnv1a(body.as_bytes()),
        }
    }
}

const ASSETS: [Asset; 4] = [
    Asset::new(
        "/",
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    ),
    Asset::new(
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    ),
    Asset::new(
        "/assets/style.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/style.css"),
    ),
    Asset::new(
        "/assets/icon.svg",
        "image/svg+xml",
        include_str!("dashboard/icon.svg"),
    ),
];

/// The paths of the page and its assets.
pub const PATHS: [&str; 4] = [
    ASSETS[0].path,
    ASSETS[1].path,
    ASSETS[2].path,
    ASSETS[3].path,
];

/// What the page may load: its own script, style sheet and icon, and the API of this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page and its assets, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(asset, &headers) }),
        )
    })
}

/// The page and its assets in the OpenAPI document (`crate::openapi`), from the same table as
/// [`routes`].
pub fn document(paths: &mut Paths) {
    use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
    use utoipa::openapi::{
        ContentBuilder, HttpMethod, ObjectBuilder, Required, ResponseBuilder, Type,
    };
    let text = || ObjectBuilder::new().schema_type(Type::String).build();
    for asset in &ASSETS {
        let summary = match asset.path {
            "/" => "The dashboard page",
            _ => "A file the dashboard page loads",
        };
        // `text/html; charset=utf-8` is served as such; the document names the media type.
        let media_type = asset.content_type.split(';').next().unwrap_or_default();
        let operation = OperationBuilder::new()
            .tag("dashboard")
            .summary(Some(summary))
            .parameter(
                ParameterBuilder::new()
                    .name("If-None-Match")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some("The `ETag` of a copy the client holds"))
                    .schema(Some(text())),
            )
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The file, with a `Content-Security-Policy` and an `ETag`")
                    .content(
                        media_type,
                        ContentBuilder::new().schema(Some(text())).build(),
                    ),
            )
            .response(
                "304",
                ResponseBuilder::new().description("The client's copy is current (no body)"),
            );
        paths.add_path_operation(asset.path, vec![HttpMethod::Get], operation);
    }
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.etag);
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex digits in quotes are a header value"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if matches_etag(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, asset.body).into_response()
}

/// Whether `If-None-Match` names `etag` (weakly, as RFC 9110 §13.1.2 asks) or is `*`.
fn matches_etag(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// 64-bit FNV-1a: a stable hash for the `ETag`, computable in a `const`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_asset(
        path: &str,
        headers: &[(HeaderName, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let response = routes::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    fn body_of(path: &str) -> &'static str {
        ASSETS.iter().find(|a| a.path == path).unwrap().body
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_policy_and_cache_headers() {
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/assets/app.js", "text/javascript; charset=utf-8"),
            ("/assets/style.css", "text/css; charset=utf-8"),
            ("/assets/icon.svg", "image/svg+xml"),
        ] {
            let (status, headers, body) = get_asset(path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            assert!(headers.contains_key(header::ETAG), "{path}");
            assert_eq!(body, body_of(path), "{path}");
            let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert_eq!(csp, CONTENT_SECURITY_POLICY);
        }
    }

    #[test]
    fn the_policy_forbids_inline_code_and_other_origins() {
        let directives: Vec<&str> = CONTENT_SECURITY_POLICY.split("; ").collect();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(directives.contains(&directive), "{directive} missing");
        }
        for loophole in [
            "unsafe-inline",
            "unsafe-eval",
            "*",
            "http",
            "data:",
            "blob:",
        ] {
            assert!(
                !CONTENT_SECURITY_POLICY.contains(loophole),
                "{loophole} allowed"
            );
        }
    }

    #[tokio::test]
    async fn a_current_copy_is_answered_with_304_and_no_body() {
        let (_, headers, _) = get_asset("/assets/app.js", &[]).await;
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        for given in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
            let (status, headers, body) =
                get_asset("/assets/app.js", &[(header::IF_NONE_MATCH, &given)]).await;
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{given}");
            assert_eq!(headers[header::ETAG], etag.as_str());
            assert!(body.is_empty());
        }
        let (status, _, _) =
            get_asset("/assets/app.js", &[(header::IF_NONE_MATCH, "\"stale\"")]).await;
        assert_eq!(status, StatusCode::OK);
        // Each asset has its own tag.
        let (_, css, _) = get_asset("/assets/style.css", &[]).await;
        assert_ne!(css[header::ETAG], etag.as_str());
    }

    #[test]
    fn the_page_loads_its_script_and_style_sheet_and_nothing_inline() {
        let page = body_of("/");
        assert!(page.contains(r#"<script src="/assets/app.js" defer></script>"#));
        assert!(page.contains(r#"<link rel="stylesheet" href="/assets/style.css">"#));
        assert!(page.contains(r#"<link rel="icon" href="/assets/icon.svg""#));
        assert_eq!(
            page.matches("<script").count(),
            1,
            "no inline script besides the one script file"
        );
        assert!(!page.contains("<style"), "no inline style sheet");
        assert!(!page.contains(" style="), "no style attributes");
        let lower = page.to_ascii_lowercase();
        for handler in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            " onchange=",
        ] {
            assert!(!lower.contains(handler), "{handler}");
        }
    }

    #[test]
    fn no_asset_refers_to_another_origin() {
        // The SVG namespace is a name, never fetched; it is the only absolute URL allowed.
        const SVG_NAMESPACE: &str = r#"xmlns="http://www.w3.org/2000/svg""#;
        for asset in &ASSETS {
            let text = asset.body.replace(SVG_NAMESPACE, "");
            for needle in ["://", "\"//", "'//", "(//", "`//", "@import"] {
                assert!(!text.contains(needle), "{} contains {needle:?}", asset.path);
            }
        }
    }

    #[test]
    fn the_script_never_parses_data_as_markup() {
        let script = body_of("/assets/app.js");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!script.contains(sink), "app.js uses {sink}");
        }
    }

    #[test]
    fn the_page_has_the_hooks_and_landmarks_it_promises() {
        let page = body_of("/");
        for needle in [
            r#"<html lang="en">"#,
            "<header",
            "<main",
            "<footer",
            "<h1",
            r#"aria-live="polite""#,
            r#"<label for="year">"#,
            r#"<label for="token">"#,
            r#"type="password""#,
            r#"data-panel="""#,
            r#"data-field="status""#,
            r#"data-field="power_kw""#,
            r#"data-field="energy_kwh""#,
            r#"data-field="last_seen""#,
            r#"data-field="today_usage_kwh""#,
            r#"data-field="today_cost""#,
            r#"data-field="total_usage_kwh""#,
            r#"data-field="total_cost""#,
            r#"data-field="timezone""#,
            r#"data-field="tariff""#,
            r#"data-field="currency""#,
        ] {
            assert!(page.contains(needle), "index.html lacks {needle}");
        }
        let style = body_of("/assets/style.css");
        for needle in [
            "prefers-reduced-motion",
            ":focus-visible",
            "prefers-color-scheme",
        ] {
            assert!(style.contains(needle), "style.css lacks {needle}");
        }
    }

    #[test]
    fn identical_bytes_hash_alike_and_different_bytes_do_not() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a(b"ab"), fnv1a(b"ba"));
    }
}
