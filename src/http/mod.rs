//! HTTP/1.1 by hand: reading requests off a socket with limits and
//! deadlines ([`Connection`]), parsing their heads ([`head`]), writing
//! responses ([`Response`]) within a deadline, and closing without losing
//! the last answer ([`linger`]).

pub mod head;
mod response;

pub use head::{body_length, check_head, HeadLimits, HeadParser, RequestHead, Version};
pub use response::{reason_phrase, Response};

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::budget::Budget;

/// Everything about a request that gets an HTTP error answer. Each variant
/// is one status code, and its message tells the client what to change.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpError {
    /// 400: the request is malformed; the text says how.
    BadRequest(String),
    /// 408: the head or body did not arrive before the deadline.
    Timeout,
    /// 413: the body is larger than the server accepts.
    BodyTooLarge { limit: usize },
    /// 414: the request target is longer than the server accepts.
    UriTooLong { limit: usize },
    /// 415: the body is not in a format the route reads.
    UnsupportedMediaType(String),
    /// 431: the head as a whole is too large.
    HeadTooLarge { limit: usize },
    /// 431: more header fields than the server accepts.
    TooManyHeaders { limit: usize },
    /// 503: the server cannot hold this body now (all connections together
    /// have `--max-buffered-bytes` in flight); retry in a moment.
    Overloaded { limit: usize },
    /// 501: a method or transfer coding this server does not implement.
    NotImplemented(String),
    /// 505: an HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::Timeout => 408,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::UriTooLong { .. } => 414,
            HttpError::UnsupportedMediaType(_) => 415,
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::NotImplemented(_) => 501,
            HttpError::Overloaded { .. } => 503,
            HttpError::VersionNotSupported => 505,
        }
    }

    /// The answer to send: the status, and the message as plain text.
    pub fn to_response(&self) -> Response {
        self.with_headers(Response::text(self.status(), &format!("{self}\n")))
    }

    /// Adds the headers this error's answer needs to `response` (which may
    /// carry the message in another form, as JSON).
    pub fn with_headers(&self, response: Response) -> Response {
        match self {
            // RFC 9110 §10.2.3: how long to wait before trying again.
            HttpError::Overloaded { .. } => response.header("Retry-After", "1"),
            _ => response,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "Bad request: {why}"),
            HttpError::Timeout => write!(f, "The request did not arrive in time"),
            HttpError::BodyTooLarge { limit } => {
                write!(
                    f,
                    "The request body is larger than the limit of {limit} bytes"
                )
            }
            HttpError::UriTooLong { limit } => {
                write!(
                    f,
                    "The request target is longer than the limit of {limit} bytes"
                )
            }
            HttpError::UnsupportedMediaType(why) => write!(f, "Unsupported media type: {why}"),
            HttpError::HeadTooLarge { limit } => {
                write!(
                    f,
                    "The request head is larger than the limit of {limit} bytes"
                )
            }
            HttpError::TooManyHeaders { limit } => {
                write!(f, "The request has more than {limit} header fields")
            }
            HttpError::NotImplemented(what) => write!(f, "Not implemented: {what}"),
            HttpError::Overloaded { limit } => write!(
                f,
                "The server is holding its limit of {limit} bytes of requests and messages \
                 still arriving (--max-buffered-bytes); retry in a moment"
            ),
            HttpError::VersionNotSupported => {
                write!(f, "Only HTTP/1.1 and HTTP/1.0 are supported")
            }
        }
    }
}

/// Why reading a request stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection, or stayed idle too long between
    /// requests: nothing to answer, just close.
    Closed,
    /// The request is bad: answer with this error, then close.
    Http(HttpError),
    /// The socket failed.
    Io(io::Error),
}

impl From<HttpError> for ReadError {
    fn from(e: HttpError) -> ReadError {
        ReadError::Http(e)
    }
}

/// One client's socket plus the bytes read from it but not used yet.
///
/// A single `read` can return the end of one request and the start of the
/// next (pipelining), or a request head followed by the first WebSocket
/// frames. Those extra bytes stay in `buf[start..end]` for whoever reads next.
pub struct Connection {
    pub stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// How much is read from the socket at a time. A request head is usually a
/// few hundred bytes; a larger head simply takes several reads.
const READ_CHUNK: usize = 8 * 1024;

impl Connection {
    pub fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Reads the next request head.
    ///
    /// `idle` is how long to wait for its first byte (between requests on a
    /// persistent connection, silence just means the client is done); once
    /// the first byte is in, the whole head must arrive within `head_timeout`,
    /// however slowly it trickles (a deadline, not a per-read timeout).
    pub fn read_head(
        &mut self,
        limits: HeadLimits,
        idle: Duration,
        head_timeout: Duration,
    ) -> Result<RequestHead, ReadError> {
        let mut parser = HeadParser::new(limits);
        let mut deadline = Instant::now() + idle;
        loop {
            if self.start < self.end {
                let was_untouched = parser.is_untouched();
                let (used, head) = parser.feed(&self.buf[self.start..self.end])?;
                self.start += used;
                if let Some(head) = head {
                    return Ok(head);
                }
                if was_untouched && !parser.is_untouched() {
                    deadline = Instant::now() + head_timeout;
                }
            }
            match self.fill(deadline) {
                Ok(()) => {}
                Err(ReadError::Http(HttpError::Timeout)) if parser.is_untouched() => {
                    return Err(ReadError::Closed);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the body of `head`, `length` bytes (from [`body_length`]), the
    /// one way every route reads a body:
    /// - a body over `limits.max_body` is refused before a byte of it is
    ///   read (413);
    /// - a client that sent `Expect: 100-continue` is waiting for a go-ahead
    ///   before it sends the body (curl does this for large bodies), so it
    ///   gets `100 Continue` first (RFC 9110 §10.1.1);
    /// - the body's memory is taken from the server's budget for bytes in
    ///   flight before it is allocated; when the budget cannot spare it, the
    ///   answer is 503 at once (nobody waits for room);
    /// - the whole body must arrive within `limits.timeout`.
    pub fn read_body(
        &mut self,
        head: &RequestHead,
        length: usize,
        limits: BodyLimits,
    ) -> Result<Vec<u8>, ReadError> {
        if length > limits.max_body {
            return Err(HttpError::BodyTooLarge {
                limit: limits.max_body,
            }
            .into());
        }
        let Some(_reservation) = limits.budget.reserve(length) else {
            return Err(HttpError::Overloaded {
                limit: limits.budget.limit(),
            }
            .into());
        };
        if head.has_token("expect", "100-continue") {
            let go_on = b"HTTP/1.1 100 Continue\r\n\r\n";
            write_all_within(&self.stream, go_on, limits.write_timeout).map_err(ReadError::Io)?;
        }
        self.read_exactly(length, Instant::now() + limits.timeout)
    }

    /// Reads exactly `length` bytes, which must arrive before `deadline`.
    fn read_exactly(&mut self, length: usize, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::with_capacity(length);
        while body.len() < length {
            if self.start == self.end {
                self.fill(deadline)?;
            }
            let take = (length - body.len()).min(self.end - self.start);
            body.extend_from_slice(&self.buf[self.start..self.start + take]);
            self.start += take;
        }
        Ok(body)
    }

    /// Sends a last response and ends the connection without losing it.
    ///
    /// The request may not have been read to its end (a body over the
    /// limit, a head that broke a rule). Closing a socket with unread bytes
    /// makes the kernel answer with a reset, which can destroy the response
    /// before the client reads it. So: write, then [`linger`].
    pub fn refuse(&mut self, response: &Response, write_timeout: Duration) {
        let bytes = response.to_bytes(false, true);
        if write_all_within(&self.stream, &bytes, write_timeout).is_ok() {
            self.start = self.end; // what is buffered is discarded too
            linger(&self.stream, LINGER, LINGER_BYTES);
        }
    }

    /// Hands over the socket, for a stream that takes the connection over
    /// and never reads another request. The read buffer is freed now, not
    /// when the stream ends: thousands of open streams would otherwise keep
    /// 8 KiB each for nothing.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Hands over the socket and any bytes already read past the request
    /// head, for a protocol that takes the connection over (WebSocket).
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        let leftover = self.buf[self.start..self.end].to_vec();
        (self.stream, leftover)
    }

    /// Reads more bytes into the (fully consumed) buffer, waiting no later
    /// than `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(HttpError::Timeout.into());
        }
        // Each read may wait only for what is left of the deadline, so a
        // client sending one byte every few seconds is still cut off on time.
        self.stream
            .set_read_timeout(Some(deadline - now))
            .map_err(ReadError::Io)?;
        self.start = 0;
        self.end = 0;
        match self.stream.read(&mut self.buf) {
            Ok(0) => Err(ReadError::Closed),
            Ok(n) => {
                self.end = n;
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(HttpError::Timeout.into())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(ReadError::Io(e)),
        }
    }
}

/// Limits for reading one request body.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// The largest body accepted (`--max-body`).
    pub max_body: usize,
    /// The whole body must arrive within this (`--head-timeout-secs`).
    pub timeout: Duration,
    /// For the `100 Continue` answer (`--write-timeout-secs`).
    pub write_timeout: Duration,
    /// Shared by every connection (`--max-buffered-bytes`).
    pub budget: Budget,
}

/// How long, and for how many bytes, [`Connection::refuse`] lingers.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Closes our side of a connection without losing what we last wrote:
/// half-closes it (the peer sees the end of our data), then reads and
/// discards what the peer still sends, until it closes too, `time` passes,
/// or `bytes` have been thrown away. Only then may the socket be dropped:
/// closing a socket with unread input makes the kernel send a reset, which
/// can destroy our last answer before the peer has read it.
pub fn linger(stream: &TcpStream, time: Duration, bytes: usize) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + time;
    let mut budget = bytes;
    let mut scratch = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        if discard_input(stream, &mut scratch, &mut budget) == Input::Finished {
            return;
        }
    }
}

/// What [`discard_input`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Nothing more to read for now; the peer may still send.
    Pending,
    /// The peer closed, the socket failed, or the budget is spent.
    Finished,
}

/// Reads and throws away whatever the socket has ready, taking it off
/// `budget`. One step of [`linger`]; the doorman calls it on many
/// non-blocking sockets in turn, where a blocking linger would wait on one.
pub fn discard_input(stream: &TcpStream, scratch: &mut [u8], budget: &mut usize) -> Input {
    loop {
        match (&*stream).read(scratch) {
            Ok(0) => return Input::Finished,
            Ok(n) if n >= *budget => return Input::Finished,
            Ok(n) => *budget -= n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Input::Pending
            }
            Err(_) => return Input::Finished,
        }
    }
}

/// Writes all of `bytes` within `timeout` in total, or fails.
///
/// A socket's write timeout (set once per connection, to the same
/// `timeout`) bounds a single `write` call, and a call that makes any
/// progress at all starts a fresh wait. A client that reads a few bytes now
/// and then could stretch one `write_all` without end. So, like a request
/// head's read deadline, a write gets a deadline: after a partial write,
/// the next call may only wait for what is left of it. In the usual case,
/// one call writes everything and nothing extra is done.
pub fn write_all_within(stream: &TcpStream, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    write_parts_within(stream, &[bytes], timeout)
}

/// [`write_all_within`] for data in several pieces (a frame header and
/// its payload; an event's framing around its shared data), under one
/// deadline. The pieces go to the kernel together, in one `writev` system
/// call when the socket has room for them all: no piece is copied to join
/// them, and the peer gets no packet holding only a header.
pub fn write_parts_within(
    stream: &TcpStream,
    parts: &[&[u8]],
    timeout: Duration,
) -> io::Result<()> {
    // The pieces still to write, on the stack: this runs for every frame.
    assert!(parts.len() <= MOST_PARTS, "at most {MOST_PARTS} pieces");
    let mut rest: [&[u8]; MOST_PARTS] = [&[]; MOST_PARTS];
    rest[..parts.len()].copy_from_slice(parts);
    let mut first = 0;
    let deadline = Instant::now() + timeout;
    let mut shortened = false;
    let mut result = Ok(());
    loop {
        while first < MOST_PARTS && rest[first].is_empty() {
            first += 1;
        }
        if first == MOST_PARTS {
            break;
        }
        // Only the pieces with bytes left: an empty one would make the
        // kernel's work longer for nothing.
        let mut slices = [IoSlice::new(&[]); MOST_PARTS];
        let mut count = 0;
        for part in rest[first..].iter().filter(|p| !p.is_empty()) {
            slices[count] = IoSlice::new(part);
            count += 1;
        }
        match (&*stream).write_vectored(&slices[..count]) {
            Ok(0) => result = Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => skip_written(&mut rest[first..], n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The socket's send timeout ran out with nothing written: the
            // same thing as the deadline below, said the same way.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                result = Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client is not reading",
                ))
            }
            Err(e) => result = Err(e),
        }
        if result.is_err() || rest.iter().all(|p| p.is_empty()) {
            break;
        }
        // A partial write: what is left may only wait for what is left of
        // the deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            result = Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client is not reading",
            ));
            break;
        }
        stream.set_write_timeout(Some(left))?;
        shortened = true;
    }
    if shortened {
        stream.set_write_timeout(Some(timeout))?;
    }
    result
}

/// The most pieces [`write_parts_within`] takes at once.
pub const MOST_PARTS: usize = 4;

/// Drops the first `written` bytes from the pieces still to write.
fn skip_written(rest: &mut [&[u8]], mut written: usize) {
    for part in rest.iter_mut() {
        let take = written.min(part.len());
        *part = &part[take..];
        written -= take;
        if written == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// Two ends of one loopback connection.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, _) = listener.accept().unwrap();
        (near, far)
    }

    // Why: a client that reads a little every few milliseconds makes each
    // write call move something, so the socket's own timeout never strikes;
    // only one deadline for the whole write stops it (lesson 01).
    #[test]
    fn a_reader_that_trickles_is_cut_off_at_the_deadline() {
        let (writer, mut reader) = pair();
        let trickle = thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let timeout = Duration::from_millis(300);
        writer.set_write_timeout(Some(timeout)).unwrap();
        // At 64 KiB every 10 ms, 64 MiB would take ten seconds.
        let bytes = vec![0u8; 64 << 20];
        let started = Instant::now();
        let result = write_all_within(&writer, &bytes, timeout);
        let took = started.elapsed();
        let error = result.expect_err("the trickling reader was not cut off");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(took < Duration::from_secs(3), "cut off after {took:?}");
        drop(writer);
        trickle.join().unwrap();
    }
}
