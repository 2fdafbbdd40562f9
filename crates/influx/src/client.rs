//! The HTTP client: settings, writes, queries and the error classes callers act on.

use std::time::Duration;

use energy_core::influxql;
use energy_service::Secret;

use serde::de::DeserializeOwned;

use crate::response::{AnswerReader, QueryResult, Rows, StatementResult};

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
    /// InfluxDB answered with only part of the rows, flagged `"partial"`: a server that ignored
    /// the `chunked` parameter and applied a row limit (InfluxDB 1.x's `max-row-limit`, or a
    /// hosted service's cap), or a chunked answer that ended before its last chunk. Never read
    /// as a result: a figure summed from part of the rows is wrong without showing it.
    #[error("InfluxDB cut the answer short (partial): {0}")]
    Partial(String),
}

impl InfluxError {
    /// Whether the same request may succeed later. Only a rejected request body is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            // A cut answer may be whole once the operator lifts the limit; and it is never
            // the answer to a write, whose rejection `is_rejected_write` reports.
            InfluxError::Unreachable(_) | InfluxError::BadResponse(_) | InfluxError::Partial(_) => {
                true
            }
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
    /// label): `timeout`, `unreachable`, `status`, `bad_response` or `partial`.
    ///
    /// `partial` is a kind of its own, not a `bad_response`: the answer was well formed, only
    /// cut by a row limit, and the remedy is the server's configuration (raise or remove the
    /// limit, or use a server that answers chunked queries), not a bug of either side.
    pub fn kind(&self) -> &'static str {
        match self {
            InfluxError::Unreachable(message) if message.starts_with(TIMED_OUT) => "timeout",
            InfluxError::Unreachable(_) => "unreachable",
            InfluxError::Status { .. } => "status",
            InfluxError::BadResponse(_) => "bad_response",
            InfluxError::Partial(_) => "partial",
        }
    }
}

/// How [`unreachable`] begins the message of a request that ran out of time.
const TIMED_OUT: &str = "timed out";

/// Rows per chunk of a query's answer. Every query is sent with `chunked=true`, because
/// InfluxDB 1.x applies its `max-row-limit` only to answers that are not chunked (cutting them
/// and flagging them `"partial"`); chunks are merged back by `response::AnswerReader`. 10 000 is
/// InfluxDB's own default chunk size: large enough that an answer of a few thousand rows comes
/// in one chunk, small enough that one chunk's text (about half a megabyte of raw readings) is
/// all the client holds unparsed at a time.
pub const CHUNK_SIZE: usize = 10_000;

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
    /// times in the given epoch unit, chunked (see [`CHUNK_SIZE`]); one result per statement,
    /// in statement order.
    /// An error InfluxDB reports inside a 200 answer becomes an error of the call, and so does
    /// an answer it cut short ([`InfluxError::Partial`]).
    async fn post_query<T: QueryResult>(
        &self,
        database: Option<(&str, &str)>,
        statements: &str,
    ) -> Result<Vec<T>, InfluxError> {
        let mut request = self
            .request(reqwest::Method::POST, "/query")
            .query(&[("chunked", "true")])
            .query(&[("chunk_size", CHUNK_SIZE)]);
        if let Some((database, epoch)) = database {
            request = request.query(&[("db", database), ("epoch", epoch)]);
        }
        let response = request
            .form(&[("q", statements)])
            .send()
            .await
            .map_err(unreachable)?;
        let mut response = successful(response).await?;
        // Each piece read as it arrives: only the chunk being received is held as text.
        let mut reader = AnswerReader::<T>::new();
        while let Some(bytes) = response.chunk().await.map_err(unreachable)? {
            reader.feed(&bytes)?;
        }
        reader.finish()
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
    successful(response)
        .await?
        .text()
        .await
        .map_err(unreachable)
}

/// A 2xx answer with its body still to read, or the error InfluxDB put in a non-2xx one.
async fn successful(response: reqwest::Response) -> Result<reqwest::Response, InfluxError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.map_err(unreachable)?;
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
        assert_eq!(InfluxError::Partial(String::new()).kind(), "partial");
    }

    /// A stand-in for InfluxDB on a loopback port: answers each request in turn with the next
    /// of `bodies` (status 200, written in pieces of 40 bytes, so the client gets the body in
    /// parts), and returns each request's target and body once all are answered.
    fn fake_influx(bodies: Vec<String>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            bodies
                .into_iter()
                .map(|body| {
                    let (stream, _) = listener.accept().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut request_line = String::new();
                    reader.read_line(&mut request_line).unwrap();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut form = vec![0; length];
                    reader.read_exact(&mut form).unwrap();
                    let mut stream = reader.into_inner();
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .unwrap();
                    for piece in body.as_bytes().chunks(40) {
                        stream.write_all(piece).unwrap();
                        stream.flush().unwrap();
                    }
                    format!(
                        "{}{}",
                        request_line.trim(),
                        String::from_utf8(form).unwrap()
                    )
                })
                .collect()
        });
        (url, server)
    }

    fn client_of(url: &str) -> InfluxClient {
        let cli = Cli::try_parse_from(["x", "--influx-url", url]).unwrap();
        InfluxClient::new(&cli.influx).unwrap()
    }

    #[tokio::test]
    async fn queries_are_sent_chunked_and_their_chunks_merged() {
        let answer = [
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[1,1.5],[2,2.5]],"partial":true}],"partial":true}]}"#,
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[3,3.5]]}]}]}"#,
            r#"{"results":[{"statement_id":1}]}"#,
        ]
        .map(|line| format!("{line}\n"))
        .concat();
        let (url, server) = fake_influx(vec![answer.clone(), answer]);
        let client = client_of(&url);

        let results = client
            .query("SELECT v FROM m; SELECT v FROM n")
            .await
            .unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].series.len(), 1);
        let times: Vec<Option<i64>> = (0..3)
            .map(|row| results[0].series[0].time_ms_at(row))
            .collect();
        assert_eq!(times, [Some(1), Some(2), Some(3)]);
        assert!(results[1].series.is_empty());

        let rows = client
            .query_rows_ns::<(i64, f64)>("SELECT v FROM m; SELECT v FROM n")
            .await
            .unwrap();
        assert_eq!(rows[0].series[0].values, [(1, 1.5), (2, 2.5), (3, 3.5)]);
        assert!(rows[1].series.is_empty());

        let requests = server.join().unwrap();
        for (request, epoch) in requests.iter().zip(["ms", "ns"]) {
            assert!(
                request.starts_with(&format!(
                    "POST /query?chunked=true&chunk_size={CHUNK_SIZE}&db=energy&epoch={epoch} "
                )),
                "{request}"
            );
        }
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_an_error_of_the_call() {
        // What InfluxDB 1.x with `max-row-limit = 2` answers a server-side non-chunked query.
        let cut = r#"{"results":[{"statement_id":0,"series":[{"name":"energy_data","tags":{"panel":"A"},"columns":["time","energy_kwh"],"values":[[1,1.5],[2,2.5]],"partial":true}]}]}"#;
        let (url, server) = fake_influx(vec![format!("{cut}\n")]);
        let error = client_of(&url)
            .query_rows_ns::<(i64, f64)>("SELECT energy_kwh FROM energy_data GROUP BY panel")
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "InfluxDB cut the answer short (partial): statement 0, series energy_data{panel=A} \
             after 2 rows"
        );
        assert_eq!(error.kind(), "partial");
        server.join().unwrap();
    }

    #[tokio::test]
    async fn not_executed_is_explained_by_the_first_statement_alone() {
        // InfluxDB 1.x, non-chunked, two statements on a missing database: only "not executed";
        // asked the first statement alone, it says why.
        let (url, server) = fake_influx(vec![
            r#"{"results":[{"statement_id":0,"error":"not executed"}]}"#.to_owned(),
            r#"{"results":[{"statement_id":0,"error":"database not found: energy"}]}"#.to_owned(),
        ]);
        let error = client_of(&url)
            .query("SELECT a FROM m;SELECT b FROM m")
            .await
            .unwrap_err();
        assert!(error.is_database_missing(), "{error}");
        let requests = server.join().unwrap();
        assert!(
            requests[0].ends_with("q=SELECT+a+FROM+m%3BSELECT+b+FROM+m"),
            "{requests:?}"
        );
        assert!(requests[1].ends_with("q=SELECT+a+FROM+m"), "{requests:?}");
    }
}
