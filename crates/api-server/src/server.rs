//! Everything between the socket and the routes: the accept loop (with the header limits that
//! `axum::serve` does not expose) and the layers every request passes through.
//!
//! Order of the layers, outermost first:
//! 1. metrics — counts and times every answer by route (the route itself is noted by a layer
//!    on each route, inside the router, where axum knows which one matched);
//! 2. request log — sees every answer, including the refusals below;
//! 3. timeout — a whole request, body included, gets at most `request_timeout`;
//! 4. CORS (when `CORS_ORIGINS` is set) — answers preflights before authentication, since
//!    browsers send them without credentials, and puts CORS headers on 401s too so a browser
//!    page can read why it was refused;
//! 5. bearer token (when `API_TOKEN` is set) — before the body is read, so an anonymous
//!    client cannot make the server buffer anything;
//! 6. body limit;
//! 7. the routes.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use energy_service::Secret;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::cors::CorsOrigins;
use crate::{access_log, auth, limits, metrics};

/// How long shutdown waits for requests in flight before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long to pause after `accept` fails (out of file descriptors, say) before trying again,
/// instead of spinning.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What the layers in front of the routes enforce.
#[derive(Clone, Debug)]
pub struct Policy {
    pub api_token: Option<Secret>,
    pub cors_origins: CorsOrigins,
    pub request_timeout: Duration,
}

/// `routes` behind the layers of this module's doc, configured by `policy`.
pub fn protect(routes: Router, policy: &Policy) -> Router {
    let mut router = routes
        .layer(from_fn(metrics::note_route))
        .layer(from_fn(limits::limit_body));
    if let Some(token) = &policy.api_token {
        router = router.layer(from_fn_with_state(
            token.clone(),
            auth::require_bearer_token,
        ));
    }
    if let Some(cors) = policy.cors_origins.layer() {
        router = router.layer(cors);
    }
    router
        .layer(from_fn_with_state(
            policy.request_timeout,
            limits::time_limit,
        ))
        .layer(from_fn(access_log::log_request))
        .layer(from_fn(metrics::count_request))
}

/// Serves `app` over HTTP/1.1 on `listener` until `shutdown` completes, then lets the
/// requests in flight finish (for at most [`SHUTDOWN_GRACE`]).
pub async fn serve(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits::HEADER_READ_TIMEOUT)
        .max_header_size(limits::MAX_HEADER_BYTES);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that hangs up, or sends headers over the limit (hyper has already
            // answered 431), is routine: not worth more than a debug line.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "requests still in flight at shutdown were cut off"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{header, HeaderValue, Method, Request, StatusCode};
    use axum::response::Response;
    use axum::routing::get;
    use tower::ServiceExt;

    use crate::error::ApiError;

    /// Stand-in routes: the layers are what is tested here, not the endpoints.
    fn routes() -> Router {
        Router::new()
            .route("/api/panel/realtime", get(|| async { "{}" }))
            .route(
                "/api/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "{}"
                }),
            )
            .route("/health", get(|| async { "{}" }))
            .fallback(|| async { ApiError::NotFound })
    }

    fn policy() -> Policy {
        Policy {
            api_token: None,
            cors_origins: CorsOrigins::None,
            request_timeout: Duration::from_secs(10),
        }
    }

    fn with_token() -> Policy {
        Policy {
            api_token: Some(Secret::new("tok-123")),
            ..policy()
        }
    }

    async fn send(policy: &Policy, request: Request<Body>) -> (Response, serde_json::Value) {
        let response = protect(routes(), policy).oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (Response::from_parts(parts, Body::empty()), json)
    }

    fn get_request(uri: &str, headers: &[(header::HeaderName, &str)]) -> Request<Body> {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn with_a_token_set_every_path_but_health_and_the_dashboard_needs_it() {
        let policy = with_token();
        for uri in [
            "/api/panel/realtime",
            "/api/nope",
            "/index.html",
            "/assets/nope.js",
        ] {
            let (response, body) = send(&policy, get_request(uri, &[])).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{uri}");
            assert_eq!(body["error"]["code"], "unauthorized", "{uri}");
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        }
        let (response, _) = send(&policy, get_request("/health", &[])).await;
        assert_eq!(response.status(), StatusCode::OK);
        // The dashboard's page and assets hold no data; the page asks for the token.
        for uri in crate::dashboard::PATHS {
            let response = protect(crate::dashboard::routes(), &policy)
                .oneshot(get_request(uri, &[]))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
        }
    }

    #[tokio::test]
    async fn only_the_configured_bearer_token_is_let_through() {
        let policy = with_token();
        let auth = header::AUTHORIZATION;
        for wrong in ["Bearer tok-124", "Bearer tok-12", "Bearer tok-1234"] {
            let request = get_request("/api/panel/realtime", &[(auth.clone(), wrong)]);
            let (response, body) = send(&policy, request).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong}");
            assert_eq!(body["error"]["code"], "unauthorized");
            assert!(!body.to_string().contains("tok-"), "{body}");
            assert_eq!(
                response.headers()[header::WWW_AUTHENTICATE],
                "Bearer error=\"invalid_token\""
            );
        }
        // The token in another scheme is not a bearer token.
        let request = get_request("/api/panel/realtime", &[(auth.clone(), "Basic tok-123")]);
        assert_eq!(
            send(&policy, request).await.0.status(),
            StatusCode::UNAUTHORIZED
        );
        let request = get_request("/api/panel/realtime", &[(auth.clone(), "Bearer tok-123")]);
        assert_eq!(send(&policy, request).await.0.status(), StatusCode::OK);
        // With the token, an unknown path is an honest 404.
        let request = get_request("/api/nope", &[(auth, "Bearer tok-123")]);
        assert_eq!(
            send(&policy, request).await.0.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn without_a_token_set_nothing_is_asked() {
        let (response, _) = send(&policy(), get_request("/api/panel/realtime", &[])).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn cors_headers_go_only_to_listed_origins() {
        let policy = Policy {
            cors_origins: CorsOrigins::parse("http://dash.example").unwrap(),
            ..with_token()
        };
        let origin = header::ORIGIN;
        let allow = header::ACCESS_CONTROL_ALLOW_ORIGIN;
        let request = get_request(
            "/api/panel/realtime",
            &[
                (origin.clone(), "http://dash.example"),
                (header::AUTHORIZATION, "Bearer tok-123"),
            ],
        );
        let (response, _) = send(&policy, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[&allow], "http://dash.example");
        // A refusal carries them too, so the page can read why.
        let request = get_request(
            "/api/panel/realtime",
            &[(origin.clone(), "http://dash.example")],
        );
        let (response, _) = send(&policy, request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[&allow], "http://dash.example");
        let request = get_request("/api/panel/realtime", &[(origin, "http://evil.example")]);
        let (response, _) = send(&policy, request).await;
        assert!(response.headers().get(&allow).is_none());
    }

    #[tokio::test]
    async fn a_preflight_is_answered_without_the_token() {
        let policy = Policy {
            cors_origins: CorsOrigins::parse("http://dash.example").unwrap(),
            ..with_token()
        };
        let request = Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/panel/realtime")
            .header(header::ORIGIN, "http://dash.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap();
        let (response, _) = send(&policy, request).await;
        assert!(response.status().is_success(), "{}", response.status());
        let headers = response.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://dash.example"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "GET");
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization"
        );
    }

    #[tokio::test]
    async fn without_cors_origins_no_cors_headers_are_sent() {
        let request = get_request(
            "/api/panel/realtime",
            &[(header::ORIGIN, "http://dash.example")],
        );
        let (response, _) = send(&policy(), request).await;
        assert!(response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_413_json() {
        // Declared too large: refused without reading.
        let request = Request::get("/api/panel/realtime")
            .header(header::CONTENT_LENGTH, (1 << 20).to_string())
            .body(Body::from(vec![b'x'; 1 << 20]))
            .unwrap();
        let (response, body) = send(&policy(), request).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "payload_too_large");
        // Of unknown length (a stream): refused once it passes the limit.
        let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024]));
        let request = Request::get("/api/panel/realtime")
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap();
        let (response, body) = send(&policy(), request).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "payload_too_large");
        // At the limit: fine.
        let request = Request::get("/api/panel/realtime")
            .body(Body::from(vec![b'x'; limits::MAX_BODY_BYTES]))
            .unwrap();
        assert_eq!(send(&policy(), request).await.0.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_over_the_timeout_gets_503_json() {
        let policy = Policy {
            request_timeout: Duration::from_millis(100),
            ..policy()
        };
        let started = std::time::Instant::now();
        let (response, body) = send(&policy, get_request("/api/slow", &[])).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            HeaderValue::from_static("application/json")
        );
        assert_eq!(body["error"]["code"], "timeout");
        assert_eq!(
            body["error"]["message"],
            "the request took longer than 100 ms"
        );
    }
}
