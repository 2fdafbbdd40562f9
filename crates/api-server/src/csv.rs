//! CSV answers (`format=csv`): RFC 4180 text, a header row, CRLF line ends, the same figures as
//! the JSON answer, for the spreadsheets facility managers keep.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::ApiError;

/// What an answer is written as (`format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    #[default]
    Json,
    Csv,
}

impl Format {
    /// `format`'s value, JSON when absent.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Format, ApiError> {
        match raw {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(_) => Err(ApiError::BadRequest("format must be json or csv".into())),
        }
    }
}

/// A CSV document being written: a header row first, then one row per record.
pub(crate) struct Csv {
    text: String,
}

impl Csv {
    pub(crate) fn new(header: &[&str]) -> Csv {
        let mut csv = Csv {
            text: String::new(),
        };
        csv.row(header.iter().copied());
        csv
    }

    /// Appends a record; a field holding a comma, a quote or a line break is quoted, its quotes
    /// doubled (RFC 4180, 2.6 and 2.7).
    pub(crate) fn row<'a>(&mut self, fields: impl IntoIterator<Item = &'a str>) {
        for (index, field) in fields.into_iter().enumerate() {
            if index > 0 {
                self.text.push(',');
            }
            if field.contains([',', '"', '\r', '\n']) {
                self.text.push('"');
                self.text.push_str(&field.replace('"', "\"\""));
                self.text.push('"');
            } else {
                self.text.push_str(field);
            }
        }
        self.text.push_str("\r\n");
    }

    /// The document as an answer, offered for download as `filename`.
    pub(crate) fn into_response(self, filename: &str) -> Response {
        let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
                ),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            self.text,
        )
            .into_response()
    }

    #[cfg(test)]
    fn text(&self) -> &str {
        &self.text
    }
}

/// The figures of one period of one panel, as the daily and monthly CSV hold them.
pub(crate) struct PeriodRow<'a> {
    pub panel: &'a str,
    pub period: &'a str,
    pub usage_kwh: f64,
    pub estimated_kwh: f64,
    pub cost: f64,
    pub currency: &'a str,
    pub max_demand_kw: f64,
}

impl Csv {
    /// A document of [`PeriodRow`]s, whose period column is named `period_column`.
    pub(crate) fn of_periods<'a>(
        period_column: &str,
        rows: impl IntoIterator<Item = PeriodRow<'a>>,
    ) -> Csv {
        let mut csv = Csv::new(&[
            "panel",
            period_column,
            "usage_kwh",
            "estimated_kwh",
            "cost",
            "currency",
            "max_demand_kw",
        ]);
        for row in rows {
            csv.row([
                row.panel,
                row.period,
                &number(row.usage_kwh),
                &number(row.estimated_kwh),
                &number(row.cost),
                row.currency,
                &number(row.max_demand_kw),
            ]);
        }
        csv
    }
}

/// A number as CSV writes it: as JSON does (shortest form that reads back the same).
pub(crate) fn number(value: f64) -> String {
    serde_json::Number::from_f64(value).map_or_else(|| "".into(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_that_need_it_are_quoted_and_lines_end_in_crlf() {
        let mut csv = Csv::new(&["panel", "note"]);
        csv.row(["P1", "plain"]);
        csv.row(["a,b", "say \"hi\"\nthere"]);
        assert_eq!(
            csv.text(),
            "panel,note\r\nP1,plain\r\n\"a,b\",\"say \"\"hi\"\"\nthere\"\r\n"
        );
    }

    #[test]
    fn numbers_are_written_as_in_the_json() {
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(0.0), "0.0");
        assert_eq!(number(1234.567), "1234.567");
        assert_eq!(number(f64::NAN), "");
    }

    #[test]
    fn the_format_is_json_or_csv() {
        assert_eq!(Format::parse(None).unwrap(), Format::Json);
        assert_eq!(Format::parse(Some("json")).unwrap(), Format::Json);
        assert_eq!(Format::parse(Some("csv")).unwrap(), Format::Csv);
        assert!(Format::parse(Some("CSV ")).is_err());
        assert!(Format::parse(Some("")).is_err());
    }
}
