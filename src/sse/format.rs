//! The `text/event-stream` format, as pure functions from values to bytes.
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
//! browser how long to wait before reconnecting. Nothing here touches a
//! socket: `stream.rs` writes what these functions make.

use std::fmt;

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
    write_fields(&mut out, id, name);
    for line in split_lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// For data that is one line (any JSON text this server writes: JSON
/// escapes line breaks inside strings), the event is its fields, then
/// `data: `, the data itself, and [`EVENT_END`]. This is the part before
/// the data, so the data can be written from where it is kept, uncopied.
/// `None` when the data has line breaks: then use [`format_event`].
pub fn event_head(id: Option<u64>, name: Option<&str>, data: &str) -> Option<Vec<u8>> {
    if data.contains(['\r', '\n']) {
        return None;
    }
    let mut head = Vec::with_capacity(32);
    write_fields(&mut head, id, name);
    head.extend_from_slice(b"data: ");
    Some(head)
}

/// What follows the data of a one-line event: the end of its `data:` line,
/// and the blank line that ends the event.
pub const EVENT_END: &[u8] = b"\n\n";

/// The `id:` and `event:` lines of an event.
fn write_fields(out: &mut Vec<u8>, id: Option<u64>, name: Option<&str>) {
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
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
    fn a_one_line_event_is_its_head_its_data_and_its_end() {
        let data = "{\"x\":1}";
        for (id, name) in [(Some(7), Some("alert")), (None, None), (Some(1), None)] {
            let head = event_head(id, name, data).unwrap();
            let whole = [&head[..], data.as_bytes(), EVENT_END].concat();
            assert_eq!(whole, format_event(id, name, data));
        }
        assert_eq!(event_head(Some(1), None, "a\nb"), None);
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
}
