//! A small InfluxDB client speaking what every current InfluxDB accepts (README, "Which InfluxDB versions, and why"): line
//! protocol to the v1 `/write` endpoint and InfluxQL to the v1 `/query` endpoint, with
//! `Authorization: Token …` when a token is set. That covers InfluxDB 1.x, 2.x OSS, Cloud and
//! InfluxDB 3; Flux is never used.
//!
//! Queries are sent chunked and their chunks merged back into one result per statement; an
//! answer InfluxDB cut short (flagged `"partial"`, as a row limit does) is an error, never a
//! result (see [`InfluxError::Partial`]). Rows ([`InfluxClient::query_rows_ns`]) are asked for in
//! MessagePack, which costs InfluxDB 1.x far less CPU than JSON for large answers, and read in
//! whichever of the two the server answers.

mod client;
mod response;

pub use client::{one_result_per_statement, InfluxClient, InfluxError, InfluxSettings, CHUNK_SIZE};
pub use response::{Lenient, QueryResult, RowSeries, Rows, Series, StatementResult};
