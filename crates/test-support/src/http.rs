//! Blocking HTTP for tests (InfluxDB's API and api-server), on `reqwest::blocking`.
//!
//! `reqwest::blocking` panics when it is used on a thread that runs a Tokio runtime, which is
//! exactly where a `#[tokio::test]` calls these helpers. So every request runs on a short-lived
//! helper thread of its own, where no runtime is active.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};

/// One shared client (and connection pool) for all requests of a test binary. It is never
/// dropped, which matters: dropping a blocking client inside a runtime panics as well.
fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder()
            .timeout(Duration::from_secs(30))
            // Everything is on 127.0.0.1; an HTTP_PROXY in the environment must not apply.
            .no_proxy()
            .build()
            .expect("build the test HTTP client")
    })
}

/// Builds a request with `build` and sends it on a helper thread; returns status and body text.
pub(crate) fn send(
    build: impl FnOnce(&Client) -> RequestBuilder + Send,
) -> Result<(u16, String), String> {
    off_runtime(move || {
        let response: Response = build(client()).send().map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.text().map_err(|e| e.to_string())?;
        Ok((status, body))
    })
}

/// Runs `f` on a fresh thread and returns its result (re-raising its panic, if any).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// GET `url`: `(status, body parsed as JSON or Value::Null, raw body text)`.
/// Panics if no HTTP answer arrives at all (use [`try_http_get`] while waiting for a server).
pub fn http_get(url: &str) -> (u16, serde_json::Value, String) {
    try_http_get(url).unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
}

/// Like [`http_get`], but a connection or transport error is an `Err` instead of a panic — for
/// polling a server that may not be listening yet.
pub fn try_http_get(url: &str) -> Result<(u16, serde_json::Value, String), String> {
    let (status, body) = send(|client| client.get(url))?;
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    Ok((status, json, body))
}

/// Response headers by lower-case name; a header sent several times has its values joined
/// with `", "`.
pub type Headers = std::collections::BTreeMap<String, String>;

/// Sends `method url` with `headers` and, if given, `body`: `(status, body parsed as JSON or
/// Value::Null, raw body text, response headers)`. Panics if no HTTP answer arrives at all.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value, String, Headers) {
    try_http_request(method, url, headers, body)
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"))
}

/// Like [`http_request`], but a connection or transport error (e.g. the server closing the
/// connection without an answer) is an `Err` instead of a panic.
pub fn try_http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<(u16, serde_json::Value, String, Headers), String> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    off_runtime(move || {
        let mut request = client().request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let mut received = Headers::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes());
            received
                .entry(name.as_str().to_owned())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let text = response.text().map_err(|e| e.to_string())?;
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Ok((status, json, text, received))
    })
}
