//! The HTTP client: settings, writes, queries and the error classes callers act on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use energy_core::influxql;
use energy_service::Secret;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::de::DeserializeOwned;

use crate::response::{self, AnswerReader, Format, QueryResult, Rows, StatementResult};

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

/// The results of a query of `statements` statements, or [`InfluxError::Partial`] when there
/// are fewer or more: an InfluxDB that ignores `chunked` and stops at a row limit drops the
/// statements after it without a flag, and a missing result must never be read as "no rows".
pub fn one_result_per_statement<T>(
    results: Vec<T>,
    statements: usize,
) -> Result<Vec<T>, InfluxError> {
    if results.len() != statements {
        return Err(InfluxError::Partial(format!(
            "{} results for {statements} statements",
            results.len()
        )));
    }
    Ok(results)
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

/// A client for one database. Cheap to clone (the connection pool is shared, and so is what was
/// learnt about the server's MessagePack).
#[derive(Clone, Debug)]
pub struct InfluxClient {
    http: reqwest::Client,
    base_url: String,
    database: String,
    token: Option<Secret>,
    /// Whether to ask for MessagePack answers to [`InfluxClient::query_rows_ns`]; cleared, for
    /// the life of the client, once the server has shown that it does not answer MessagePack in
    /// the form this client reads (see [`InfluxClient::post_query`]).
    ask_msgpack: Arc<AtomicBool>,
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
            ask_msgpack: Arc::new(AtomicBool::new(true)),
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
    ///
    /// Answered in JSON: a [`crate::Series`] holds `serde_json::Value`s, and JSON numbers that
    /// InfluxDB writes without a fraction (`5` for the float 5.0) read as integers there, which a
    /// MessagePack float would not.
    pub async fn query(&self, statements: &str) -> Result<Vec<StatementResult>, InfluxError> {
        self.query_in(statements, "ms", Format::Json).await
    }

    /// Like [`InfluxClient::query`], with times as epoch nanoseconds (read them with
    /// [`crate::Series::i64_at`]): for computations that must see every reading's exact time.
    pub async fn query_ns(&self, statements: &str) -> Result<Vec<StatementResult>, InfluxError> {
        self.query_in(statements, "ns", Format::Json).await
    }

    /// Like [`InfluxClient::query_ns`], with each row read straight into an `R` (e.g.
    /// `(i64, Option<f64>)` for `time` and one field): a fraction of the memory of
    /// [`StatementResult`] for large answers.
    ///
    /// Asks for MessagePack, which costs InfluxDB 1.x far less CPU than JSON for a large answer,
    /// and reads JSON when the server answers JSON; a server that takes the request but not the
    /// MessagePack (InfluxDB 3) is asked again for JSON, and for JSON only from then on. Field
    /// values may then come as integers where JSON had floats without a fraction: an `f64` in
    /// `R` takes either.
    pub async fn query_rows_ns<R: DeserializeOwned>(
        &self,
        statements: &str,
    ) -> Result<Vec<Rows<R>>, InfluxError> {
        self.query_in(statements, "ns", Format::MessagePack).await
    }

    async fn query_in<T: QueryResult>(
        &self,
        statements: &str,
        epoch: &'static str,
        ask: Format,
    ) -> Result<Vec<T>, InfluxError> {
        match self.query_once(statements, epoch, ask).await {
            // InfluxDB 1.x answers a multi-statement query on a missing database with only
            // "not executed"; the first statement alone tells the real reason.
            Err(InfluxError::Status { message, .. }) if message == "not executed" => {
                let first = statements.split(';').next().unwrap_or(statements);
                self.query_once::<T>(first, epoch, ask).await?;
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
        ask: Format,
    ) -> Result<Vec<T>, InfluxError> {
        self.post_query(Some((&self.database, epoch)), statements, ask)
            .await
    }

    /// `CREATE DATABASE` (InfluxDB 1.x; idempotent). On 2.x, Cloud and 3 buckets are created
    /// by the operator and this fails harmlessly.
    pub async fn create_database(&self) -> Result<(), InfluxError> {
        let statement = format!("CREATE DATABASE {}", influxql::identifier(&self.database));
        self.post_query::<StatementResult>(None, &statement, Format::Json)
            .await
            .map(drop)
    }

    /// `POST /query` (which takes every kind of statement), against `database` if given, with
    /// times in the given epoch unit, chunked (see [`CHUNK_SIZE`]); one result per statement,
    /// in statement order.
    /// An error InfluxDB reports inside a 200 answer becomes an error of the call, and so does
    /// an answer it cut short ([`InfluxError::Partial`]).
    ///
    /// Asked for MessagePack, the answer is read in the format its `Content-Type` names, so a
    /// server that ignores `Accept` (and answers JSON) is read as before. Two kinds of server
    /// take the request but not the MessagePack, and are asked again for JSON:
    /// - one that refuses the `Accept` value with an error that is not MessagePack (InfluxDB
    ///   3.0 to 3.6 answer `500 invalid mime type`; InfluxDB 1.x answers every error of a
    ///   MessagePack request in MessagePack, and 2.x does not refuse it);
    /// - one that answers MessagePack objects without their keys (later InfluxDB 3 releases;
    ///   see [`response::is_msgpack_map`]).
    ///
    /// Once such a server has answered JSON, MessagePack is not asked of it again, so each
    /// later query costs one request, as before.
    async fn post_query<T: QueryResult>(
        &self,
        database: Option<(&str, &str)>,
        statements: &str,
        ask: Format,
    ) -> Result<Vec<T>, InfluxError> {
        if ask == Format::MessagePack && self.ask_msgpack.load(Ordering::Relaxed) {
            let (why, certain) = match self.send_query(database, statements, ask).await? {
                Answer::Results { results, .. } => return Ok(results),
                Answer::NotMessagePack { why, certain } => (why, certain),
            };
            let answer = self.send_query(database, statements, Format::Json).await;
            // A refusal may be of the query rather than of MessagePack: only an answer in JSON
            // shows that it was MessagePack.
            if (certain || answer.is_ok()) && self.ask_msgpack.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    url = %self.base_url,
                    %why,
                    "InfluxDB does not answer MessagePack in a form this client reads; asking it \
                     for JSON from now on"
                );
            }
            return answer?.results();
        }
        self.send_query(database, statements, Format::Json)
            .await?
            .results()
    }

    /// One `POST /query` (see [`InfluxClient::post_query`]), asking for `ask`.
    async fn send_query<T: QueryResult>(
        &self,
        database: Option<(&str, &str)>,
        statements: &str,
        ask: Format,
    ) -> Result<Answer<T>, InfluxError> {
        let mut request = self
            .request(reqwest::Method::POST, "/query")
            .query(&[("chunked", "true")])
            .query(&[("chunk_size", CHUNK_SIZE)]);
        if let Some((database, epoch)) = database {
            request = request.query(&[("db", database), ("epoch", epoch)]);
        }
        if ask == Format::MessagePack {
            request = request.header(ACCEPT, Format::MESSAGE_PACK);
        }
        let mut response = request
            .form(&[("q", statements)])
            .send()
            .await
            .map_err(unreachable)?;
        let format = format_of(&response);
        let status = response.status();
        if !status.is_success() {
            let error = failure(response).await;
            // The statuses with which a server may refuse an `Accept` value it does not serve.
            if ask == Format::MessagePack
                && format != Format::MessagePack
                && matches!(status.as_u16(), 400 | 406 | 415 | 500 | 501)
            {
                return Ok(Answer::NotMessagePack {
                    why: error.to_string(),
                    certain: false,
                });
            }
            return Err(error);
        }
        // Each piece read as it arrives: only the chunk being received is held undecoded.
        let mut reader = AnswerReader::<T>::new(format);
        let mut first = true;
        while let Some(bytes) = response.chunk().await.map_err(unreachable)? {
            if format == Format::MessagePack && first && !bytes.is_empty() {
                first = false;
                if !response::is_msgpack_map(bytes[0]) {
                    return Ok(Answer::NotMessagePack {
                        why: format!(
                            "its MessagePack answer is not made of maps (it begins with 0x{:02x})",
                            bytes[0]
                        ),
                        certain: true,
                    });
                }
            }
            reader.feed(&bytes)?;
        }
        Ok(Answer::Results {
            format,
            results: reader.finish()?,
        })
    }
}

/// What one `POST /query` brought back.
enum Answer<T> {
    /// The results, read from an answer in `format` (which the tests check).
    Results {
        #[cfg_attr(not(test), allow(dead_code))]
        format: Format,
        results: Vec<T>,
    },
    /// A MessagePack request that the server did not answer with MessagePack this client reads:
    /// `why`, and whether that is `certain` (an answer in MessagePack of another form) or only
    /// possible (an error that is not MessagePack, which may also be the query's).
    NotMessagePack { why: String, certain: bool },
}

impl<T> Answer<T> {
    fn results(self) -> Result<Vec<T>, InfluxError> {
        match self {
            Answer::Results { results, .. } => Ok(results),
            // Only a MessagePack request is answered so, and it is not made twice.
            Answer::NotMessagePack { why, .. } => Err(InfluxError::BadResponse(why)),
        }
    }
}

/// The format of an answer's body, from its `Content-Type`.
fn format_of(response: &reqwest::Response) -> Format {
    Format::of_content_type(
        response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
    )
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
    if response.status().is_success() {
        return Ok(response);
    }
    Err(failure(response).await)
}

/// The error InfluxDB put in a non-2xx answer: the `error` of its body, in JSON or in
/// MessagePack as its `Content-Type` says (InfluxDB 1.x answers the errors of a MessagePack
/// request in MessagePack), else the start of its text.
async fn failure(response: reqwest::Response) -> InfluxError {
    let status = response.status().as_u16();
    let format = format_of(&response);
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => return unreachable(error),
    };
    let value = match format {
        Format::Json => serde_json::from_slice::<serde_json::Value>(&body).ok(),
        Format::MessagePack => rmp_serde::from_slice::<serde_json::Value>(&body).ok(),
    };
    let message = value
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
    InfluxError::Status { status, message }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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

    /// What the stand-in for InfluxDB answers one request with.
    struct Reply {
        status: u16,
        content_type: Option<&'static str>,
        body: Vec<u8>,
    }

    impl From<String> for Reply {
        /// A 200 JSON answer.
        fn from(body: String) -> Reply {
            Reply {
                status: 200,
                content_type: Some("application/json"),
                body: body.into_bytes(),
            }
        }
    }

    /// One request as the stand-in for InfluxDB received it.
    #[derive(Debug)]
    struct Received {
        /// `POST /query?… HTTP/1.1`
        line: String,
        /// Its `Accept` headers, separated by ` | `.
        accept: Option<String>,
        /// The form, `q=…`.
        form: String,
    }

    /// A stand-in for InfluxDB on a loopback port: answers each request in turn with the next
    /// of `replies` (written in pieces of 40 bytes, so the client gets the body in parts), and
    /// returns the requests once all are answered.
    fn fake_influx<B: Into<Reply>>(
        replies: Vec<B>,
    ) -> (String, std::thread::JoinHandle<Vec<Received>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let replies: Vec<Reply> = replies.into_iter().map(Into::into).collect();
        let server = std::thread::spawn(move || {
            replies
                .into_iter()
                .map(|reply| {
                    let (stream, _) = listener.accept().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut request_line = String::new();
                    reader.read_line(&mut request_line).unwrap();
                    let mut length = 0;
                    let mut accept = None;
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
                            // Every one: InfluxDB reads only the first.
                            if name.eq_ignore_ascii_case("accept") {
                                let values: &mut String = accept.get_or_insert_default();
                                if !values.is_empty() {
                                    values.push_str(" | ");
                                }
                                values.push_str(value.trim());
                            }
                        }
                    }
                    let mut form = vec![0; length];
                    reader.read_exact(&mut form).unwrap();
                    let mut stream = reader.into_inner();
                    let content_type = reply
                        .content_type
                        .map(|value| format!("Content-Type: {value}\r\n"))
                        .unwrap_or_default();
                    write!(
                        stream,
                        "HTTP/1.1 {} Whatever\r\n{content_type}Content-Length: {}\r\n\
                         Connection: close\r\n\r\n",
                        reply.status,
                        reply.body.len()
                    )
                    .unwrap();
                    for piece in reply.body.chunks(40) {
                        stream.write_all(piece).unwrap();
                        stream.flush().unwrap();
                    }
                    Received {
                        line: request_line.trim().to_owned(),
                        accept,
                        form: String::from_utf8(form).unwrap(),
                    }
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
                request.line.starts_with(&format!(
                    "POST /query?chunked=true&chunk_size={CHUNK_SIZE}&db=energy&epoch={epoch} "
                )),
                "{request:?}"
            );
        }
        // Rows are asked for in MessagePack (in the only `Accept` header, which replaces
        // reqwest's `*/*`), and read from the JSON this server answers with (as InfluxDB 3 before
        // 3.0 did, ignoring `Accept`); the rest are asked for as before.
        let accepts: Vec<Option<&str>> = requests.iter().map(|r| r.accept.as_deref()).collect();
        assert_eq!(accepts, [Some("*/*"), Some("application/x-msgpack")]);
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
        assert_eq!(requests[0].form, "q=SELECT+a+FROM+m%3BSELECT+b+FROM+m");
        assert_eq!(requests[1].form, "q=SELECT+a+FROM+m");
    }

    /// An answer to `SELECT v FROM m` with rows (1, 1.5) and (2, 2), as JSON text.
    const ROWS: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","v"],"values":[[1,1.5],[2,2]]}]}]}"#;

    fn msgpack_reply(status: u16, value: serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: Some("application/x-msgpack"),
            body: rmp_serde::to_vec(&value).unwrap(),
        }
    }

    /// Reads `SELECT v FROM m` as rows, twice, from a server that first answers `first`, then
    /// JSON; the `Accept` headers of the requests made.
    async fn rows_after(first: Reply) -> Vec<Option<String>> {
        let (url, server) =
            fake_influx(vec![first, ROWS.to_owned().into(), ROWS.to_owned().into()]);
        let client = client_of(&url);
        for _ in 0..2 {
            let rows = client.query_rows_ns::<(i64, f64)>("SELECT v FROM m").await;
            assert_eq!(rows.unwrap()[0].series[0].values, [(1, 1.5), (2, 2.0)]);
        }
        server
            .join()
            .unwrap()
            .into_iter()
            .map(|r| r.accept)
            .collect()
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_msgpack_usably_is_asked_for_json_from_then_on() {
        let msgpack = Some("application/x-msgpack".to_owned());
        let json = Some("*/*".to_owned());
        // InfluxDB 3.0 to 3.6 refuse the `Accept` value, in plain text.
        let refused = Reply {
            status: 500,
            content_type: None,
            body: b"invalid mime type (application/x-msgpack)".to_vec(),
        };
        assert_eq!(
            rows_after(refused).await,
            [msgpack.clone(), json.clone(), json.clone()]
        );
        // Later InfluxDB 3 releases answer MessagePack objects as arrays of their values.
        let keyless = msgpack_reply(
            200,
            serde_json::json!([[[0, [["m", ["time", "v"], [[1, 1.5], [2, 2]]]]]]]),
        );
        assert_eq!(rows_after(keyless).await, [msgpack, json.clone(), json]);
    }

    #[tokio::test]
    async fn errors_of_the_query_are_not_taken_for_a_refusal_of_msgpack() {
        let parse_error = || -> Reply {
            Reply {
                status: 400,
                content_type: Some("application/json"),
                body: br#"{"error":"error parsing query: found SELEC"}"#.to_vec(),
            }
        };
        let rows = serde_json::from_str::<serde_json::Value>(ROWS).unwrap();
        let (url, server) = fake_influx(vec![
            // An error in JSON may be a refusal of MessagePack: the query is asked again in
            // JSON, and the same error there is the query's.
            parse_error(),
            parse_error(),
            // So MessagePack is still asked for, and read.
            msgpack_reply(200, rows),
            // InfluxDB 1.x answers the errors of a MessagePack request in MessagePack: they are
            // the query's.
            msgpack_reply(401, serde_json::json!({"error": "authorization failed"})),
        ]);
        let client = client_of(&url);
        let error = client
            .query_rows_ns::<(i64, f64)>("SELEC")
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "InfluxDB answered 400: error parsing query: found SELEC"
        );
        let rows = client.query_rows_ns::<(i64, f64)>("SELECT v FROM m").await;
        assert_eq!(rows.unwrap()[0].series[0].values, [(1, 1.5), (2, 2.0)]);
        let error = client
            .query_rows_ns::<(i64, f64)>("SELECT v FROM m")
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "InfluxDB answered 401: authorization failed"
        );
        let accepts: Vec<Option<String>> = server
            .join()
            .unwrap()
            .into_iter()
            .map(|r| r.accept)
            .collect();
        let [msgpack, json] =
            [Some("application/x-msgpack"), Some("*/*")].map(|a| a.map(str::to_owned));
        assert_eq!(accepts, [msgpack.clone(), json, msgpack.clone(), msgpack]);
    }

    /// A client of the database `database` of `influx`.
    fn client_of_database(influx: &test_support::Influx, database: &str) -> InfluxClient {
        let cli = Cli::try_parse_from([
            "x",
            "--influx-url",
            &influx.url(),
            "--influx-database",
            database,
        ])
        .unwrap();
        InfluxClient::new(&cli.influx).unwrap()
    }

    /// The rows of each statement, each series as (tags, rows).
    type TaggedRows<R> = Vec<Vec<(BTreeMap<String, String>, Vec<R>)>>;

    fn tagged_rows<R: Clone>(results: &[Rows<R>]) -> TaggedRows<R> {
        results
            .iter()
            .map(|r| {
                r.series
                    .iter()
                    .map(|s| (s.tags.clone(), s.values.clone()))
                    .collect()
            })
            .collect()
    }

    /// Runs `statements` on InfluxDB asking for `ask`; the rows, and the format they came in.
    async fn rows_in<R: DeserializeOwned + Clone>(
        client: &InfluxClient,
        statements: &str,
        ask: Format,
    ) -> (Format, TaggedRows<R>) {
        let database = Some((client.database(), "ns"));
        match client
            .send_query::<Rows<R>>(database, statements, ask)
            .await
        {
            Ok(Answer::Results { format, results }) => (format, tagged_rows(&results)),
            Ok(Answer::NotMessagePack { why, .. }) => panic!("no MessagePack: {why}"),
            Err(error) => panic!("{statements}: {error}"),
        }
    }

    /// Energy register of reading `i`: fractions of every kind, and whole numbers.
    fn energy(i: i64) -> f64 {
        match i % 4 {
            0 => 1000.0 + i as f64,
            _ => 1000.0 + i as f64 / 3.0,
        }
    }

    /// 1 November 2023, in nanoseconds.
    const BASE_NS: i64 = 1_698_796_800_000_000_000;

    #[tokio::test]
    async fn influxdb_answers_in_msgpack_read_into_the_same_rows_as_in_json() {
        use std::fmt::Write as _;
        let influx = test_support::Influx::start();
        influx.create_database("energy");
        // 27 001 readings of two panels, one a second: 4 chunks of at most CHUNK_SIZE rows.
        let panels = [("A", 15_000), ("B", 12_001)];
        let mut lines = String::new();
        for (panel, count) in panels {
            for i in 0..count {
                let time = BASE_NS + i * 1_000_000_000;
                writeln!(
                    lines,
                    "energy_data,panel={panel} energy_kwh={} {time}",
                    energy(i)
                )
                .unwrap();
            }
        }
        // Integer fields, and two fields that not every point has.
        for (i, n) in [5_i64, -3, 0, 1 << 40].into_iter().enumerate() {
            writeln!(lines, "counts n={n}i {}", BASE_NS + i as i64).unwrap();
        }
        writeln!(lines, "mixed a=1.5,b=2i {BASE_NS}").unwrap();
        writeln!(lines, "mixed a=2.5 {}", BASE_NS + 1).unwrap();
        writeln!(lines, "mixed b=3i {}", BASE_NS + 2).unwrap();
        influx.write("energy", &lines);

        let client = client_of_database(&influx, "energy");
        let statements = [
            "SELECT energy_kwh FROM energy_data GROUP BY panel".to_owned(),
            // No rows.
            "SELECT energy_kwh FROM energy_data WHERE panel = 'none'".to_owned(),
            "SELECT n FROM counts".to_owned(),
            format!(
                "SELECT energy_kwh FROM energy_data WHERE panel = 'B' AND time >= {} GROUP BY panel",
                BASE_NS + 12_000_000_000_000
            ),
        ]
        .join(";\n");
        let (format, msgpack) =
            rows_in::<(i64, Option<f64>)>(&client, &statements, Format::MessagePack).await;
        assert_eq!(format, Format::MessagePack);
        let (format, json) =
            rows_in::<(i64, Option<f64>)>(&client, &statements, Format::Json).await;
        assert_eq!(format, Format::Json);
        assert_eq!(msgpack, json);
        let public = client
            .query_rows_ns::<(i64, Option<f64>)>(&statements)
            .await
            .unwrap();
        assert_eq!(tagged_rows(&public), msgpack);

        // And they are the readings written.
        let readings = |panel: &str, range: std::ops::Range<i64>| {
            let tags = BTreeMap::from([("panel".to_owned(), panel.to_owned())]);
            let rows = range
                .map(|i| (BASE_NS + i * 1_000_000_000, Some(energy(i))))
                .collect::<Vec<_>>();
            (tags, rows)
        };
        let counts = [5.0, -3.0, 0.0, (1_u64 << 40) as f64]
            .into_iter()
            .enumerate()
            .map(|(i, n)| (BASE_NS + i as i64, Some(n)))
            .collect();
        assert_eq!(
            msgpack,
            [
                vec![readings("A", 0..15_000), readings("B", 0..12_001)],
                vec![],
                vec![(BTreeMap::new(), counts)],
                vec![readings("B", 12_000..12_001)],
            ]
        );

        // Missing values are nil in MessagePack, null in JSON.
        let statement = "SELECT a, b FROM mixed";
        let (_, msgpack) =
            rows_in::<(i64, Option<f64>, Option<f64>)>(&client, statement, Format::MessagePack)
                .await;
        let (_, json) =
            rows_in::<(i64, Option<f64>, Option<f64>)>(&client, statement, Format::Json).await;
        assert_eq!(msgpack, json);
        assert_eq!(
            msgpack[0][0].1,
            [
                (BASE_NS, Some(1.5), Some(2.0)),
                (BASE_NS + 1, Some(2.5), None),
                (BASE_NS + 2, None, Some(3.0)),
            ]
        );

        // Errors: a missing database (one statement, and two, which InfluxDB 1.x answers with
        // "not executed"), and a query InfluxDB cannot parse (a 400, in MessagePack).
        let nowhere = client_of_database(&influx, "nowhere");
        for statements in [
            "SELECT a FROM mixed",
            "SELECT a FROM mixed; SELECT b FROM mixed",
        ] {
            let error = nowhere
                .query_rows_ns::<(i64, Option<f64>)>(statements)
                .await
                .unwrap_err();
            assert!(error.is_database_missing(), "{statements}: {error}");
            let json = nowhere.query_ns(statements).await.unwrap_err();
            assert_eq!(error.to_string(), json.to_string());
        }
        let error = client
            .query_rows_ns::<(i64, f64)>("SELEC a")
            .await
            .unwrap_err();
        assert!(
            matches!(&error, InfluxError::Status { status: 400, message } if message.starts_with("error parsing query: found SELEC")),
            "{error:?}"
        );
        // Nothing above made the client give up MessagePack.
        assert!(client.ask_msgpack.load(Ordering::Relaxed));
        assert!(nowhere.ask_msgpack.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_row_limit_cuts_no_msgpack_answer_and_a_cut_one_is_refused() {
        use std::fmt::Write as _;
        const LIMIT: usize = 500;
        let influx = test_support::Influx::start_with_http(&format!("max-row-limit = {LIMIT}\n"));
        influx.create_database("energy");
        let mut lines = String::new();
        for i in 0..3_000 {
            let time = BASE_NS + i * 1_000_000_000;
            writeln!(lines, "energy_data,panel=A energy_kwh={} {time}", energy(i)).unwrap();
        }
        influx.write("energy", &lines);
        let client = client_of_database(&influx, "energy");
        let statement = "SELECT energy_kwh FROM energy_data GROUP BY panel";

        // Chunked, the answer is whole.
        let (format, rows) = rows_in::<(i64, f64)>(&client, statement, Format::MessagePack).await;
        assert_eq!(format, Format::MessagePack);
        assert_eq!(rows[0][0].1.len(), 3_000);

        // Not chunked (as a server that ignores `chunked` answers), InfluxDB cuts it and flags
        // it in MessagePack as in JSON; read, it is refused.
        let response = reqwest::Client::new()
            .post(format!("{}/query", influx.url()))
            .query(&[("db", "energy"), ("epoch", "ns")])
            .header(ACCEPT, Format::MESSAGE_PACK)
            .form(&[("q", statement)])
            .send()
            .await
            .unwrap();
        let format = format_of(&response);
        assert_eq!(format, Format::MessagePack);
        let body = response.bytes().await.unwrap();
        let mut reader = AnswerReader::<Rows<(i64, f64)>>::new(format);
        for piece in body.chunks(1000) {
            reader.feed(piece).unwrap();
        }
        let error = reader.finish().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "InfluxDB cut the answer short (partial): statement 0, series \
                 energy_data{{panel=A}} after {LIMIT} rows"
            )
        );
    }
}
