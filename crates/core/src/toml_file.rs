//! Reading a TOML settings file as a tree that keeps where each value was written, so that
//! every error names the line and the field (`<path> line <N>, <field>: <message>`): the part
//! the tariff file ([`crate::tariff`]) and the virtual-meters file ([`crate::meters`]) share.
//! Each file keeps its own error type; [`Reader`] builds it through [`LocatedError`].

use std::marker::PhantomData;

use toml::de::{DeTable, DeValue};

use crate::cost::{ParsePriceError, Price};
use toml::Spanned;

/// A value of the file with the byte range it was written at.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// An error that says where in which file, in which field, and what is wrong.
pub(crate) trait LocatedError {
    fn located(path: String, line: usize, field: String, message: String) -> Self;
}

/// The text of one file and its path (which only names it in errors), building errors `E`.
pub(crate) struct Reader<'a, E> {
    text: &'a str,
    path: &'a str,
    error: PhantomData<fn() -> E>,
}

impl<'a, E: LocatedError> Reader<'a, E> {
    pub(crate) fn new(text: &'a str, path: &'a str) -> Self {
        Reader {
            text,
            path,
            error: PhantomData,
        }
    }

    /// The whole file as one table value; a syntax error is reported as the field `(syntax)`.
    pub(crate) fn document(&self) -> Result<Value<'a>, E> {
        let root = DeTable::parse(self.text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            self.error(at, "(syntax)", e.message().trim().to_owned())
        })?;
        Ok(Spanned::new(root.span(), DeValue::Table(root.into_inner())))
    }

    /// The line (from 1) of the byte offset `at`; past the end is the last line.
    pub(crate) fn line(&self, at: usize) -> usize {
        self.text.as_bytes()[..at.min(self.text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    pub(crate) fn error(&self, at: usize, field: &str, message: impl Into<String>) -> E {
        E::located(
            self.path.to_owned(),
            self.line(at),
            field.to_owned(),
            message.into(),
        )
    }

    /// The table `value`, whatever its keys.
    pub(crate) fn map<'v, 'i>(
        &self,
        value: &'v Value<'i>,
        field: &str,
    ) -> Result<&'v DeTable<'i>, E> {
        value.get_ref().as_table().ok_or_else(|| {
            self.error(
                value.span().start,
                field,
                format!("must be a table, not {}", value.get_ref().type_str()),
            )
        })
    }

    /// The table `value`, and that every key of it is one of `known`.
    pub(crate) fn table<'v, 'i>(
        &self,
        value: &'v Value<'i>,
        field: &str,
        known: &[&str],
        what: &str,
    ) -> Result<&'v DeTable<'i>, E> {
        let table = self.map(value, field)?;
        for key in table.keys() {
            if !known.contains(&&**key.get_ref()) {
                return Err(self.error(
                    key.span().start,
                    &join(field, key.get_ref()),
                    format!("unknown {what} (expected one of: {})", known.join(", ")),
                ));
            }
        }
        Ok(table)
    }

    /// A string that is not blank, as written.
    pub(crate) fn string(&self, value: &Value<'_>, field: &str) -> Result<String, E> {
        match value.get_ref().as_str() {
            Some(s) if !s.trim().is_empty() => Ok(s.to_owned()),
            Some(_) => Err(self.error(value.span().start, field, "must not be empty")),
            None => Err(self.error(
                value.span().start,
                field,
                format!("must be a string, not {}", value.get_ref().type_str()),
            )),
        }
    }

    /// A non-negative decimal, written as a number (`1035.78`) or a string (`"1035.78"`),
    /// read exactly from the text as written, never through a binary float. `what` ends the
    /// message of a negative one (`rates and charges must be 0 or more`).
    pub(crate) fn decimal(&self, value: &Value<'_>, field: &str, what: &str) -> Result<Price, E> {
        let at = value.span().start;
        let text = match value.get_ref() {
            DeValue::Integer(i) if i.radix() == 10 => i.as_str().replace('_', ""),
            DeValue::Integer(i) => {
                return Err(self.error(
                    at,
                    field,
                    format!("{i} is not a decimal number: write it in base 10"),
                ))
            }
            DeValue::Float(f) => f.as_str().replace('_', ""),
            DeValue::String(s) => s.to_string(),
            other => {
                return Err(self.error(
                    at,
                    field,
                    format!("must be a decimal number, not {}", other.type_str()),
                ))
            }
        };
        text.trim().parse::<Price>().map_err(|e| {
            let message = match e {
                ParsePriceError::Negative => format!("{text} is negative: {what}"),
                other => format!("{text:?} is {other}"),
            };
            self.error(at, field, message)
        })
    }

    pub(crate) fn array<'v, 'i>(
        &self,
        value: &'v Value<'i>,
        field: &str,
    ) -> Result<&'v [Value<'i>], E> {
        value.get_ref().as_array().map(|a| &a[..]).ok_or_else(|| {
            self.error(
                value.span().start,
                field,
                format!("must be an array, not {}", value.get_ref().type_str()),
            )
        })
    }
}

/// The path of `key` in the table at `field` (`""` is the top of the file).
pub(crate) fn join(field: &str, key: &str) -> String {
    if field.is_empty() {
        key.to_owned()
    } else {
        format!("{field}.{key}")
    }
}

pub(crate) fn get<'v, 'i>(table: &'v DeTable<'i>, key: &str) -> Option<&'v Value<'i>> {
    table.get(key)
}
