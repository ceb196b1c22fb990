//! Server-Sent Events: the `text/event-stream` format and the loop that
//! feeds one stream.
//!
//! An event stream is plain UTF-8 text, one field per line, and a blank
//! line ends an event (HTML standard, "Server-sent events", §9.2.5):
//!
//! ```text
//! id: 7
//! event: alert
//! data: {"type":"notification","message":"hello"}
//!
//! ```
//!
//! Lines starting with `:` are comments (our keep-alive), `retry:` tells the
//! browser how long to wait before reconnecting. The formatting functions
//! here are pure; [`serve_stream`] is the only code that touches a socket.

use std::fmt;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::{write_all_within, RequestHead};
use crate::hub::{Event, Resume};
use crate::inspect::{Direction, Kind};
use crate::json;
use crate::server::{Counted, Shared};
use crate::{random, time};

/// A field value that would break the framing of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError;

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an SSE event name or id must not contain CR or LF")
    }
}

impl std::error::Error for FieldError {}

/// An `event:` or `id:` value must fit on one line: a line break inside it
/// would let the value start a new field (`alert\ndata: forged`).
pub fn check_field(value: &str) -> Result<(), FieldError> {
    if value.contains(['\r', '\n']) {
        Err(FieldError)
    } else {
        Ok(())
    }
}

/// Formats one event. `data` is split into one `data:` line per line of
/// text; the client joins them back with `\n`.
///
/// The caller has checked `name` with [`check_field`] (the hub does).
pub fn format_event(id: Option<u64>, name: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in split_lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Splits text into lines the way an event-stream parser will: CRLF, a lone
/// LF and a lone CR each end exactly one line. A trailing line end leaves an
/// empty last line, so `"a\n"` comes back out of the client as `"a\n"`.
pub fn split_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                lines.push(&text[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            b'\n' => {
                lines.push(&text[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    lines.push(&text[start..]);
    lines
}

/// A comment line: ignored by clients, but it keeps proxies from closing an
/// idle stream and lets the server find out that a client has gone.
pub fn format_comment(text: &str) -> Vec<u8> {
    format!(": {text}\n\n").into_bytes()
}

/// `retry: MS` sets how long the browser waits before reconnecting. It is
/// one line, sent as part of the first event: a block holding nothing but
/// `retry:` is legal, but some clients wrongly report it as an empty event.
pub fn format_retry(millis: u64) -> Vec<u8> {
    format!("retry: {millis}\n").into_bytes()
}

/// The response head of a stream. There is no `Content-Length`: the body
/// ends when the connection closes (RFC 9112 §6.3), which for a stream that
/// lasts as long as the connection is exactly right.
pub const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/event-stream\r\n\
Cache-Control: no-cache\r\n\
Connection: keep-alive\r\n\
Access-Control-Allow-Origin: *\r\n\
X-Accel-Buffering: no\r\n\
\r\n";

/// How often an idle stream checks whether its client has hung up.
const CLIENT_CHECK: Duration = Duration::from_secs(1);

/// Writes are gathered up to this size before going to the socket, so a
/// burst of events costs one system call instead of one per event.
const BATCH_BYTES: usize = 64 * 1024;

/// Why a stream ended, for the log.
enum End {
    ClientGone,
    WriteFailed(io::Error),
    TooSlow,
    MaxAge,
}

/// Serves `GET /events` on this connection until the client leaves.
pub fn serve_stream(mut stream: TcpStream, head: &RequestHead, shared: &Shared, id: u64) {
    let _counted = Counted::new(&shared.sse_streams);
    let started = Instant::now();
    // The browser sends the id of the last event it saw when it reconnects;
    // clients that cannot set headers may use the query string instead.
    let requested = head
        .header("last-event-id")
        .or_else(|| head.query_param("lastEventId"))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let parsed = requested.map(|text| text.parse::<u64>().map_err(|_| text.to_string()));
    let subscription = shared
        .hub
        .subscribe(parsed.as_ref().and_then(|r| r.as_ref().ok()).copied());
    let mut resume = subscription.resume.clone();
    if let Some(Err(text)) = &parsed {
        resume = Resume::Reset(format!(
            "Last-Event-ID {text:?} is not an id this server gave out"
        ));
    }

    shared.log(format_args!(
        "client {id} opened an SSE stream{} (SSE clients: {})",
        match requested {
            Some(last) => format!(" resuming after {last}"),
            None => String::new(),
        },
        shared.sse_streams.load(Ordering::Relaxed)
    ));

    // The opening: head, retry, welcome, initial data, then what was missed.
    // The welcome's id is this connection's resume point: the id just before
    // the first event that follows it (the first replayed one, or else the
    // next live one). If the connection drops at any moment after it, the
    // browser reconnects from there and misses nothing it could still get.
    let resume_point = match subscription.replay.first() {
        Some(first) => first.id - 1,
        None => subscription.newest_id,
    };
    let welcome = json::object([
        ("type", "welcome".into()),
        ("message", format!("Welcome to SSE! ID: {id}").into()),
        ("clientId", id.into()),
    ]);
    let initial = json::object([
        ("type", "initial_data".into()),
        ("message", "This is the initial data".into()),
        ("timestamp", time::now_iso8601().into()),
    ]);
    let mut first = format_retry(shared.config.retry_ms);
    first.extend(format_event(Some(resume_point), None, &welcome.to_string()));
    let mut blocks = vec![first, format_event(None, None, &initial.to_string())];
    if let Resume::Reset(why) = &resume {
        let reset = json::object([
            ("type", "reset".into()),
            ("message", why.clone().into()),
            ("newestId", subscription.newest_id.into()),
        ]);
        blocks.push(format_event(None, None, &reset.to_string()));
    }
    let mut out = STREAM_HEAD.to_vec();
    for block in &blocks {
        shared
            .inspector
            .record(Direction::Out, id, Kind::Sse, block);
        out.extend_from_slice(block);
    }
    let timeout = shared.config.write_timeout;
    if let Err(e) = write_all_within(&stream, &out, timeout) {
        return finish(shared, id, started, End::WriteFailed(e));
    }
    for chunk in subscription.replay.chunks(64) {
        if let Err(e) = write_events(&stream, chunk.iter().cloned(), shared, id) {
            return finish(shared, id, started, End::WriteFailed(e));
        }
    }

    // The live loop.
    let max_age = jittered(shared.config.max_stream);
    let mut last_write = Instant::now();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
    let end = loop {
        let now = Instant::now();
        let keepalive_due = last_write + shared.config.keepalive;
        let mut wait = keepalive_due
            .saturating_duration_since(now)
            .min(CLIENT_CHECK);
        if let Some(age) = max_age {
            let left = (started + age).saturating_duration_since(now);
            if left.is_zero() {
                break End::MaxAge;
            }
            wait = wait.min(left);
        }
        match subscription.events.recv_timeout(wait) {
            Ok(first) => {
                // Take whatever else is already queued, and send it all at once.
                let queued = std::iter::once(first).chain(subscription.events.try_iter());
                if let Err(e) = write_events(&stream, queued, shared, id) {
                    break End::WriteFailed(e);
                }
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                if client_gone(&mut stream) {
                    break End::ClientGone;
                }
                if last_write.elapsed() >= shared.config.keepalive {
                    let comment = format_comment("keep-alive");
                    shared
                        .inspector
                        .record(Direction::Out, id, Kind::Sse, &comment);
                    if let Err(e) = write_all_within(&stream, &comment, timeout) {
                        break End::WriteFailed(e);
                    }
                    last_write = Instant::now();
                }
            }
            // The hub let go of us: our queue overflowed.
            Err(RecvTimeoutError::Disconnected) => break End::TooSlow,
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    finish(shared, id, started, end);
}

/// Writes events, gathered into batches of up to [`BATCH_BYTES`].
fn write_events(
    stream: &TcpStream,
    events: impl Iterator<Item = Arc<Event>>,
    shared: &Shared,
    id: u64,
) -> io::Result<()> {
    let timeout = shared.config.write_timeout;
    let mut batch: Vec<u8> = Vec::new();
    for event in events {
        shared
            .inspector
            .record(Direction::Out, id, Kind::Sse, &event.sse_bytes);
        if batch.is_empty() && event.sse_bytes.len() >= BATCH_BYTES {
            write_all_within(stream, &event.sse_bytes, timeout)?;
            continue;
        }
        batch.extend_from_slice(&event.sse_bytes);
        if batch.len() >= BATCH_BYTES {
            write_all_within(stream, &batch, timeout)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        write_all_within(stream, &batch, timeout)?;
    }
    Ok(())
}

/// A stream's client never sends anything after its request, so a read that
/// returns end-of-file means it has hung up. The read timeout is a
/// millisecond: if nothing is there, the client is simply still listening.
pub(crate) fn client_gone(stream: &mut TcpStream) -> bool {
    let mut scratch = [0u8; 512];
    match stream.read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false, // unexpected bytes: ignore them
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
        ),
    }
}

/// `--max-stream-secs`, jittered to 80–100 %: if a thousand streams opened
/// together they do not all end, and reconnect, in the same instant.
fn jittered(max: Duration) -> Option<Duration> {
    if max.is_zero() {
        None
    } else {
        Some(max.mul_f64(0.8 + 0.2 * random::random_f64()))
    }
}

fn finish(shared: &Shared, id: u64, started: Instant, end: End) {
    let why = match end {
        End::ClientGone => "the client left".to_string(),
        End::WriteFailed(e) => format!("a write failed: {e}"),
        End::TooSlow => "it fell too far behind; it may resume with Last-Event-ID".to_string(),
        End::MaxAge => "it reached --max-stream-secs; the client will reconnect".to_string(),
    };
    shared.log(format_args!(
        "client {id}: SSE stream ended after {:.1} s: {why} (SSE clients: {})",
        started.elapsed().as_secs_f64(),
        shared.sse_streams.load(Ordering::Relaxed) - 1
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn formats_id_event_and_data() {
        assert_eq!(
            text(format_event(Some(3), None, "{}")),
            "id: 3\ndata: {}\n\n"
        );
        assert_eq!(
            text(format_event(None, Some("add"), "73857293")),
            "event: add\ndata: 73857293\n\n"
        );
    }

    #[test]
    fn the_standards_stock_example() {
        // The HTML standard's first example stream: "data: YHOO\ndata: +2\ndata: 10"
        // carries one event whose data is "YHOO\n+2\n10".
        assert_eq!(
            text(format_event(None, None, "YHOO\n+2\n10")),
            "data: YHOO\ndata: +2\ndata: 10\n\n"
        );
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        assert_eq!(split_lines("a\r\nb\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(split_lines("a\n\nb"), ["a", "", "b"]);
        assert_eq!(split_lines("a\r\rb"), ["a", "", "b"]);
        assert_eq!(split_lines("a\n"), ["a", ""]);
        assert_eq!(split_lines(""), [""]);
        assert_eq!(
            text(format_event(None, None, "x\r\ny\r")),
            "data: x\ndata: y\ndata: \n\n"
        );
    }

    #[test]
    fn names_with_line_breaks_are_refused() {
        assert!(check_field("alert").is_ok());
        assert!(check_field("a\nb").is_err());
        assert!(check_field("a\rb").is_err());
    }

    #[test]
    fn comments_and_retry() {
        assert_eq!(text(format_comment("keep-alive")), ": keep-alive\n\n");
        assert_eq!(text(format_retry(3000)), "retry: 3000\n");
    }

    #[test]
    fn jitter_stays_within_80_to_100_percent() {
        assert_eq!(jittered(Duration::ZERO), None);
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(10)).unwrap();
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }
}
