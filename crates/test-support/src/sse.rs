//! A blocking Server-Sent Events client (the `text/event-stream` format of the WHATWG HTML
//! standard), for tests of api-server's `/api/panel/stream`.
//!
//! The stream is read on a thread of its own, which hands each event over a channel, so a test
//! can wait for the next event with a deadline. The thread ends when the server ends the stream
//! or drops the connection (at the latest when the test's api-server is killed).

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Headers;

/// How long opening the stream may take until the response head arrives.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One event: its `event:` name (`message` when it has none) and its `data:` lines joined by
/// `\n`.
#[derive(Clone, Debug, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

impl SseEvent {
    /// The data parsed as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| {
            panic!("{} event data is not JSON ({e}): {}", self.event, self.data)
        })
    }
}

/// What [`EventStream::next`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    Event(SseEvent),
    /// The server ended the stream or the connection broke.
    Ended,
    TimedOut,
}

/// An open GET of an event stream.
pub struct EventStream {
    status: u16,
    headers: Headers,
    body: String,
    events: Receiver<SseEvent>,
}

impl EventStream {
    /// GETs `url` with `headers` and returns as soon as the response head arrived. A non-200
    /// answer is read whole (see [`EventStream::body`]); a 200 is read as events from then on.
    /// Panics if no HTTP answer arrives.
    pub fn open(url: &str, headers: &[(&str, &str)]) -> Self {
        let (head_tx, head_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let url = url.to_owned();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        std::thread::spawn(move || read(&url, &headers, &head_tx, &event_tx));
        let head = head_rx
            .recv_timeout(CONNECT_TIMEOUT + Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("no answer to the event-stream request: {e}"));
        let (status, headers, body) = head.unwrap_or_else(|e| panic!("{e}"));
        EventStream {
            status,
            headers,
            body,
            events,
        }
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// Response headers by lower-case name.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body of a non-200 answer (empty for a stream).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The next event, waiting at most `timeout`.
    pub fn next(&self, timeout: Duration) -> Next {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Next::Event(event),
            Err(RecvTimeoutError::Timeout) => Next::TimedOut,
            Err(RecvTimeoutError::Disconnected) => Next::Ended,
        }
    }

    /// The next event; panics if none comes within `timeout` or the stream ends.
    pub fn next_event(&self, timeout: Duration) -> SseEvent {
        match self.next(timeout) {
            Next::Event(event) => event,
            other => panic!("expected an event within {timeout:?}, got {other:?}"),
        }
    }

    /// The first event within `timeout` for which `wanted` holds, skipping the others; panics
    /// naming `what` if none comes.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut wanted: impl FnMut(&SseEvent) -> bool,
    ) -> SseEvent {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Event(event) if wanted(&event) => return event,
                Next::Event(event) => skipped.push(event),
                other => panic!(
                    "no event for {what} within {timeout:?} ({other:?}); skipped: {skipped:#?}"
                ),
            }
        }
    }
}

type Head = Result<(u16, Headers, String), String>;

/// The reading thread: sends the response head, then every event until the stream ends.
fn read(url: &str, headers: &[(String, String)], head: &Sender<Head>, events: &Sender<SseEvent>) {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // A stream has no end to wait for.
        .timeout(None)
        .no_proxy()
        .build();
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            let _ = head.send(Err(format!("cannot build an HTTP client: {e}")));
            return;
        }
    };
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = match request.send() {
        Ok(response) => response,
        Err(e) => {
            let _ = head.send(Err(format!("GET {url} failed: {e}")));
            return;
        }
    };
    let status = response.status().as_u16();
    let mut received = Headers::new();
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        received
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    if status != 200 {
        let body = response.text().unwrap_or_default();
        let _ = head.send(Ok((status, received, body)));
        return;
    }
    if head.send(Ok((status, received, String::new()))).is_err() {
        return;
    }
    let mut parser = Parser::default();
    for line in BufReader::new(response).lines() {
        let Ok(line) = line else { return };
        if let Some(event) = parser.line(&line) {
            if events.send(event).is_err() {
                return; // nobody listens any more
            }
        }
    }
}

/// The line-by-line part of the event-stream format that api-server uses: `event`, `data`,
/// comments, and a blank line to dispatch. (`id` and `retry` are accepted and ignored.)
#[derive(Default)]
struct Parser {
    event: String,
    data: Vec<String>,
}

impl Parser {
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            return (!data.is_empty()).then(|| SseEvent {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data: data.join("\n"),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "event" => self.event = value.to_owned(),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<SseEvent> {
        let mut parser = Parser::default();
        text.lines().filter_map(|line| parser.line(line)).collect()
    }

    #[test]
    fn events_comments_and_multi_line_data_are_read_as_the_standard_says() {
        let events = parse(
            "retry: 3000\n\n: keep-alive\n\nevent: panel\ndata: {\"a\":1}\n\n\
             data:first\ndata: second\n\nevent: sync\r\ndata: x\r\n\r\n",
        );
        assert_eq!(
            events,
            [
                SseEvent {
                    event: "panel".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "first\nsecond".into()
                },
                SseEvent {
                    event: "sync".into(),
                    data: "x".into()
                },
            ]
        );
    }
}
