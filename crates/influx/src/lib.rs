//! A small InfluxDB client speaking what every current InfluxDB accepts (CONTRACT §4): line
//! protocol to the v1 `/write` endpoint and InfluxQL to the v1 `/query` endpoint, with
//! `Authorization: Token …` when a token is set. That covers InfluxDB 1.x, 2.x OSS, Cloud and
//! InfluxDB 3; Flux is never used.

mod client;
mod response;

pub use client::{InfluxClient, InfluxError, InfluxSettings};
pub use response::{QueryResult, RowSeries, Rows, Series, StatementResult};
