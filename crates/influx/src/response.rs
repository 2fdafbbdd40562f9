//! The JSON InfluxDB answers to `/query`, and how a chunked answer becomes one result per
//! statement.
//!
//! Every query is sent chunked (see [`crate::CHUNK_SIZE`]), because InfluxDB 1.x applies its
//! `max-row-limit` only to answers that are not: it cuts those at the limit and merely flags them
//! `"partial": true`. A chunked answer is a stream of JSON objects, one per line, each
//! `{"results":[{"statement_id":K,"series":[…],"partial":true?}]}`: a statement's results may
//! come in several objects, and a series (same name and tags) may continue from one object to
//! the next, flagged `"partial": true` until its last part. [`AnswerReader`] reads the objects as
//! they arrive, one at a time, and merges them back into one result per statement, in statement
//! order, with each series whole. A server that ignores `chunked` sends one object, which reads
//! the same way.
//!
//! Whatever still says `"partial"` once the answer has ended was cut short (a server that
//! ignored `chunked` and applied a row limit, or a stream that stopped early): that is an error
//! of the call ([`InfluxError::Partial`]), never a result, so no figure is summed from part of
//! the rows.
//!
//! Rows are deserialised straight into the caller's row type (`Vec<Value>` for
//! [`StatementResult`], any `R` for [`Rows`]), so a large answer is never held as a tree of
//! `serde_json::Value`s, nor as text longer than one chunk.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::InfluxError;

/// The shapes the results of a query can be read into: [`StatementResult`] and [`Rows`]. Sealed:
/// the client builds them from the merged chunks of an answer.
pub trait QueryResult: sealed::Shape {}

impl QueryResult for StatementResult {}

impl<R: DeserializeOwned> QueryResult for Rows<R> {}

mod sealed {
    use super::ChunkSeries;

    /// What [`super::AnswerReader`] needs of a result shape.
    pub trait Shape: Sized {
        /// How one row of a series' `values` is read.
        type Row: serde::de::DeserializeOwned;

        /// The result of one statement from its merged series.
        fn from_series(series: Vec<ChunkSeries<Self::Row>>) -> Self;
    }
}

impl sealed::Shape for StatementResult {
    type Row = Vec<Value>;

    fn from_series(series: Vec<ChunkSeries<Vec<Value>>>) -> Self {
        StatementResult {
            series: series
                .into_iter()
                .map(|s| Series {
                    name: s.name,
                    tags: s.tags,
                    columns: s.columns,
                    values: s.values,
                })
                .collect(),
            error: None,
        }
    }
}

impl<R: DeserializeOwned> sealed::Shape for Rows<R> {
    type Row = R;

    fn from_series(series: Vec<ChunkSeries<R>>) -> Self {
        Rows {
            series: series
                .into_iter()
                .map(|s| RowSeries {
                    tags: s.tags,
                    values: s.values,
                })
                .collect(),
            error: None,
        }
    }
}

/// One JSON object of an answer: the whole of a non-chunked one, one chunk of a chunked one.
#[derive(Debug, Deserialize)]
#[serde(bound = "R: DeserializeOwned")]
struct Chunk<R> {
    #[serde(default = "Vec::new")]
    results: Vec<ChunkResult<R>>,
    /// An error of the whole query.
    error: Option<String>,
}

/// (Part of) the result of one statement.
#[derive(Debug, Deserialize)]
#[serde(bound = "R: DeserializeOwned")]
struct ChunkResult<R> {
    /// Which statement, from 0. InfluxDB 1.x always sends it; without it, a result is taken to
    /// be the next statement's.
    statement_id: Option<usize>,
    #[serde(default = "Vec::new")]
    series: Vec<ChunkSeries<R>>,
    error: Option<String>,
    /// More results of this statement follow (or, at the end, would have).
    #[serde(default)]
    partial: bool,
}

/// (Part of) one series.
#[derive(Debug, Deserialize)]
#[serde(bound = "R: DeserializeOwned")]
pub struct ChunkSeries<R> {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default = "Vec::new")]
    values: Vec<R>,
    /// More rows of this series follow (or, at the end, would have).
    #[serde(default)]
    partial: bool,
}

impl<R> ChunkSeries<R> {
    fn same_series(&self, other: &ChunkSeries<R>) -> bool {
        self.name == other.name && self.tags == other.tags
    }
}

/// A series named for a person: `energy_data{panel=A}`.
struct SeriesName<'a, R>(&'a ChunkSeries<R>);

impl<R> fmt::Display for SeriesName<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.0.name.is_empty() {
            "(unnamed)"
        } else {
            &self.0.name
        };
        f.write_str(name)?;
        if !self.0.tags.is_empty() {
            let tags: Vec<String> = self
                .0
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "{{{}}}", tags.join(","))?;
        }
        Ok(())
    }
}

/// The result of one statement while its chunks arrive.
#[derive(Debug)]
struct Merged<R> {
    statement_id: usize,
    series: Vec<ChunkSeries<R>>,
    /// The first error reported for the statement: InfluxDB 1.x sends "database not found"
    /// first and "not executed" after it for the same statement, and the first one tells why.
    error: Option<String>,
    partial: bool,
}

/// Reads the body of a 2xx `/query` answer as it arrives and merges its chunks (see the module
/// documentation): [`AnswerReader::feed`] each piece of the body, then [`AnswerReader::finish`].
pub(crate) struct AnswerReader<T: QueryResult> {
    /// Bytes not yet read as a whole JSON object.
    pending: Vec<u8>,
    results: Vec<Merged<T::Row>>,
    /// The first error of the whole query.
    error: Option<String>,
    /// JSON objects read so far.
    objects: usize,
}

impl<T: QueryResult> AnswerReader<T> {
    pub(crate) fn new() -> Self {
        AnswerReader {
            pending: Vec::new(),
            results: Vec::new(),
            error: None,
            objects: 0,
        }
    }

    /// Takes the next piece of the body and reads every JSON object it completes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), InfluxError> {
        self.pending.extend_from_slice(bytes);
        // Objects end with a newline (InfluxDB writes one per line, and JSON text holds no raw
        // newline), so there is nothing new to read until one arrives; this way a large
        // non-chunked answer is parsed once, when it is complete.
        if bytes.contains(&b'\n') {
            self.read_objects()?;
        }
        Ok(())
    }

    /// The results, one per statement in statement order, once the body has ended; an error if
    /// InfluxDB reported one, or if the answer was cut short or is not what the API promises.
    pub(crate) fn finish(mut self) -> Result<Vec<T>, InfluxError> {
        self.read_objects()?;
        if !self.pending.iter().all(u8::is_ascii_whitespace) {
            return Err(InfluxError::BadResponse(format!(
                "the answer ended inside a JSON object (after {} whole ones): {}",
                self.objects,
                excerpt(&self.pending)
            )));
        }
        if self.objects == 0 {
            return Err(InfluxError::BadResponse("an empty answer".into()));
        }
        let error = self
            .error
            .or_else(|| self.results.iter().find_map(|r| r.error.clone()));
        if let Some(message) = error {
            return Err(InfluxError::Status {
                status: 400,
                message,
            });
        }
        for result in &self.results {
            let id = result.statement_id;
            if let Some(series) = result.series.iter().find(|s| s.partial) {
                return Err(InfluxError::Partial(format!(
                    "statement {id}, series {} after {} rows",
                    SeriesName(series),
                    series.values.len()
                )));
            }
            if result.partial {
                return Err(InfluxError::Partial(format!(
                    "statement {id} after {} series",
                    result.series.len()
                )));
            }
        }
        Ok(self
            .results
            .into_iter()
            .map(|r| T::from_series(r.series))
            .collect())
    }

    /// Reads the whole JSON objects at the start of `pending` and drops their bytes.
    fn read_objects(&mut self) -> Result<(), InfluxError> {
        let mut stream =
            serde_json::Deserializer::from_slice(&self.pending).into_iter::<Chunk<T::Row>>();
        let mut consumed = 0;
        loop {
            match stream.next() {
                Some(Ok(chunk)) => {
                    consumed = stream.byte_offset();
                    self.objects += 1;
                    if let Some(error) = chunk.error {
                        self.error.get_or_insert(error);
                    }
                    for result in chunk.results {
                        merge(&mut self.results, result)?;
                    }
                }
                // The rest of an object is still to come.
                Some(Err(error)) if error.is_eof() => break,
                Some(Err(error)) => {
                    return Err(InfluxError::BadResponse(format!(
                        "JSON object {} of the answer: {error}",
                        self.objects + 1
                    )))
                }
                None => {
                    consumed = self.pending.len();
                    break;
                }
            }
        }
        self.pending.drain(..consumed);
        Ok(())
    }
}

/// Adds one result (part) to the statements' results: appended to the last statement's if it is
/// that statement's, the next statement's otherwise.
fn merge<R>(results: &mut Vec<Merged<R>>, result: ChunkResult<R>) -> Result<(), InfluxError> {
    let id = result.statement_id.unwrap_or_else(|| match results.last() {
        Some(last) => last.statement_id + 1,
        None => 0,
    });
    let mut merged = match results.pop() {
        Some(last) if last.statement_id == id => last,
        last => {
            results.extend(last);
            // Callers find a statement's result by its position: a gap or a step back would
            // shift every later one onto the wrong statement.
            if id != results.len() {
                return Err(InfluxError::BadResponse(format!(
                    "the result of statement {id} came where statement {}'s was due",
                    results.len()
                )));
            }
            Merged {
                statement_id: id,
                series: Vec::new(),
                error: None,
                partial: false,
            }
        }
    };
    if let Some(error) = result.error {
        merged.error.get_or_insert(error);
    }
    merged.partial = result.partial;
    for mut series in result.series {
        match merged.series.last_mut() {
            Some(last) if last.same_series(&series) => {
                // A row's values are positional: appending rows with other columns would
                // put values under the wrong names.
                if !series.columns.is_empty() && series.columns != last.columns {
                    return Err(InfluxError::BadResponse(format!(
                        "statement {id}, series {}: columns {:?} continued as {:?}",
                        SeriesName(last),
                        last.columns,
                        series.columns
                    )));
                }
                last.values.append(&mut series.values);
                last.partial = series.partial;
            }
            _ => merged.series.push(series),
        }
    }
    results.push(merged);
    Ok(())
}

/// The first bytes of `bytes`, for an error message.
fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(200).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` as the body of an answer, in pieces of `piece` bytes.
    fn read_in_pieces<T: QueryResult>(text: &str, piece: usize) -> Result<Vec<T>, InfluxError> {
        let mut reader = AnswerReader::<T>::new();
        for bytes in text.as_bytes().chunks(piece) {
            reader.feed(bytes)?;
        }
        reader.finish()
    }

    /// Reads `text` whole, and again a byte at a time and in pieces of 7 bytes: all three must
    /// agree (as far as `Debug` shows).
    fn read<T: QueryResult + fmt::Debug>(text: &str) -> Result<Vec<T>, InfluxError> {
        let whole = read_in_pieces::<T>(text, text.len().max(1));
        for piece in [1, 7] {
            assert_eq!(
                format!("{:?}", read_in_pieces::<T>(text, piece)),
                format!("{whole:?}"),
                "read in pieces of {piece} bytes"
            );
        }
        whole
    }

    fn values(series: &Series) -> Vec<i64> {
        (0..series.values.len())
            .map(|row| series.i64_at(row, "v").expect("an integer v"))
            .collect()
    }

    /// One statement, series A split over three chunks (the way InfluxDB 1.x sends 2 500 rows at
    /// a chunk size of 1 000), then series B whole.
    const SPLIT_SERIES: &str = concat!(
        r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[1,10],[2,20]],"partial":true}],"partial":true}]}"#,
        "\n",
        r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[3,30],[4,40]],"partial":true}],"partial":true}]}"#,
        "\n",
        r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[5,50]]}],"partial":true}]}"#,
        "\n",
        r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"B"},"columns":["time","v"],"values":[[1,7]]}]}]}"#,
        "\n",
    );

    #[test]
    fn a_series_split_over_chunks_is_merged_in_order() {
        let results = read::<StatementResult>(SPLIT_SERIES).expect("a whole answer");
        assert_eq!(results.len(), 1);
        let series = &results[0].series;
        assert_eq!(series.len(), 2, "{series:?}");
        assert_eq!(series[0].tag("panel"), Some("A"));
        assert_eq!(values(&series[0]), [10, 20, 30, 40, 50]);
        assert_eq!(series[0].columns, ["time", "v"]);
        assert_eq!(series[1].tag("panel"), Some("B"));
        assert_eq!(values(&series[1]), [7]);

        // The same answer read straight into rows.
        let rows = read::<Rows<(i64, f64)>>(SPLIT_SERIES).expect("a whole answer");
        type PanelRows<'a> = (Option<&'a str>, Vec<(i64, f64)>);
        let rows: Vec<PanelRows> = rows[0]
            .series
            .iter()
            .map(|s| (s.tags.get("panel").map(String::as_str), s.values.clone()))
            .collect();
        assert_eq!(
            rows,
            [
                (
                    Some("A"),
                    vec![(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0), (5, 50.0)]
                ),
                (Some("B"), vec![(1, 7.0)]),
            ]
        );
    }

    #[test]
    fn statements_split_over_objects_and_empty_ones_keep_their_places() {
        // Statement 0 over two objects (one series each), statement 1 without rows, statement 2
        // in the same object as the end of statement 0, statement 3 without rows at the end.
        let text = concat!(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[1,1]]}],"partial":true}]}"#,
            "\n",
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"B"},"columns":["time","v"],"values":[[1,2]]}]},{"statement_id":1}]}"#,
            "\n",
            r#"{"results":[{"statement_id":2,"series":[{"name":"m","columns":["time","v"],"values":[[0,3]]}]}]}"#,
            "\n",
            r#"{"results":[{"statement_id":3}]}"#,
            "\n",
        );
        let results = read::<StatementResult>(text).expect("a whole answer");
        let shape: Vec<Vec<(Option<&str>, Vec<i64>)>> = results
            .iter()
            .map(|r| {
                r.series
                    .iter()
                    .map(|s| (s.tag("panel"), values(s)))
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            [
                vec![(Some("A"), vec![1]), (Some("B"), vec![2])],
                vec![],
                vec![(None, vec![3])],
                vec![],
            ]
        );
        let rows = read::<Rows<(i64, f64)>>(text).expect("a whole answer");
        assert_eq!(rows.len(), 4);
        assert!(rows[1].series.is_empty() && rows[3].series.is_empty());
    }

    #[test]
    fn a_non_chunked_answer_reads_as_before() {
        // One object; pretty-printed over several lines too.
        let text = r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","v"],"values":[[1,5]]}]},{"statement_id":1}]}"#;
        for (text, statements) in [
            (text.to_owned(), 2),
            (format!("{text}\n"), 2),
            (
                "{\n  \"results\": [\n    {\"statement_id\": 0}\n  ]\n}\n\n".to_owned(),
                1,
            ),
        ] {
            let results = read::<StatementResult>(&text).expect("a whole answer");
            assert_eq!(results.len(), statements, "{text}");
        }
        let results = read::<StatementResult>(text).expect("a whole answer");
        assert_eq!(values(&results[0].series[0]), [5]);
        assert!(results[1].series.is_empty());
    }

    #[test]
    fn what_is_still_partial_at_the_end_is_an_error() {
        let cut = |text: &str| match read::<StatementResult>(text) {
            Err(InfluxError::Partial(message)) => message,
            other => panic!("not refused as cut short: {other:?} for {text}"),
        };
        // A non-chunked answer cut by InfluxDB 1.x's max-row-limit (its exact shape).
        let message = cut(
            r#"{"results":[{"statement_id":0,"series":[{"name":"energy_data","tags":{"panel":"A"},"columns":["time","energy_kwh"],"values":[[1,1.5],[2,1.75]],"partial":true}]}]}"#,
        );
        assert_eq!(
            message,
            "statement 0, series energy_data{panel=A} after 2 rows"
        );
        // A chunked answer whose last chunk says that more of the series follows.
        let mut text = SPLIT_SERIES.lines().take(2).collect::<Vec<_>>().join("\n");
        text.push('\n');
        assert_eq!(cut(&text), "statement 0, series m{panel=A} after 4 rows");
        // A statement that announces more results that never come.
        let message = cut(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["v"],"values":[[1]]}],"partial":true}]}"#,
        );
        assert_eq!(message, "statement 0 after 1 series");
        // In a later statement too, and the error names it and is counted as its own kind.
        let error = read::<Rows<(i64,)>>(concat!(
            r#"{"results":[{"statement_id":0}]}"#,
            "\n",
            r#"{"results":[{"statement_id":1,"series":[{"name":"m","columns":["time"],"values":[[1]],"partial":true}]}]}"#,
        ))
        .expect_err("cut short");
        assert_eq!(
            error.to_string(),
            "InfluxDB cut the answer short (partial): statement 1, series m after 1 rows"
        );
        assert_eq!(error.kind(), "partial");
    }

    #[test]
    fn an_error_in_any_chunk_is_an_error_of_the_call() {
        let status = |text: &str| match read::<StatementResult>(text) {
            Err(InfluxError::Status { status, message }) => (status, message),
            other => panic!("not an error: {other:?} for {text}"),
        };
        // A statement failing after some of its rows (and before the end of a partial series:
        // the error wins, it says more).
        let text = concat!(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["v"],"values":[[1]],"partial":true}],"partial":true}]}"#,
            "\n",
            r#"{"results":[{"statement_id":0,"error":"max-select-point limit exceeded: (10000/5000)"}]}"#,
            "\n",
        );
        assert_eq!(
            status(text),
            (400, "max-select-point limit exceeded: (10000/5000)".into())
        );
        // A later statement's error.
        let text = concat!(
            r#"{"results":[{"statement_id":0}]}"#,
            "\n",
            r#"{"results":[{"statement_id":1,"error":"undefined function foo()"}]}"#,
            "\n",
        );
        assert_eq!(status(text), (400, "undefined function foo()".into()));
        // InfluxDB 1.6, chunked, two statements on a missing database: the reason first, then
        // "not executed" for the same statement. The reason is kept.
        let text = concat!(
            r#"{"results":[{"statement_id":0,"error":"database not found: nope"}]}"#,
            "\n",
            r#"{"results":[{"statement_id":0,"error":"not executed"}]}"#,
            "\n",
        );
        let error = read::<Rows<(i64,)>>(text).expect_err("an error");
        assert!(error.is_database_missing(), "{error}");
        // An error of the whole query, in a chunk of its own.
        let text = concat!(
            r#"{"results":[{"statement_id":0}]}"#,
            "\n",
            r#"{"error":"query interrupted"}"#,
            "\n",
        );
        assert_eq!(status(text), (400, "query interrupted".into()));
    }

    #[test]
    fn answers_that_break_the_promise_are_bad_responses() {
        let bad = |text: &str| match read::<StatementResult>(text) {
            Err(InfluxError::BadResponse(message)) => message,
            other => panic!("not a bad response: {other:?} for {text:?}"),
        };
        assert_eq!(bad(""), "an empty answer");
        assert_eq!(bad(" \n"), "an empty answer");
        assert!(bad("<html>").contains("JSON object 1 of the answer"));
        assert!(bad(r#"{"results":[{"statement_id":0}]}{"#).contains("ended inside a JSON object"));
        let gap = concat!(
            r#"{"results":[{"statement_id":0}]}"#,
            "\n",
            r#"{"results":[{"statement_id":2}]}"#,
            "\n",
        );
        assert_eq!(
            bad(gap),
            "the result of statement 2 came where statement 1's was due"
        );
        let back = concat!(
            r#"{"results":[{"statement_id":0},{"statement_id":1}]}"#,
            "\n",
            r#"{"results":[{"statement_id":0}]}"#,
            "\n",
        );
        assert!(bad(back).contains("statement 0 came where statement 2's"));
        let columns = concat!(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","a"],"values":[[1,1]],"partial":true}],"partial":true}]}"#,
            "\n",
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","b"],"values":[[2,2]]}]}]}"#,
            "\n",
        );
        assert!(bad(columns).contains("continued as"));
        // A row that is not the caller's shape.
        let rows = read::<Rows<(i64, f64)>>(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","values":[["x",1]]}]}]}"#,
        );
        assert!(matches!(rows, Err(InfluxError::BadResponse(_))), "{rows:?}");
    }
}
