//! An SSE client: the event-stream parser exactly as the HTML standard
//! defines it ("Server-sent events", §9.2.6 "Interpreting an event stream"),
//! a connection that feeds it, and reconnection with back-off and
//! `Last-Event-ID`: what a browser's `EventSource` does, in the open.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use super::{read_response_head, ClientError, Url};
use crate::random;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` value, or `message` when there was none.
    pub event_type: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen up to this event (it carries over to later events).
    pub last_event_id: String,
}

/// What the parser produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(SseEvent),
    /// A comment line (`: keep-alive`), without the colon and one space.
    Comment(String),
}

/// The parser's state between one chunk of bytes and the next.
#[derive(Debug, Default)]
pub struct EventStreamParser {
    line: Vec<u8>,
    first_line_done: bool,
    /// The previous chunk ended with CR: a LF starting this one is part of
    /// the same line end (CRLF split across two reads).
    after_cr: bool,
    data: String,
    event_type: String,
    id_buffer: String,
    /// What to send as `Last-Event-ID` when reconnecting: the id buffer as
    /// it was at the last dispatch.
    last_event_id: String,
    /// The reconnection time the server asked for with `retry:`.
    pub retry: Option<u64>,
}

const BOM: &[u8] = "\u{FEFF}".as_bytes();

impl EventStreamParser {
    pub fn new() -> EventStreamParser {
        EventStreamParser::default()
    }

    /// The id to resume from (`Last-Event-ID`), empty when none.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Feeds bytes as they arrive; returns what they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        let mut items = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            // The standard's three line ends: CRLF, a lone LF, a lone CR.
            match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                None => {
                    self.line.extend_from_slice(rest);
                    break;
                }
                Some(i) => {
                    self.line.extend_from_slice(&rest[..i]);
                    self.after_cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.process_line(line, &mut items);
                }
            }
        }
        items
    }

    /// The stream ended. An event without its closing blank line is
    /// dropped, as the standard says: it may be incomplete.
    pub fn finish(&mut self) {
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.after_cr = false;
    }

    fn process_line(&mut self, mut line: Vec<u8>, items: &mut Vec<Item>) {
        if !self.first_line_done {
            self.first_line_done = true;
            // One leading byte order mark is ignored.
            if line.starts_with(BOM) {
                line.drain(..BOM.len());
            }
        }
        // The stream is UTF-8; invalid bytes become U+FFFD, as in browsers.
        let line = String::from_utf8_lossy(&line);
        if line.is_empty() {
            self.dispatch(items);
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            items.push(Item::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_string(),
            ));
            return;
        }
        // "field: value", "field:value" (one space after the colon is
        // dropped, no more), or "field" alone, with an empty value.
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event_type = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id with NUL in it is ignored (it could not be sent back
            // in a header).
            "id" if !value.contains('\0') => self.id_buffer = value.to_string(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {} // unknown fields are ignored
        }
    }

    fn dispatch(&mut self, items: &mut Vec<Item>) {
        // The id is remembered even for an event with no data.
        self.last_event_id = self.id_buffer.clone();
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the last "\n" appended by a data line
        let event_type = match std::mem::take(&mut self.event_type) {
            t if t.is_empty() => "message".to_string(),
            t => t,
        };
        items.push(Item::Event(SseEvent {
            event_type,
            data,
            last_event_id: self.id_buffer.clone(),
        }));
    }
}

/// Decodes `Transfer-Encoding: chunked` (RFC 9112 §7.1), which servers such
/// as Express use for streams, and so does nginx in front of ours (which
/// closes the connection instead). A chunked body ends with its last,
/// empty chunk, while the connection may stay open for another request.
/// Public for the bench, whose readers do their own handshakes.
#[derive(Debug, Default)]
pub struct Dechunker {
    size_line: Vec<u8>,
    remaining: usize,
    /// Bytes of the CRLF after a chunk still to skip.
    skip: usize,
    done: bool,
}

impl Dechunker {
    /// Appends to `out` the body bytes in `input`, which may end anywhere
    /// (in a size line, in a chunk, in the CRLF after one).
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ClientError> {
        while !input.is_empty() && !self.done {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = &input[n..];
            } else if self.remaining > 0 {
                let n = self.remaining.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.remaining -= n;
                input = &input[n..];
                if self.remaining == 0 {
                    self.skip = 2;
                }
            } else {
                let Some(i) = input.iter().position(|&b| b == b'\n') else {
                    self.size_line.extend_from_slice(input);
                    if self.size_line.len() > 1024 {
                        return Err(ClientError::Refused("bad chunk size line".into()));
                    }
                    return Ok(());
                };
                self.size_line.extend_from_slice(&input[..i]);
                input = &input[i + 1..];
                let line = String::from_utf8_lossy(&self.size_line).into_owned();
                self.size_line.clear();
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| ClientError::Refused(format!("bad chunk size {hex:?}")))?;
                if size == 0 {
                    self.done = true;
                }
                self.remaining = size;
            }
        }
        Ok(())
    }
}

/// An open event stream.
pub struct SseConnection {
    stream: TcpStream,
    parser: EventStreamParser,
    dechunker: Option<Dechunker>,
    items: VecDeque<Item>,
}

/// How long to wait for the TCP connection and the response head.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl SseConnection {
    /// `GET`s the stream, sending `Last-Event-ID` when resuming.
    pub fn connect(url: &Url, last_event_id: Option<&str>) -> Result<SseConnection, ClientError> {
        let mut stream = url.connect(CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
            url.path,
            url.host_header()
        );
        if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        let (head, body_start) = read_response_head(&mut stream)?;
        // As with `EventSource`, 200 with text/event-stream is a stream, 204
        // means "stop", and other answers fail for good. One difference on
        // purpose: a browser gives up on 503 too, but this server's 503
        // means "full right now, retry in a moment", so we do.
        match head.status {
            200 => {}
            204 => {
                return Err(ClientError::Rejected(
                    "the server answered 204 No Content: it asks us not to reconnect".into(),
                ))
            }
            503 => {
                return Err(ClientError::Refused(
                    "the server is busy (503); will retry".into(),
                ))
            }
            status => {
                return Err(ClientError::Rejected(format!(
                    "the server answered {status} {}",
                    head.reason
                )))
            }
        }
        let content_type = head.header("content-type").unwrap_or("");
        if !content_type
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
        {
            return Err(ClientError::Rejected(format!(
                "not an event stream: Content-Type {content_type:?}"
            )));
        }
        stream.set_read_timeout(None)?;
        let mut connection = SseConnection {
            stream,
            parser: EventStreamParser::new(),
            dechunker: head
                .has_token("transfer-encoding", "chunked")
                .then(Dechunker::default),
            items: VecDeque::new(),
        };
        if let Some(id) = last_event_id {
            connection.parser.last_event_id = id.to_string();
            connection.parser.id_buffer = id.to_string();
        }
        connection.take_bytes(&body_start)?;
        Ok(connection)
    }

    fn take_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let items = match &mut self.dechunker {
            Some(dechunker) => {
                let mut plain = Vec::new();
                dechunker.feed(bytes, &mut plain)?;
                self.parser.feed(&plain)
            }
            None => self.parser.feed(bytes),
        };
        self.items.extend(items);
        Ok(())
    }

    /// Waits at most `timeout` in each read (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        Ok(self.stream.set_read_timeout(timeout)?)
    }

    /// The next event or comment. `Err(Closed)` when the stream ends.
    pub fn next_item(&mut self) -> Result<Item, ClientError> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(item) = self.items.pop_front() {
                return Ok(item);
            }
            // The last chunk ends the stream, though TCP stays open: a
            // proxy (nginx, when the instance behind it went away) keeps
            // the connection for the client's next request.
            if self.dechunker.as_ref().is_some_and(|d| d.done) {
                self.parser.finish();
                return Err(ClientError::Closed);
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                self.parser.finish();
                return Err(ClientError::Closed);
            }
            self.take_bytes(&chunk[..n])?;
        }
    }

    /// The next event, skipping comments.
    pub fn next_event(&mut self) -> Result<SseEvent, ClientError> {
        loop {
            if let Item::Event(event) = self.next_item()? {
                return Ok(event);
            }
        }
    }

    /// The parser's last event id: the id of the newest event *parsed*,
    /// which may be ahead of the events returned so far (one read can
    /// hold several). The id of an event in hand is its own
    /// [`SseEvent::last_event_id`]; once `next_item` has failed, every
    /// parsed event has been returned, and this is where to resume.
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    pub fn retry(&self) -> Option<u64> {
        self.parser.retry
    }
}

/// Reconnection with exponential back-off: wait `base × 2^(n-1)` before
/// reconnection attempt `n`; give up after `max_attempts` failed attempts
/// in a row.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max_attempts: u32,
    /// Stretch each delay by a random factor in [1, 1.5): if a server drops
    /// a thousand clients at once, they come back spread out, not together,
    /// and none sooner than the server's `retry:` asked.
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max_attempts: 5,
            jitter: true,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponential = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        if self.jitter {
            exponential.mul_f64(1.0 + 0.5 * random::random_f64())
        } else {
            exponential
        }
    }
}

/// An event stream that reconnects by itself, like `EventSource`.
pub struct ReconnectingClient {
    url: Url,
    pub backoff: Backoff,
    connection: Option<SseConnection>,
    last_event_id: Option<String>,
    /// The last `retry:` the server sent, kept across connections.
    retry_hint: Option<u64>,
    /// How many times the stream has been opened.
    pub connects: u32,
    /// Called with a line describing each connect, drop and wait.
    pub on_notice: Box<dyn FnMut(&str) + Send>,
}

impl ReconnectingClient {
    pub fn new(url: &str, backoff: Backoff) -> Result<ReconnectingClient, ClientError> {
        Ok(ReconnectingClient {
            url: Url::parse(url, &["http"])?,
            backoff,
            connection: None,
            last_event_id: None,
            retry_hint: None,
            connects: 0,
            on_notice: Box::new(|_| {}),
        })
    }

    /// The next event, reconnecting (and resuming) as often as needed.
    /// Fails once `max_attempts` reconnections in a row have failed.
    pub fn next_event(&mut self) -> Result<SseEvent, ClientError> {
        loop {
            if self.connection.is_none() {
                self.reconnect()?;
            }
            let connection = self.connection.as_mut().expect("connected above");
            match connection.next_event() {
                Ok(event) => {
                    // The event's own id, not the parser's, which may be
                    // ahead (events parsed, not yet returned).
                    self.last_event_id = Some(event.last_event_id.clone());
                    return Ok(event);
                }
                Err(e) => {
                    (self.on_notice)(&format!("stream ended: {e}"));
                    // An `id:` may have arrived after the last event we
                    // returned (with no data, say): resume from it.
                    if !connection.last_event_id().is_empty() {
                        self.last_event_id = Some(connection.last_event_id().to_string());
                    }
                    self.retry_hint = connection.retry().or(self.retry_hint);
                    self.connection = None;
                }
            }
        }
    }

    /// Opens the stream again. The very first connection is tried at once;
    /// every later try is a reconnection attempt, `n` of `max_attempts`,
    /// after waiting `delay(n)`.
    fn reconnect(&mut self) -> Result<(), ClientError> {
        let mut attempt: u32 = if self.connects == 0 { 0 } else { 1 };
        loop {
            if attempt > 0 {
                if attempt > self.backoff.max_attempts {
                    return Err(ClientError::Refused(format!(
                        "gave up after {} failed reconnection attempts",
                        self.backoff.max_attempts
                    )));
                }
                // The server's `retry:` replaces the base delay, as in browsers.
                let mut backoff = self.backoff;
                if let Some(ms) = self.retry_hint {
                    backoff.base = Duration::from_millis(ms);
                }
                let wait = backoff.delay(attempt);
                (self.on_notice)(&format!(
                    "reconnecting in {:.1} s (attempt {attempt}/{})",
                    wait.as_secs_f64(),
                    self.backoff.max_attempts
                ));
                thread::sleep(wait);
            }
            match SseConnection::connect(&self.url, self.last_event_id.as_deref()) {
                Ok(connection) => {
                    self.connects += 1;
                    let resuming = match &self.last_event_id {
                        Some(id) => format!(" (resuming after id {id})"),
                        None => String::new(),
                    };
                    (self.on_notice)(&format!("connected to {}{resuming}", self.url.path));
                    self.connection = Some(connection);
                    return Ok(());
                }
                Err(e @ ClientError::Rejected(_)) => return Err(e),
                Err(e) => {
                    (self.on_notice)(&format!("connection failed: {e}"));
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(stream: &str) -> Vec<SseEvent> {
        let mut parser = EventStreamParser::new();
        parser
            .feed(stream.as_bytes())
            .into_iter()
            .filter_map(|item| match item {
                Item::Event(e) => Some(e),
                Item::Comment(_) => None,
            })
            .collect()
    }

    fn ev(event_type: &str, data: &str, id: &str) -> SseEvent {
        SseEvent {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: id.into(),
        }
    }

    #[test]
    fn the_standards_examples() {
        // "data: YHOO / data: +2 / data: 10" is one message event.
        assert_eq!(
            events("data: YHOO\ndata: +2\ndata: 10\n\n"),
            [ev("message", "YHOO\n+2\n10", "")]
        );
        // The example with a comment, ids carried over, and a final event
        // without its blank line (dropped).
        let stream = ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n";
        assert_eq!(
            events(stream),
            [
                ev("message", "first event", "1"),
                ev("message", "second event", "")
            ]
        );
        // A "data" line with no colon adds an empty line: the first block is
        // an event with empty data, the second has "\n", the third has no
        // blank line after it and is never dispatched.
        assert_eq!(
            events("data\n\ndata\ndata\n\ndata:\n"),
            [ev("message", "", ""), ev("message", "\n", "")]
        );
        // "data:test" and "data: test" are the same; "data:  test" keeps a space.
        assert_eq!(
            events("data:test\n\ndata: test\n\n"),
            [ev("message", "test", ""), ev("message", "test", "")]
        );
    }

    #[test]
    fn line_ends_bom_and_fields() {
        assert_eq!(
            events("\u{FEFF}data: a\r\n\r\ndata: b\r\rdata: c\n\n"),
            [
                ev("message", "a", ""),
                ev("message", "b", ""),
                ev("message", "c", "")
            ]
        );
        // Only one BOM is removed, and only at the very start.
        assert_eq!(events("\u{FEFF}\u{FEFF}data: x\n\n"), []);
        assert_eq!(
            events("event: add\ndata: 1\n\ndata: 2\n\n"),
            [ev("add", "1", ""), ev("message", "2", "")]
        );
        assert_eq!(
            events("id: 7\ndata: a\n\nid: 8\u{0}\ndata: b\n\n"),
            [ev("message", "a", "7"), ev("message", "b", "7")]
        );
        assert_eq!(events("unknown: x\ndata: a\n\n"), [ev("message", "a", "")]);
    }

    #[test]
    fn retry_needs_digits_only() {
        let mut parser = EventStreamParser::new();
        parser.feed(b"retry: 2500\n\n");
        assert_eq!(parser.retry, Some(2500));
        parser.feed(b"retry: 1e3\nretry: -1\nretry:\nretry:  10\n\n");
        assert_eq!(parser.retry, Some(2500));
    }

    #[test]
    fn an_id_alone_still_sets_the_resume_point() {
        let mut parser = EventStreamParser::new();
        assert!(parser.feed(b"id: 42\n\n").is_empty());
        assert_eq!(parser.last_event_id(), "42");
        parser.feed(b"id: 43\ndata: x\n");
        parser.finish();
        assert_eq!(
            parser.last_event_id(),
            "42",
            "an unfinished event does not move it"
        );
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let mut parser = EventStreamParser::new();
        let mut items = parser.feed(b"data: a\r");
        items.extend(parser.feed(b"\ndata: b\r"));
        items.extend(parser.feed(b"\n\r"));
        items.extend(parser.feed(b"\n"));
        assert_eq!(items, [Item::Event(ev("message", "a\nb", ""))]);
        assert_eq!(
            parser.feed(b": keep-alive\n"),
            [Item::Comment("keep-alive".into())]
        );
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let stream = b"\xEF\xBB\xBFretry: 10\r\nid: 1\r\nevent: e\r\ndata: x\xC3\xA9\r\n\r\n: c\rdata: y\r\r";
        let whole = EventStreamParser::new().feed(stream);
        for size in 1..stream.len() {
            let mut parser = EventStreamParser::new();
            let items: Vec<Item> = stream.chunks(size).flat_map(|c| parser.feed(c)).collect();
            assert_eq!(items, whole, "chunks of {size}");
        }
        assert_eq!(whole.len(), 3);
    }

    #[test]
    fn chunked_bodies() {
        let mut d = Dechunker::default();
        let mut out = Vec::new();
        for piece in [
            &b"5\r\nhel"[..],
            b"lo\r\n6;ext=1\r\n wor",
            b"ld\r\n0\r\n\r\n",
        ] {
            d.feed(piece, &mut out).unwrap();
        }
        assert_eq!(out, b"hello world");
        assert!(d.done);
    }

    #[test]
    fn backoff_doubles() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max_attempts: 5,
            jitter: false,
        };
        let delays: Vec<u64> = (1..=5).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
        let j = Backoff { jitter: true, ..b };
        for _ in 0..100 {
            let d = j.delay(3);
            assert!(
                d >= Duration::from_secs(4) && d < Duration::from_secs(6),
                "{d:?}"
            );
        }
    }
}
