//! The router ([`app`]) and, served by it at `GET /api/openapi.json`, the OpenAPI 3.1 document
//! of this API, generated from the code. Both are put together here, from the handlers
//! (`routes`, `stream`) and the dashboard's table, which know nothing of the router.
//!
//! Each part of the document comes from what it describes, so it cannot drift from what is
//! served:
//! - the API's routes: each handler's `#[utoipa::path]`, registered by [`api`] with
//!   `utoipa_axum::routes!`, which adds the route and its documentation together;
//! - the answers: the typed structs the handlers serialize (`ToSchema`);
//! - the dashboard's files: the table that serves them (`dashboard::document`);
//! - what the layers in front of the routes (`server::protect`) add to every route, here from
//!   their own rules: the bearer token as optional security, with its 401, on every path that
//!   `auth` does not leave open (the token is asked only when `API_TOKEN` is set), and the 413
//!   of the body limit.
//!
//! 404 (an unknown path) and 405 (a method other than GET) belong to no documented operation:
//! they are the router's fallbacks ([`app`]), reusable responses under `components` and
//! described in `info`.

use std::sync::{Arc, LazyLock};

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, PathItem, Ref, RefOr, Response, ResponseBuilder,
    SecurityRequirement, Type,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::answers::RealtimePanel;
use crate::error::{ApiError, ErrorBody};
use crate::live::StreamSync;
use crate::state::AppState;
use crate::{alerts, auth, billing, dashboard, intervals, limits, routes, stream, virtual_meters};

/// The name of the bearer-token security scheme in the document.
const BEARER: &str = "bearer_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Energy monitor API",
        description = "Panels (power meters) and their electricity usage and cost, from the \
readings stored in InfluxDB.\n\n\
Answers are JSON (monthly, daily and intervals also CSV with `format=csv`); timestamps are RFC \
3339 UTC, except interval starts, which carry the local offset; panels are sorted by id. Every error is \
`{\"error\": {\"code\", \"message\"}}` (`ErrorBody`): besides those listed per operation, an \
unknown path gets 404 `not_found` and a method other than GET gets 405 `method_not_allowed` \
(`components.responses`).\n\n\
When the server has `API_TOKEN` set, every path except `/health` and the dashboard's needs \
`Authorization: Bearer <token>` (401 otherwise, unknown paths too); without it, nothing is asked.",
    ),
    servers((url = "/", description = "The api-server that serves this document")),
    components(schemas(ErrorBody, RealtimePanel, StreamSync)),
    tags(
        (name = "panels", description = "The panels' latest readings"),
        (name = "energy", description = "Usage and cost over local days and months"),
        (name = "operations", description = "Probes and this document"),
        (name = "dashboard", description = "The built-in dashboard (no data, served without the token)"),
    )
)]
struct ApiDoc;

/// The documented routes: the router and its part of the OpenAPI document.
pub(crate) fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(routes::realtime))
        .routes(routes!(routes::today_usage))
        .routes(routes!(routes::summary))
        .routes(routes!(routes::monthly))
        .routes(routes!(intervals::intervals))
        .routes(routes!(intervals::daily))
        .routes(routes!(billing::bill))
        .routes(routes!(virtual_meters::declared))
        .routes(routes!(alerts::list))
        .routes(routes!(stream::stream))
        .routes(routes!(routes::health))
        .routes(routes!(routes::render))
        .routes(routes!(openapi_json))
}

/// The router: the documented routes, the dashboard, and JSON errors for everything else.
pub fn app(state: Arc<AppState>) -> Router {
    Router::from(api())
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// The document as JSON, built on first use.
pub fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> =
        LazyLock::new(|| serde_json::to_string(&build()).expect("an OpenAPI document serializes"));
    &DOCUMENT
}

/// The document: the routes' own documentation, the dashboard's, and what the layers add.
pub(crate) fn build() -> utoipa::openapi::OpenApi {
    let (_, api) = api().split_for_parts();
    let mut openapi = ApiDoc::openapi().merge_from(api);
    dashboard::document(&mut openapi.paths);
    add_what_the_layers_do(&mut openapi);
    openapi
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
    )
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document(),
    )
}

/// An error answer with `description`, as a response component.
fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

fn reference(response: &str) -> RefOr<Response> {
    RefOr::Ref(Ref::from_response_name(response))
}

fn add_what_the_layers_do(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The server's `API_TOKEN`; needed only when the server has one set",
                ))
                .build(),
        ),
    );
    let challenge = HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(
            "`Bearer` when no token was given, `Bearer error=\"invalid_token\"` for a wrong one",
        ))
        .build();
    let shared = [
        (
            "Unauthorized",
            error_response(
                "`API_TOKEN` is set and the request has no `Authorization: Bearer` header \
                 with it (`unauthorized`)",
            )
            .header("WWW-Authenticate", challenge),
        ),
        (
            "PayloadTooLarge",
            error_response(&format!(
                "The request has a body of more than {} bytes (`payload_too_large`)",
                limits::MAX_BODY_BYTES
            )),
        ),
        (
            "NotFound",
            error_response("No such path (`not_found`); with `API_TOKEN` set, 401 comes first"),
        ),
        (
            "MethodNotAllowed",
            error_response("The path exists but answers only GET (`method_not_allowed`)"),
        ),
    ];
    for (name, response) in shared {
        components
            .responses
            .insert(name.into(), RefOr::T(response.build()));
    }

    let anyone = SecurityRequirement::default();
    let bearer = SecurityRequirement::new(BEARER, Vec::<String>::new());
    for (path, item) in &mut openapi.paths.paths {
        let open = auth::is_open(path);
        for operation in operations_mut(item) {
            let responses = &mut operation.responses.responses;
            if open {
                operation.security = Some(vec![anyone.clone()]);
            } else {
                // `{}` first: without `API_TOKEN` the server asks for nothing.
                operation.security = Some(vec![anyone.clone(), bearer.clone()]);
                responses.insert("401".into(), reference("Unauthorized"));
            }
            responses.insert("413".into(), reference("PayloadTooLarge"));
        }
    }
}

fn operations_mut(
    item: &mut PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::state::tests::offline_state;

    /// The document as the router serves it.
    async fn served() -> Value {
        let request = Request::get("/api/openapi.json")
            .body(Body::empty())
            .unwrap();
        let response = app(offline_state()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn paths(document: &Value) -> &serde_json::Map<String, Value> {
        document["paths"].as_object().expect("paths is an object")
    }

    #[tokio::test]
    async fn the_document_is_openapi_3_1_with_the_name_and_version_of_this_build() {
        let document = served().await;
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["title"], "Energy monitor API");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(document["servers"][0]["url"], "/");
        assert!(!paths(&document).is_empty());
        assert!(document["components"]["schemas"]["ErrorBody"].is_object());
        // It reads back as an OpenAPI document and writes out the same.
        let parsed: utoipa::openapi::OpenApi = serde_json::from_value(document.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), document);
    }

    #[tokio::test]
    async fn every_reference_in_the_document_resolves() {
        fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(object) => {
                    if let Some(Value::String(target)) = object.get("$ref") {
                        found.push(target);
                    }
                    object.values().for_each(|v| references(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| references(v, found)),
                _ => {}
            }
        }
        let document = served().await;
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(found.len() > 10, "{found:?}");
        for target in found {
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(
                document.pointer(pointer).is_some(),
                "{target} is not in the document"
            );
        }
    }

    /// Methods a client may try. HEAD is left out: axum answers it wherever it answers GET
    /// (HTTP's rule), which OpenAPI documents need not repeat.
    const METHODS: [Method; 5] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];

    #[tokio::test]
    async fn every_documented_operation_is_routed_and_other_methods_get_405() {
        let document = served().await;
        for (path, item) in paths(&document) {
            // A path parameter gets a value that could be a real one (a panel id).
            let uri: String = path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "P1"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            for method in METHODS {
                let documented = item.get(method.as_str().to_lowercase()).is_some();
                let request = Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap();
                let response = app(offline_state()).oneshot(request).await.unwrap();
                let status = response.status();
                if documented {
                    assert!(
                        status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path}: {status}"
                    );
                } else {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                }
            }
        }
    }

    /// The paths the router knows. axum has no API to list them, but its `Debug` output names
    /// each; a route added with a plain `.route(…)` (not `routes!`) shows up here and not in
    /// the document.
    fn routed_paths(router: &axum::Router) -> Vec<String> {
        let debug = format!("{router:?}");
        // Only the router proper: the fallback router has axum's own catch-all path.
        let routes = debug.split("fallback_router").next().unwrap_or_default();
        routes
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|text| text.starts_with('/') && !text.contains("__private__"))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn every_routed_path_is_in_the_document() {
        let document = served().await;
        let routed = routed_paths(&app(offline_state()));
        assert!(
            routed.len() >= paths(&document).len(),
            "axum's Debug output no longer lists the routes ({routed:?}): adapt routed_paths"
        );
        for path in routed {
            assert!(
                paths(&document).contains_key(&path),
                "{path} is not documented"
            );
        }
    }

    #[tokio::test]
    async fn the_token_is_asked_exactly_where_the_document_says() {
        let policy = crate::server::Policy {
            api_token: Some(energy_service::Secret::new("tok-123")),
            cors_origins: crate::cors::CorsOrigins::None,
            request_timeout: std::time::Duration::from_secs(10),
        };
        let document = served().await;
        for (path, item) in paths(&document) {
            let operation = &item["get"];
            let documented_401 = operation["responses"].get("401").is_some();
            let security = operation["security"].as_array().unwrap();
            assert_eq!(
                security.iter().any(|s| s.get(BEARER).is_some()),
                documented_401,
                "{path}: security {security:?}"
            );
            assert!(
                security.iter().any(|s| s == &serde_json::json!({})),
                "{path}: without API_TOKEN nothing is asked"
            );
            let app = crate::server::protect(app(offline_state()), &policy);
            let request = Request::get(path).body(Body::empty()).unwrap();
            let status = app.oneshot(request).await.unwrap().status();
            assert_eq!(
                status == StatusCode::UNAUTHORIZED,
                documented_401,
                "{path}: {status}"
            );
        }
    }

    #[tokio::test]
    async fn wrong_methods_and_unknown_paths_get_json_errors() {
        async fn call(method: &str, uri: &str) -> (StatusCode, Value) {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            let response = app(offline_state()).oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, serde_json::from_slice(&bytes).unwrap())
        }
        let (status, body) = call("POST", "/api/panel/realtime").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
        let (status, body) = call("GET", "/api/panel").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }
}
