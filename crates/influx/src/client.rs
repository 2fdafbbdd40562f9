//! The HTTP client: settings, writes, queries and the error classes callers act on.

use std::time::Duration;

use energy_core::influxql;
use energy_service::Secret;

use serde::de::DeserializeOwned;

use crate::response::{QueryResponse, QueryResult, Rows, StatementResult};

/// The InfluxDB flags, flattened into the subscriber's and the api-server's settings.
#[derive(Clone, Debug, clap::Args)]
pub struct InfluxSettings {
    /// InfluxDB base URL (v1 API: /write, /query, /ping).
    #[arg(long, env = "INFLUX_URL", default_value = "http://localhost:8086",
          value_parser = parse_base_url)]
    pub influx_url: String,

    /// Database (InfluxDB 1.x) or bucket (2.x, Cloud, 3) name.
    #[arg(long, env = "INFLUX_DATABASE", default_value = "energy",
          value_parser = parse_database)]
    pub influx_database: String,

    /// API token, sent as `Authorization: Token …` (never logged).
    #[arg(long, env = "INFLUX_TOKEN", hide_env_values = true)]
    pub influx_token: Option<Secret>,

    /// Timeout of every InfluxDB request, in milliseconds.
    #[arg(long, env = "INFLUX_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub influx_timeout_ms: u64,
}

fn parse_base_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{s:?} must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in INFLUX_TOKEN, not in the URL".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn parse_database(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
        return Err(format!("{s:?} is not a usable database name"));
    }
    Ok(s.to_owned())
}

/// What went wrong talking to InfluxDB, in the classes a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// No answer: connection refused or reset, DNS, or the timeout passed. Worth retrying.
    #[error("InfluxDB is unreachable: {0}")]
    Unreachable(String),
    /// InfluxDB answered with an error status. 5xx (and 401/403/404/429, which an operator
    /// can fix) are worth retrying; 400 means the request itself is bad.
    #[error("InfluxDB answered {status}: {message}")]
    Status { status: u16, message: String },
    /// InfluxDB answered 2xx with something that is not what the API promises.
    #[error("InfluxDB sent an unreadable answer: {0}")]
    BadResponse(String),
}

impl InfluxError {
    /// Whether the same request may succeed later. Only a rejected request body is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            InfluxError::Unreachable(_) | InfluxError::BadResponse(_) => true,
            InfluxError::Status { status, .. } => !matches!(status, 400 | 413),
        }
    }

    /// Whether InfluxDB rejected the points themselves (bad line, field type conflict, too big).
    pub fn is_rejected_write(&self) -> bool {
        !self.is_retryable()
    }

    /// Whether a write (404) or a query (an error inside a 200 answer, reported as 400) failed
    /// because the database does not exist (InfluxDB 1.x).
    pub fn is_database_missing(&self) -> bool {
        matches!(self, InfluxError::Status { message, .. } if message.contains("database not found"))
    }

    /// A short, fixed name of the class of failure, for counting failures by kind (a metric
    /// label): `timeout`, `unreachable`, `status` or `bad_response`.
    pub fn kind(&self) -> &'static str {
        match self {
            InfluxError::Unreachable(message) if message.starts_with(TIMED_OUT) => "timeout",
            InfluxError::Unreachable(_) => "unreachable",
            InfluxError::Status { .. } => "status",
            InfluxError::BadResponse(_) => "bad_response",
        }
    }
}

/// How [`unreachable`] begins the message of a request that ran out of time.
const TIMED_OUT: &str = "timed out";

/// A client for one database. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct InfluxClient {
    http: reqwest::Client,
    base_url: String,
    database: String,
    token: Option<Secret>,
}

impl InfluxClient {
    pub fn new(settings: &InfluxSettings) -> Result<Self, InfluxError> {
        let timeout = Duration::from_millis(settings.influx_timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // Few connections: InfluxDB 1.6 answers many small concurrent writes with
            // `engine: error syncing wal`.
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| InfluxError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base_url: settings.influx_url.clone(),
            database: settings.influx_database.clone(),
            token: settings.influx_token.clone(),
        })
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match &self.token {
            Some(token) => builder.header("Authorization", format!("Token {}", token.expose())),
            None => builder,
        }
    }

    /// `GET /ping`: InfluxDB is up (any 2xx).
    pub async fn ping(&self) -> Result<(), InfluxError> {
        let response = self
            .request(reqwest::Method::GET, "/ping")
            .send()
            .await
            .map_err(unreachable)?;
        check_status(response).await.map(drop)
    }

    /// Writes a body of line protocol with nanosecond timestamps.
    pub async fn write(&self, body: String) -> Result<(), InfluxError> {
        let response = self
            .request(reqwest::Method::POST, "/write")
            .query(&[("db", self.database.as_str()), ("precision", "ns")])
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        check_status(response).await.map(drop)
    }

    /// Runs InfluxQL statements (separated by `;`) and returns one result per statement, with
    /// times as epoch milliseconds. A statement-level error becomes an error for the whole call.
    pub async fn query(&self, statements: &str) -> Result<Vec<StatementResult>, InfluxError> {
        self.query_in(statements, "ms").await
    }

    /// Like [`InfluxClient::query`], with times as epoch nanoseconds (read them with
    /// [`crate::Series::i64_at`]): for computations that must see every reading's exact time.
    pub async fn query_ns(&self, statements: &str) -> Result<Vec<StatementResult>, InfluxError> {
        self.query_in(statements, "ns").await
    }

    /// Like [`InfluxClient::query_ns`], with each row read straight into an `R` (e.g.
    /// `(i64, Option<f64>)` for `time` and one field): a fraction of the memory of
    /// [`StatementResult`] for large answers.
    pub async fn query_rows_ns<R: DeserializeOwned>(
        &self,
        statements: &str,
    ) -> Result<Vec<Rows<R>>, InfluxError> {
        self.query_in(statements, "ns").await
    }

    async fn query_in<T: QueryResult>(
        &self,
        statements: &str,
        epoch: &'static str,
    ) -> Result<Vec<T>, InfluxError> {
        match self.query_once(statements, epoch).await {
            // InfluxDB 1.x answers a multi-statement query on a missing database with only
            // "not executed"; the first statement alone tells the real reason.
            Err(InfluxError::Status { message, .. }) if message == "not executed" => {
                let first = statements.split(';').next().unwrap_or(statements);
                self.query_once::<T>(first, epoch).await?;
                Err(InfluxError::Status {
                    status: 400,
                    message,
                })
            }
            answer => answer,
        }
    }

    async fn query_once<T: QueryResult>(
        &self,
        statements: &str,
        epoch: &'static str,
    ) -> Result<Vec<T>, InfluxError> {
        self.post_query(Some((&self.database, epoch)), statements)
            .await
    }

    /// `CREATE DATABASE` (InfluxDB 1.x; idempotent). On 2.x, Cloud and 3 buckets are created
    /// by the operator and this fails harmlessly.
    pub async fn create_database(&self) -> Result<(), InfluxError> {
        let statement = format!("CREATE DATABASE {}", influxql::identifier(&self.database));
        self.post_query::<StatementResult>(None, &statement)
            .await
            .map(drop)
    }

    /// `POST /query` (which takes every kind of statement), against `database` if given, with
    /// times in the given epoch unit.
    /// An error InfluxDB reports inside a 200 answer becomes an error of the call.
    async fn post_query<T: QueryResult>(
        &self,
        database: Option<(&str, &str)>,
        statements: &str,
    ) -> Result<Vec<T>, InfluxError> {
        let mut request = self.request(reqwest::Method::POST, "/query");
        if let Some((database, epoch)) = database {
            request = request.query(&[("db", database), ("epoch", epoch)]);
        }
        let response = request
            .form(&[("q", statements)])
            .send()
            .await
            .map_err(unreachable)?;
        let text = check_status(response).await?;
        let parsed: QueryResponse<T> =
            serde_json::from_str(&text).map_err(|e| InfluxError::BadResponse(e.to_string()))?;
        drop(text);
        let error = parsed.error.or_else(|| {
            parsed
                .results
                .iter()
                .find_map(|r| r.error().map(str::to_owned))
        });
        match error {
            Some(message) => Err(InfluxError::Status {
                status: 400,
                message,
            }),
            None => Ok(parsed.results),
        }
    }
}

fn unreachable(error: reqwest::Error) -> InfluxError {
    // reqwest's messages name the URL, which holds no secret (tokens travel in a header).
    let kind = if error.is_timeout() {
        TIMED_OUT
    } else {
        "request failed"
    };
    let mut message = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    InfluxError::Unreachable(message)
}

/// The body of a 2xx answer, or the error InfluxDB put in a non-2xx one.
async fn check_status(response: reqwest::Response) -> Result<String, InfluxError> {
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    if status.is_success() {
        return Ok(text);
    }
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(300).collect());
    Err(InfluxError::Status {
        status: status.as_u16(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        influx: InfluxSettings,
    }

    #[test]
    fn settings_reject_bad_urls_and_debug_hides_the_token() {
        assert!(Cli::try_parse_from(["x", "--influx-url", "localhost:8086"]).is_err());
        assert!(Cli::try_parse_from(["x", "--influx-url", "http://u:p@h"]).is_err());
        let cli = Cli::try_parse_from(["x", "--influx-token", "s3cret-token"]).unwrap();
        let client = InfluxClient::new(&cli.influx).unwrap();
        assert!(!format!("{client:?} {:?}", cli.influx).contains("s3cret-token"));
    }

    #[test]
    fn only_rejected_bodies_are_final() {
        let status = |status| InfluxError::Status {
            status,
            message: String::new(),
        };
        assert!(!status(400).is_retryable());
        assert!(status(500).is_retryable());
        assert!(status(401).is_retryable());
        assert!(InfluxError::Unreachable("x".into()).is_retryable());
    }

    #[tokio::test]
    async fn a_refused_connection_and_a_timeout_are_different_kinds() {
        let refused = Cli::try_parse_from(["x", "--influx-url", "http://127.0.0.1:9"]).unwrap();
        let error = InfluxClient::new(&refused.influx)
            .unwrap()
            .ping()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "unreachable", "{error}");

        // A server that accepts the connection and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let cli =
            Cli::try_parse_from(["x", "--influx-url", &url, "--influx-timeout-ms", "200"]).unwrap();
        let error = InfluxClient::new(&cli.influx)
            .unwrap()
            .ping()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "timeout", "{error}");

        let status = InfluxError::Status {
            status: 500,
            message: String::new(),
        };
        assert_eq!(status.kind(), "status");
        assert_eq!(
            InfluxError::BadResponse(String::new()).kind(),
            "bad_response"
        );
    }
}
