//! The JSON InfluxDB answers to `/query`, with times as epoch milliseconds (`epoch=ms`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
pub(crate) struct QueryResponse<T> {
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
    pub error: Option<String>,
}

/// The result of one statement, in one of the shapes a query can be read into.
pub trait QueryResult: DeserializeOwned {
    /// The error InfluxDB reported for the statement, if any.
    fn error(&self) -> Option<&str>;
}

impl QueryResult for StatementResult {
    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// The result of one statement with each row read into an `R`.
#[derive(Clone, Debug, Deserialize)]
#[serde(bound = "R: DeserializeOwned")]
pub struct Rows<R> {
    #[serde(default = "Vec::new")]
    pub series: Vec<RowSeries<R>>,
    pub error: Option<String>,
}

impl<R> Default for Rows<R> {
    fn default() -> Self {
        Rows {
            series: Vec::new(),
            error: None,
        }
    }
}

impl<R: DeserializeOwned> QueryResult for Rows<R> {
    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// One series' tags and rows, each row read into an `R`.
#[derive(Clone, Debug, Deserialize)]
#[serde(bound = "R: DeserializeOwned")]
pub struct RowSeries<R> {
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default = "Vec::new")]
    pub values: Vec<R>,
}

/// The result of one statement of a (possibly multi-statement) query.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StatementResult {
    #[serde(default)]
    pub series: Vec<Series>,
    pub error: Option<String>,
}

impl StatementResult {
    /// No series, no error.
    pub const EMPTY: StatementResult = StatementResult {
        series: Vec::new(),
        error: None,
    };
}

/// One series: a tag set and its rows.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Series {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<Value>>,
}

impl Series {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// Index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The value of column `name` in row `row` as a float, if it is a number.
    pub fn f64_at(&self, row: usize, name: &str) -> Option<f64> {
        let column = self.column(name)?;
        self.values.get(row)?.get(column)?.as_f64()
    }

    /// The value of column `name` in row `row` as a string, if it is one.
    pub fn str_at(&self, row: usize, name: &str) -> Option<&str> {
        let column = self.column(name)?;
        self.values.get(row)?.get(column)?.as_str()
    }

    /// The value of column `name` in row `row` as an integer, if it is one (integer fields,
    /// `count()`, `sum()` of integers, and times).
    pub fn i64_at(&self, row: usize, name: &str) -> Option<i64> {
        let column = self.column(name)?;
        self.values.get(row)?.get(column)?.as_i64()
    }

    /// The `time` of row `row`, in epoch milliseconds.
    pub fn time_ms_at(&self, row: usize) -> Option<i64> {
        let column = self.column("time")?;
        self.values.get(row)?.get(column)?.as_i64()
    }
}
