//! The InfluxDB answers to `/query`, in JSON or MessagePack, and how a chunked answer becomes one
//! result per statement.
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
//! Asked for MessagePack (`Accept: application/x-msgpack`), InfluxDB 1.x and 2.x send the same
//! objects as MessagePack maps with the same keys, one after the other with nothing between them,
//! and InfluxDB 1.x spends far less CPU on a large answer than on its JSON. Only the framing and the decoding
//! differ ([`Format`], chosen by the answer's `Content-Type`); the chunks are merged by the same
//! rules. InfluxDB 1.x leaves `statement_id` out of a MessagePack result that carries only an
//! error; such a result is taken to be the next statement's, which changes nothing, as any error
//! is an error of the call.
//!
//! Whatever still says `"partial"` once the answer has ended was cut short (a server that
//! ignored `chunked` and applied a row limit, or a stream that stopped early): that is an error
//! of the call ([`InfluxError::Partial`]), never a result, so no figure is summed from part of
//! the rows.
//!
//! Rows are deserialised straight into the caller's row type (`Vec<Value>` for
//! [`StatementResult`], any `R` for [`Rows`]), so a large answer is never held as a tree of
//! `serde_json::Value`s, nor as text (or MessagePack) longer than one chunk.

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

/// How the body of an answer is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    MessagePack,
}

impl Format {
    /// The media type to put in `Accept` to ask InfluxDB for MessagePack. InfluxDB 1.x and 2.x
    /// compare the whole header with it: a list (`application/x-msgpack, application/json`)
    /// would get JSON.
    pub(crate) const MESSAGE_PACK: &'static str = "application/x-msgpack";

    /// The format of an answer with this `Content-Type`: MessagePack when it says so, JSON
    /// otherwise, as every `/query` answered before MessagePack was asked for (a server that
    /// ignores `Accept` answers `application/json`, or no type at all).
    pub(crate) fn of_content_type(content_type: Option<&str>) -> Format {
        let media_type = content_type
            .and_then(|value| value.split(';').next())
            .map(|media_type| media_type.trim().to_ascii_lowercase());
        match media_type.as_deref() {
            Some("application/x-msgpack" | "application/msgpack") => Format::MessagePack,
            _ => Format::Json,
        }
    }
}

/// Whether a MessagePack value that begins with `marker` is a map: an object with its keys, as
/// InfluxDB 1.x and 2.x encode every object of an answer. Later InfluxDB 3 releases encode their
/// objects as arrays of their values alone, leaving out absent ones (a series without tags has
/// one value fewer), which cannot be read by position; the client asks those for JSON instead.
pub(crate) fn is_msgpack_map(marker: u8) -> bool {
    matches!(marker, 0x80..=0x8f | 0xde | 0xdf)
}

/// Finds where each MessagePack value of an answer ends, as its bytes arrive, without decoding
/// it. A MessagePack answer has no separator between its values (JSON ones end with a newline),
/// and decoding a value before all of it has arrived would mean decoding its start again and
/// again; instead each value is walked through once, element by element, resuming where the
/// previous piece of the body ended, and decoded once, when whole.
///
/// Every element states its own size (or the number of elements it holds), so counting the
/// elements still to come is enough to know where the value ends: one for a new value, and each
/// element read is one less plus as many more as it holds.
#[derive(Debug, Default)]
struct Framing {
    /// How far the bytes have been walked through.
    walked: usize,
    /// Elements still to come before the value being walked through is whole; 0 between values.
    to_come: u64,
}

impl Framing {
    /// Where the value that begins at `start` (where the previous one ended) ends, once all of it
    /// is in `bytes`; `None` while some of it is still to arrive. An error names a byte that
    /// cannot begin a MessagePack element.
    fn end_of_value(&mut self, bytes: &[u8], start: usize) -> Result<Option<usize>, String> {
        if self.to_come == 0 {
            if start == bytes.len() {
                return Ok(None);
            }
            self.walked = start;
            self.to_come = 1;
        }
        while self.to_come > 0 {
            let Some((size, holds)) = msgpack_element(&bytes[self.walked..])? else {
                return Ok(None);
            };
            self.walked += size;
            // Saturating: a body claiming more elements than can ever arrive just never ends.
            self.to_come = (self.to_come - 1).saturating_add(holds);
        }
        Ok(Some(self.walked))
    }

    /// Forgets the first `consumed` bytes, which the caller has dropped.
    fn drop_front(&mut self, consumed: usize) {
        self.walked -= consumed;
    }
}

/// The size of the MessagePack element at the start of `bytes` (its marker, length and data,
/// not the elements it holds) and how many elements it holds, once all of it has arrived.
fn msgpack_element(bytes: &[u8]) -> Result<Option<(usize, u64)>, String> {
    let Some(&marker) = bytes.first() else {
        return Ok(None);
    };
    // The big-endian length of `width` bytes after the marker.
    let length = |width: usize| -> Option<u64> {
        let field = bytes.get(1..1 + width)?;
        Some(field.iter().fold(0, |n, &b| n << 8 | u64::from(b)))
    };
    // (size of the element, elements it holds), the sizes from the MessagePack specification.
    let (size, holds) = match marker {
        // positive and negative fixint, nil, false, true
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0),
        0x80..=0x8f => (1, 2 * u64::from(marker & 0x0f)), // fixmap: keys and values
        0x90..=0x9f => (1, u64::from(marker & 0x0f)),     // fixarray
        0xa0..=0xbf => (1 + u64::from(marker & 0x1f), 0), // fixstr
        0xc1 => return Err(format!("byte 0x{marker:02x} begins no MessagePack element")),
        // bin 8/16/32 and str 8/16/32: marker, length, data
        0xc4 | 0xd9 => match length(1) {
            Some(n) => (2 + n, 0),
            None => return Ok(None),
        },
        0xc5 | 0xda => match length(2) {
            Some(n) => (3 + n, 0),
            None => return Ok(None),
        },
        0xc6 | 0xdb => match length(4) {
            Some(n) => (5 + n, 0),
            None => return Ok(None),
        },
        // ext 8/16/32: marker, length, type, data
        0xc7 => match length(1) {
            Some(n) => (3 + n, 0),
            None => return Ok(None),
        },
        0xc8 => match length(2) {
            Some(n) => (4 + n, 0),
            None => return Ok(None),
        },
        0xc9 => match length(4) {
            Some(n) => (6 + n, 0),
            None => return Ok(None),
        },
        0xcc | 0xd0 => (2, 0),        // uint 8, int 8
        0xcd | 0xd1 => (3, 0),        // uint 16, int 16
        0xca | 0xce | 0xd2 => (5, 0), // float 32, uint 32, int 32
        0xcb | 0xcf | 0xd3 => (9, 0), // float 64, uint 64, int 64
        0xd4 => (3, 0),               // fixext 1: marker, type, data
        0xd5 => (4, 0),               // fixext 2
        0xd6 => (6, 0),               // fixext 4
        0xd7 => (10, 0),              // fixext 8
        0xd8 => (18, 0),              // fixext 16
        // array 16/32, map 16/32: marker, count
        0xdc => match length(2) {
            Some(n) => (3, n),
            None => return Ok(None),
        },
        0xdd => match length(4) {
            Some(n) => (5, n),
            None => return Ok(None),
        },
        0xde => match length(2) {
            Some(n) => (3, 2 * n),
            None => return Ok(None),
        },
        0xdf => match length(4) {
            Some(n) => (5, 2 * n),
            None => return Ok(None),
        },
    };
    // At most 6 + 2^32 - 1 bytes: more than has arrived on a 32-bit target, where it does not fit.
    match usize::try_from(size) {
        Ok(size) if size <= bytes.len() => Ok(Some((size, holds))),
        _ => Ok(None),
    }
}

/// One object of an answer: the whole of a non-chunked one, one chunk of a chunked one.
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
    format: Format,
    /// Bytes not yet read as a whole object.
    pending: Vec<u8>,
    /// Where the MessagePack values in `pending` end.
    framing: Framing,
    answer: Answer<T::Row>,
}

/// What the objects of an answer read so far say.
struct Answer<R> {
    results: Vec<Merged<R>>,
    /// The first error of the whole query.
    error: Option<String>,
    /// Objects read so far.
    objects: usize,
}

impl<R> Answer<R> {
    /// Merges the next object of the answer into it.
    fn add(&mut self, chunk: Chunk<R>) -> Result<(), InfluxError> {
        self.objects += 1;
        if let Some(error) = chunk.error {
            self.error.get_or_insert(error);
        }
        for result in chunk.results {
            merge(&mut self.results, result)?;
        }
        Ok(())
    }
}

impl<T: QueryResult> AnswerReader<T> {
    pub(crate) fn new(format: Format) -> Self {
        AnswerReader {
            format,
            pending: Vec::new(),
            framing: Framing::default(),
            answer: Answer {
                results: Vec::new(),
                error: None,
                objects: 0,
            },
        }
    }

    /// Takes the next piece of the body and reads every object it completes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), InfluxError> {
        self.pending.extend_from_slice(bytes);
        match self.format {
            // Objects end with a newline (InfluxDB writes one per line, and JSON text holds no
            // raw newline), so there is nothing new to read until one arrives; this way a large
            // non-chunked answer is parsed once, when it is complete.
            Format::Json if bytes.contains(&b'\n') => self.read_json(),
            Format::Json => Ok(()),
            // Only the new bytes are walked through (see `Framing`), each object decoded once.
            Format::MessagePack => self.read_msgpack(),
        }
    }

    /// The results, one per statement in statement order, once the body has ended; an error if
    /// InfluxDB reported one, or if the answer was cut short or is not what the API promises.
    pub(crate) fn finish(mut self) -> Result<Vec<T>, InfluxError> {
        match self.format {
            Format::Json => {
                self.read_json()?;
                if !self.pending.iter().all(u8::is_ascii_whitespace) {
                    return Err(InfluxError::BadResponse(format!(
                        "the answer ended inside a JSON object (after {} whole ones): {}",
                        self.answer.objects,
                        excerpt(&self.pending)
                    )));
                }
            }
            Format::MessagePack => {
                self.read_msgpack()?;
                if !self.pending.is_empty() {
                    return Err(InfluxError::BadResponse(format!(
                        "the answer ended inside a MessagePack map (after {} whole ones, {} bytes \
                         into the next)",
                        self.answer.objects,
                        self.pending.len()
                    )));
                }
            }
        }
        let answer = self.answer;
        if answer.objects == 0 {
            return Err(InfluxError::BadResponse("an empty answer".into()));
        }
        let error = answer
            .error
            .or_else(|| answer.results.iter().find_map(|r| r.error.clone()));
        if let Some(message) = error {
            return Err(InfluxError::Status {
                status: 400,
                message,
            });
        }
        for result in &answer.results {
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
        Ok(answer
            .results
            .into_iter()
            .map(|r| T::from_series(r.series))
            .collect())
    }

    /// Reads the whole JSON objects at the start of `pending` and drops their bytes.
    fn read_json(&mut self) -> Result<(), InfluxError> {
        let mut stream =
            serde_json::Deserializer::from_slice(&self.pending).into_iter::<Chunk<T::Row>>();
        let mut consumed = 0;
        loop {
            match stream.next() {
                Some(Ok(chunk)) => {
                    consumed = stream.byte_offset();
                    self.answer.add(chunk)?;
                }
                // The rest of an object is still to come.
                Some(Err(error)) if error.is_eof() => break,
                Some(Err(error)) => {
                    return Err(InfluxError::BadResponse(format!(
                        "JSON object {} of the answer: {error}",
                        self.answer.objects + 1
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

    /// Reads the whole MessagePack maps at the start of `pending` and drops their bytes.
    fn read_msgpack(&mut self) -> Result<(), InfluxError> {
        let mut consumed = 0;
        loop {
            let bad = |message: String| {
                InfluxError::BadResponse(format!(
                    "MessagePack map {} of the answer: {message}",
                    self.answer.objects + 1
                ))
            };
            let Some(end) = self
                .framing
                .end_of_value(&self.pending, consumed)
                .map_err(bad)?
            else {
                break;
            };
            let bytes = &self.pending[consumed..end];
            // Anything else must not be decoded: an array would be read as the values of the
            // object's fields in order, which is not what InfluxDB 3's arrays hold.
            if !is_msgpack_map(bytes[0]) {
                return Err(bad(format!(
                    "not a map (it begins with 0x{:02x})",
                    bytes[0]
                )));
            }
            let chunk = rmp_serde::from_slice::<Chunk<T::Row>>(bytes)
                .map_err(|error| bad(error.to_string()))?;
            self.answer.add(chunk)?;
            consumed = end;
        }
        self.pending.drain(..consumed);
        self.framing.drop_front(consumed);
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

/// A field of a typed row ([`Rows`]) that holds a `T`, or anything else. Read as a `T` where
/// the field could hold another type, so that one odd value makes its row's field empty, never
/// the whole read a failure (as `as_i64`/`as_str` give `None` on a [`StatementResult`]).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(untagged, bound = "T: DeserializeOwned")]
pub enum Lenient<T> {
    Value(T),
    Other(serde::de::IgnoredAny),
}

impl<T> Lenient<T> {
    /// The value, if the field held a `T`.
    pub fn get(self) -> Option<T> {
        match self {
            Lenient::Value(value) => Some(value),
            Lenient::Other(_) => None,
        }
    }

    /// The value by reference, if the field held a `T`.
    pub fn as_ref(&self) -> Option<&T> {
        match self {
            Lenient::Value(value) => Some(value),
            Lenient::Other(_) => None,
        }
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

    /// Reads `body` as the body of an answer in `format`, in pieces of `piece` bytes.
    fn read_pieces<T: QueryResult>(
        format: Format,
        body: &[u8],
        piece: usize,
    ) -> Result<Vec<T>, InfluxError> {
        let mut reader = AnswerReader::<T>::new(format);
        for bytes in body.chunks(piece) {
            reader.feed(bytes)?;
        }
        reader.finish()
    }

    /// Reads `text` as the body of a JSON answer, in pieces of `piece` bytes.
    fn read_in_pieces<T: QueryResult>(text: &str, piece: usize) -> Result<Vec<T>, InfluxError> {
        read_pieces(Format::Json, text.as_bytes(), piece)
    }

    /// The JSON objects of `text` as InfluxDB 1.x sends them in MessagePack: one map after the
    /// other, nothing between them. `None` if `text` is not JSON.
    fn to_msgpack(text: &str) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            body.extend(rmp_serde::to_vec(&value.ok()?).expect("a value encodes"));
        }
        Some(body)
    }

    /// Reads `text` whole, and again a byte at a time and in pieces of 7 bytes: all three must
    /// agree (as far as `Debug` shows). When `text` is JSON, the same objects in MessagePack
    /// must read the same too, whole and in pieces (only a failure to decode may say so in
    /// other words).
    fn read<T: QueryResult + fmt::Debug>(text: &str) -> Result<Vec<T>, InfluxError> {
        let whole = read_in_pieces::<T>(text, text.len().max(1));
        for piece in [1, 7] {
            assert_eq!(
                format!("{:?}", read_in_pieces::<T>(text, piece)),
                format!("{whole:?}"),
                "read in pieces of {piece} bytes"
            );
        }
        if let Some(body) = to_msgpack(text) {
            for piece in [body.len().max(1), 1, 7] {
                let msgpack = read_pieces::<T>(Format::MessagePack, &body, piece);
                match (&whole, &msgpack) {
                    (Err(InfluxError::BadResponse(json)), Err(InfluxError::BadResponse(_)))
                        if json.contains("JSON") => {}
                    _ => assert_eq!(
                        format!("{msgpack:?}"),
                        format!("{whole:?}"),
                        "MessagePack read in pieces of {piece} bytes"
                    ),
                }
            }
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

    /// A MessagePack answer: two statements, the first with a series in two chunks; integers,
    /// floats, nil, a string and a boolean among the field values.
    fn msgpack_answer() -> Vec<u8> {
        to_msgpack(concat!(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[1,10],[2,2.5],[3,null]],"partial":true}],"partial":true}]}"#,
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[1700000000000000000,-7]]}]},{"statement_id":1,"series":[{"name":"s","columns":["time","a","b"],"values":[[4,"text",true]]}]}]}"#,
        ))
        .expect("JSON")
    }

    /// The rows of `results`, each series as (panel, rows).
    fn panel_rows<R: Clone>(results: &[Rows<R>]) -> Vec<Vec<(Option<String>, Vec<R>)>> {
        results
            .iter()
            .map(|r| {
                r.series
                    .iter()
                    .map(|s| (s.tags.get("panel").cloned(), s.values.clone()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn msgpack_field_values_read_into_rows_whatever_their_type() {
        // Integers where JSON would have floats without a fraction, nil, a negative integer and
        // a 64-bit time, all read into the same row type as from JSON.
        let body = to_msgpack(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[1,10],[2,2.5],[3,null],[1700000000000000000,-7]]}]}]}"#,
        )
        .expect("JSON");
        let rows =
            read_pieces::<Rows<(i64, Option<f64>)>>(Format::MessagePack, &body, 3).expect("rows");
        assert_eq!(
            panel_rows(&rows),
            [vec![(
                Some("A".to_owned()),
                vec![
                    (1, Some(10.0)),
                    (2, Some(2.5)),
                    (3, None),
                    (1_700_000_000_000_000_000, Some(-7.0))
                ]
            )]]
        );
        // An integer straight into an f64: serde's f64 takes one, and rmp-serde hands it over.
        assert_eq!(rmp_serde::from_slice::<f64>(&[0x05]).ok(), Some(5.0));
        assert_eq!(rmp_serde::from_slice::<f64>(&[0xd0, 0xfb]).ok(), Some(-5.0));

        // Strings and booleans too, read as `serde_json::Value`s.
        let body = msgpack_answer();
        let results =
            read_pieces::<StatementResult>(Format::MessagePack, &body, 5).expect("results");
        assert_eq!(results[0].series[0].i64_at(0, "v"), Some(10));
        assert_eq!(results[0].series[0].f64_at(1, "v"), Some(2.5));
        assert_eq!(results[0].series[0].values[2][1], Value::Null);
        assert_eq!(results[1].series[0].str_at(0, "a"), Some("text"));
        assert_eq!(results[1].series[0].values[0][2], Value::Bool(true));
        // A row that is not the caller's shape is refused, as in JSON.
        let rows = read_pieces::<Rows<(i64, Option<f64>)>>(Format::MessagePack, &body, 5);
        assert!(matches!(rows, Err(InfluxError::BadResponse(_))), "{rows:?}");
    }

    #[test]
    fn a_msgpack_answer_reads_the_same_split_anywhere() {
        let body = msgpack_answer();
        let whole = format!(
            "{:?}",
            read_pieces::<StatementResult>(Format::MessagePack, &body, body.len())
        );
        assert!(whole.starts_with("Ok("), "{whole}");
        for at in 0..=body.len() {
            let mut reader = AnswerReader::<StatementResult>::new(Format::MessagePack);
            reader.feed(&body[..at]).expect("a first piece");
            reader.feed(&body[at..]).expect("the rest");
            assert_eq!(format!("{:?}", reader.finish()), whole, "split at {at}");
        }
        // The answer as it came from the stream of its pieces, a byte at a time.
        assert_eq!(
            format!(
                "{:?}",
                read_pieces::<StatementResult>(Format::MessagePack, &body, 1)
            ),
            whole
        );
    }

    #[test]
    fn a_msgpack_answer_cut_inside_a_map_is_a_bad_response() {
        let body = msgpack_answer();
        let first_map = to_msgpack(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"panel":"A"},"columns":["time","v"],"values":[[1,10],[2,2.5],[3,null]],"partial":true}],"partial":true}]}"#,
        )
        .expect("JSON")
        .len();
        for at in 1..body.len() {
            let cut = read_pieces::<StatementResult>(Format::MessagePack, &body[..at], 4);
            if at == first_map {
                // Whole maps, the last of which says that more follows.
                assert!(matches!(cut, Err(InfluxError::Partial(_))), "{cut:?}");
                continue;
            }
            let Err(InfluxError::BadResponse(message)) = cut else {
                panic!("cut at {at} of {}: {cut:?}", body.len());
            };
            let whole = usize::from(at > first_map);
            assert_eq!(
                message,
                format!(
                    "the answer ended inside a MessagePack map (after {whole} whole ones, {} \
                     bytes into the next)",
                    if whole == 1 { at - first_map } else { at }
                )
            );
        }
        // No map at all, and values that are no maps.
        let empty = read_pieces::<StatementResult>(Format::MessagePack, &[], 1);
        assert_eq!(
            format!("{empty:?}"),
            r#"Err(BadResponse("an empty answer"))"#
        );
        for (body, expected) in [
            (
                &b"<html>"[..],
                "MessagePack map 1 of the answer: not a map (it begins with 0x3c)",
            ),
            // InfluxDB 3's layout: the object's values in an array, without their keys.
            (
                &[0x91, 0x91, 0x92, 0x00, 0x90],
                "MessagePack map 1 of the answer: not a map (it begins with 0x91)",
            ),
            (
                &[0x81, 0xc1],
                "MessagePack map 1 of the answer: byte 0xc1 begins no MessagePack element",
            ),
        ] {
            match read_pieces::<StatementResult>(Format::MessagePack, body, 1) {
                Err(InfluxError::BadResponse(message)) => assert_eq!(message, expected),
                other => panic!("{body:?}: {other:?}"),
            }
        }
        // A map that is not an answer's object.
        let wrong = rmp_serde::to_vec(&serde_json::json!({"results": "none"})).expect("encodes");
        let wrong = read_pieces::<StatementResult>(Format::MessagePack, &wrong, 1);
        assert!(
            matches!(wrong, Err(InfluxError::BadResponse(_))),
            "{wrong:?}"
        );
    }

    #[test]
    fn every_kind_of_msgpack_element_is_framed_by_its_size() {
        // A map (map 16) holding one element of every kind the MessagePack specification has,
        // each under a key of its own, the sizes spelled out by hand.
        let long = |n: usize| vec![b'x'; n];
        let mut elements: Vec<Vec<u8>> = vec![
            vec![0x05],                                        // positive fixint
            vec![0xff],                                        // negative fixint
            vec![0xc0],                                        // nil
            vec![0xc2],                                        // false
            vec![0xc3],                                        // true
            vec![0xcc, 1],                                     // uint 8
            vec![0xcd, 1, 2],                                  // uint 16
            vec![0xce, 1, 2, 3, 4],                            // uint 32
            vec![0xcf, 1, 2, 3, 4, 5, 6, 7, 8],                // uint 64
            vec![0xd0, 0x80],                                  // int 8
            vec![0xd1, 1, 2],                                  // int 16
            vec![0xd2, 1, 2, 3, 4],                            // int 32
            vec![0xd3, 1, 2, 3, 4, 5, 6, 7, 8],                // int 64
            vec![0xca, 0x3f, 0x80, 0, 0],                      // float 32
            vec![0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],          // float 64
            vec![0xd4, 1, 9],                                  // fixext 1
            vec![0xd5, 1, 9, 9],                               // fixext 2
            vec![0xd6, 1, 9, 9, 9, 9],                         // fixext 4
            [&[0xd7, 1][..], &[9; 8]].concat(),                // fixext 8
            [&[0xd8, 1][..], &[9; 16]].concat(),               // fixext 16
            [&[0xc7, 3, 1][..], &[9; 3]].concat(),             // ext 8
            [&[0xc8, 0, 3, 1][..], &[9; 3]].concat(),          // ext 16
            [&[0xc9, 0, 0, 0, 3, 1][..], &[9; 3]].concat(),    // ext 32
            [&[0xa3][..], b"abc"].concat(),                    // fixstr
            [&[0xd9, 40][..], &long(40)].concat(),             // str 8
            [&[0xda, 1, 44][..], &long(300)].concat(),         // str 16
            [&[0xdb, 0, 1, 0, 0][..], &long(65_536)].concat(), // str 32
            [&[0xc4, 2][..], &[0, 1]].concat(),                // bin 8
            [&[0xc5, 0, 2][..], &[0, 1]].concat(),             // bin 16
            [&[0xc6, 0, 0, 0, 2][..], &[0, 1]].concat(),       // bin 32
            vec![0x92, 0x01, 0x90],                            // fixarray, holding an empty one
            vec![0xdc, 0, 2, 0x01, 0x80],                      // array 16, holding an empty map
            vec![0xdd, 0, 0, 0, 1, 0xc0],                      // array 32
            vec![0x81, 0xa1, b'k', 0x01],                      // fixmap
            vec![0xde, 0, 1, 0xa1, b'k', 0x01],                // map 16
            vec![0xdf, 0, 0, 0, 1, 0xa1, b'k', 0x91, 0x01],    // map 32
        ];
        let count = elements.len() as u8;
        let mut value = vec![0xde, 0, count];
        for (key, element) in elements.iter_mut().enumerate() {
            value.extend([0xa1, b'a' + key as u8]);
            value.append(element);
        }
        // rmp reads it as one value of exactly these bytes.
        let mut rest = &value[..];
        serde::de::IgnoredAny::deserialize(&mut rmp_serde::Deserializer::new(&mut rest))
            .expect("a valid MessagePack value");
        assert!(rest.is_empty());

        // Whole only once every byte has arrived, wherever the bytes stop arriving, and then
        // ending where the next value begins.
        let mut body = value.clone();
        body.push(0x80);
        let mut framing = Framing::default();
        for arrived in 0..value.len() {
            assert_eq!(
                framing.end_of_value(&body[..arrived], 0),
                Ok(None),
                "{arrived}"
            );
        }
        assert_eq!(framing.end_of_value(&body, 0), Ok(Some(value.len())));
        assert_eq!(
            framing.end_of_value(&body, value.len()),
            Ok(Some(body.len()))
        );
        assert_eq!(framing.end_of_value(&body, body.len()), Ok(None));
    }

    #[test]
    fn the_content_type_chooses_the_format_and_json_still_reads() {
        for (content_type, format) in [
            (Some("application/x-msgpack"), Format::MessagePack),
            (
                Some("Application/X-MsgPack; charset=binary"),
                Format::MessagePack,
            ),
            (Some("application/msgpack"), Format::MessagePack),
            (Some("application/json"), Format::Json),
            (Some("application/json; charset=utf-8"), Format::Json),
            (Some("text/plain"), Format::Json),
            (None, Format::Json),
        ] {
            assert_eq!(
                Format::of_content_type(content_type),
                format,
                "{content_type:?}"
            );
        }
        // A JSON answer to a request for MessagePack (a server that ignores `Accept`) reads
        // through the same entry point as ever.
        let format = Format::of_content_type(Some("application/json"));
        let rows = read_pieces::<Rows<(i64, f64)>>(format, SPLIT_SERIES.as_bytes(), 40)
            .expect("a whole answer");
        assert_eq!(
            panel_rows(&rows),
            [vec![
                (
                    Some("A".to_owned()),
                    vec![(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0), (5, 50.0)]
                ),
                (Some("B".to_owned()), vec![(1, 7.0)]),
            ]]
        );
        // And the same answer in MessagePack, under its own type.
        let body = to_msgpack(SPLIT_SERIES).expect("JSON");
        let format = Format::of_content_type(Some("application/x-msgpack"));
        let msgpack = read_pieces::<Rows<(i64, f64)>>(format, &body, 40).expect("a whole answer");
        assert_eq!(panel_rows(&msgpack), panel_rows(&rows));
    }
}
