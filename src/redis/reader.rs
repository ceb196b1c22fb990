//! Reading replies, incrementally and without I/O.
//!
//! A reply arrives in as many pieces as TCP cares to cut it into: a whole
//! pipeline of replies in one `read`, or one byte at a time. The
//! [`ReplyReader`] is fed whatever bytes came ([`ReplyReader::feed`]) and
//! keeps its place between calls: the line it is in, how much of a bulk
//! string it has, and the arrays still open around it. So each byte is
//! looked at once, and any split of the same bytes gives the same replies.
//! It never touches a socket, so a test (or a debugger session) can feed it
//! bytes by hand, exactly as it does the HTTP head parser.
//!
//! A reply is read byte by byte except for the body of a bulk string,
//! which is copied in runs. Lengths are checked against [`Limits`] the
//! moment they are read, and memory is taken as bytes arrive, never from
//! an announced length: a server (or anything else on that port) that
//! announces `$1000000000` and sends three bytes costs three bytes. A
//! reply that breaks the protocol or a limit is a [`ProtocolError`] that
//! names the byte and its offset; after one, the reader refuses to go on,
//! since nothing after it can be trusted to start a reply.

use std::fmt;

use super::reply::Reply;

/// Limits on one reply. Every one of them turns a bad or hostile reply
/// into an error before it can cost more than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest bulk string, in bytes (default 16 MiB).
    pub max_bulk_len: usize,
    /// The most items in one array (default 1,048,576).
    pub max_array_len: usize,
    /// How many arrays may be open inside each other (default 8). `XREAD`
    /// needs 5; the reader itself keeps open arrays on a heap-allocated
    /// stack, but dropping or printing a reply recurses once per level.
    pub max_depth: usize,
    /// The most bytes in one reply, from its first type byte to its last
    /// LF, nested values included (default 64 MiB).
    pub max_reply_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 16 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_depth: 8,
            max_reply_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A reply that cannot be read, and where: `at` is the offset of the
/// offending byte in everything this reader was fed, counted from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub at: u64,
    pub problem: Problem,
}

/// What was wrong at [`ProtocolError::at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A byte that may not stand where it stands.
    UnexpectedByte {
        found: u8,
        expected: &'static str,
    },
    /// An integer or length that does not fit in 64 bits.
    NumberTooLarge,
    /// A length below -1 (`-1` is the null; lengths are 0 and up).
    BadLength(i64),
    BulkTooLong {
        len: i64,
        limit: usize,
    },
    ArrayTooLong {
        len: i64,
        limit: usize,
    },
    TooDeep {
        limit: usize,
    },
    ReplyTooLarge {
        limit: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at;
        match &self.problem {
            Problem::UnexpectedByte { found, expected } => write!(
                f,
                "byte {at} of the replies is {}, where {expected} was expected",
                describe(*found)
            ),
            Problem::NumberTooLarge => {
                write!(f, "the number at byte {at} does not fit in 64 bits")
            }
            Problem::BadLength(len) => write!(
                f,
                "the length {len} at byte {at} is neither -1 (null) nor 0 or more"
            ),
            Problem::BulkTooLong { len, limit } => write!(
                f,
                "the bulk string at byte {at} announces {len} bytes, over the limit of {limit} (max_bulk_len)"
            ),
            Problem::ArrayTooLong { len, limit } => write!(
                f,
                "the array at byte {at} announces {len} items, over the limit of {limit} (max_array_len)"
            ),
            Problem::TooDeep { limit } => write!(
                f,
                "the array at byte {at} is nested more than {limit} deep (max_depth)"
            ),
            Problem::ReplyTooLarge { limit } => write!(
                f,
                "the reply grows past {limit} bytes at byte {at} (max_reply_bytes)"
            ),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A byte as a person would want to see it: `0x48 'H'`, `0x0a (LF)`.
fn describe(byte: u8) -> String {
    match byte {
        b'\r' => "0x0d (CR)".to_string(),
        b'\n' => "0x0a (LF)".to_string(),
        b' '..=b'~' => format!("0x{byte:02x} '{}'", byte as char),
        _ => format!("0x{byte:02x}"),
    }
}

fn at(offset: u64, problem: Problem) -> ProtocolError {
    ProtocolError {
        at: offset,
        problem,
    }
}

/// Where the reader is inside the current value.
#[derive(Debug)]
enum State {
    /// Before a value: the next byte is its type byte.
    Start,
    /// In the line of a simple string (`+`) or an error (`-`).
    Text { kind: u8, text: Vec<u8>, cr: bool },
    /// In the line of an integer (`:`) or a length (`$`, `*`), which
    /// started at byte `start`.
    Number {
        kind: u8,
        number: Number,
        start: u64,
        cr: bool,
    },
    /// In the body of a bulk string of `len` bytes.
    Body { data: Vec<u8>, len: usize },
    /// After the body: its CR LF.
    BodyEnd { data: Vec<u8>, cr: bool },
}

/// A decimal number read digit by digit, with its sign.
#[derive(Debug, Default)]
struct Number {
    negative: bool,
    digits: usize,
    value: i64,
}

impl Number {
    fn push(&mut self, digit: u8) -> Option<()> {
        let d = i64::from(digit - b'0');
        let tens = self.value.checked_mul(10)?;
        self.value = if self.negative {
            tens.checked_sub(d)?
        } else {
            tens.checked_add(d)?
        };
        self.digits += 1;
        Some(())
    }
}

/// An array whose items are still arriving.
#[derive(Debug)]
struct OpenArray {
    len: usize,
    items: Vec<Reply>,
}

/// The incremental reply parser. One per connection: it is fed the
/// connection's bytes in order, and hands back the replies in order.
#[derive(Debug)]
pub struct ReplyReader {
    limits: Limits,
    state: State,
    /// Arrays open around the current value, outermost first.
    open: Vec<OpenArray>,
    /// The offset of the next byte, counted from the first byte fed.
    offset: u64,
    /// Bytes of the current reply so far.
    reply_bytes: usize,
    /// The error that stopped this reader, if one did.
    failed: Option<ProtocolError>,
}

impl ReplyReader {
    pub fn new(limits: Limits) -> ReplyReader {
        ReplyReader {
            limits,
            state: State::Start,
            open: Vec::new(),
            offset: 0,
            reply_bytes: 0,
            failed: None,
        }
    }

    /// True when no part of a reply has been fed: the bytes so far were
    /// whole replies.
    pub fn is_between_replies(&self) -> bool {
        self.reply_bytes == 0
    }

    /// Feeds the next bytes from the server. Returns how many bytes were
    /// used and, once they complete one, the reply. Bytes after that reply
    /// (the next replies of a pipeline) are left for the next call.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), ProtocolError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let mut used = 0;
        while used < input.len() {
            let step = match self.state {
                State::Body { .. } => self.body(&input[used..]).map(|n| (n, None)),
                _ => self.byte(input[used]).map(|value| (1, value)),
            };
            let (n, value) = step.inspect_err(|error| self.failed = Some(error.clone()))?;
            used += n;
            self.offset += n as u64;
            if let Some(reply) = value.and_then(|value| self.finish(value)) {
                return Ok((used, Some(reply)));
            }
        }
        Ok((used, None))
    }

    /// An error at the byte being looked at.
    fn here(&self, problem: Problem) -> ProtocolError {
        at(self.offset, problem)
    }

    fn unexpected(&self, found: u8, expected: &'static str) -> ProtocolError {
        self.here(Problem::UnexpectedByte { found, expected })
    }

    /// Counts `n` more bytes toward the current reply.
    fn count(&mut self, n: usize) -> Result<(), ProtocolError> {
        self.reply_bytes += n;
        if self.reply_bytes > self.limits.max_reply_bytes {
            return Err(self.here(Problem::ReplyTooLarge {
                limit: self.limits.max_reply_bytes,
            }));
        }
        Ok(())
    }

    /// Copies as much of a bulk string's body as `input` holds.
    fn body(&mut self, input: &[u8]) -> Result<usize, ProtocolError> {
        let State::Body { data, len } = &mut self.state else {
            return Ok(0);
        };
        let take = (*len - data.len()).min(input.len());
        data.extend_from_slice(&input[..take]);
        if data.len() == *len {
            let data = std::mem::take(data);
            self.state = State::BodyEnd { data, cr: false };
        }
        self.count(take)?;
        Ok(take)
    }

    /// Reads one byte outside a bulk string's body. Returns a value when
    /// the byte completes one (which may in turn complete arrays).
    fn byte(&mut self, b: u8) -> Result<Option<Reply>, ProtocolError> {
        self.count(1)?;
        let (state, value) = match std::mem::replace(&mut self.state, State::Start) {
            State::Start => (self.type_byte(b)?, None),
            State::Text { kind, text, cr } => self.text_byte(kind, text, cr, b)?,
            State::Number {
                kind,
                number,
                start,
                cr,
            } => self.number_byte(kind, number, start, cr, b)?,
            State::BodyEnd { data, cr: false } if b == b'\r' => {
                (State::BodyEnd { data, cr: true }, None)
            }
            State::BodyEnd { data, cr: true } if b == b'\n' => {
                (State::Start, Some(Reply::Bulk(data)))
            }
            State::BodyEnd { cr, .. } => {
                let expected = if cr {
                    "LF after a bulk string's CR"
                } else {
                    "CR right after a bulk string's announced length of bytes"
                };
                return Err(self.unexpected(b, expected));
            }
            State::Body { .. } => unreachable!("bodies are read by ReplyReader::body"),
        };
        self.state = state;
        Ok(value)
    }

    /// The first byte of a value says what it is.
    fn type_byte(&self, b: u8) -> Result<State, ProtocolError> {
        match b {
            b'+' | b'-' => Ok(State::Text {
                kind: b,
                text: Vec::new(),
                cr: false,
            }),
            b':' | b'$' | b'*' => Ok(State::Number {
                kind: b,
                number: Number::default(),
                start: self.offset,
                cr: false,
            }),
            _ => Err(self.unexpected(b, "a RESP2 type byte (+ - : $ *)")),
        }
    }

    /// A byte of a simple string or error line.
    fn text_byte(
        &self,
        kind: u8,
        mut text: Vec<u8>,
        cr: bool,
        b: u8,
    ) -> Result<(State, Option<Reply>), ProtocolError> {
        if cr {
            if b != b'\n' {
                return Err(self.unexpected(b, "LF after CR"));
            }
            let text = String::from_utf8_lossy(&text).into_owned();
            let value = if kind == b'+' {
                Reply::Simple(text)
            } else {
                Reply::Error(text)
            };
            return Ok((State::Start, Some(value)));
        }
        match b {
            b'\r' => {
                return Ok((
                    State::Text {
                        kind,
                        text,
                        cr: true,
                    },
                    None,
                ))
            }
            b'\n' => return Err(self.unexpected(b, "CR before LF (lines end with CR LF)")),
            _ => text.push(b),
        }
        Ok((State::Text { kind, text, cr }, None))
    }

    /// A byte of an integer or length line.
    fn number_byte(
        &mut self,
        kind: u8,
        mut number: Number,
        start: u64,
        cr: bool,
        b: u8,
    ) -> Result<(State, Option<Reply>), ProtocolError> {
        if cr {
            if b != b'\n' {
                return Err(self.unexpected(b, "LF after CR"));
            }
            return self.number_done(kind, number.value, start);
        }
        match b {
            b'0'..=b'9' => {
                if number.push(b).is_none() {
                    return Err(self.here(Problem::NumberTooLarge));
                }
            }
            b'-' if number.digits == 0 && !number.negative => number.negative = true,
            b'\r' if number.digits > 0 => {
                let state = State::Number {
                    kind,
                    number,
                    start,
                    cr: true,
                };
                return Ok((state, None));
            }
            _ if number.digits == 0 => return Err(self.unexpected(b, "a digit")),
            _ => return Err(self.unexpected(b, "a digit or the CR LF ending a number")),
        }
        let state = State::Number {
            kind,
            number,
            start,
            cr,
        };
        Ok((state, None))
    }

    /// A whole integer or length line has arrived: what it starts.
    fn number_done(
        &mut self,
        kind: u8,
        n: i64,
        start: u64,
    ) -> Result<(State, Option<Reply>), ProtocolError> {
        let null = match kind {
            b':' => return Ok((State::Start, Some(Reply::Integer(n)))),
            b'$' => Reply::NullBulk,
            _ => Reply::NullArray,
        };
        let len = match n {
            -1 => return Ok((State::Start, Some(null))),
            ..=-2 => return Err(at(start, Problem::BadLength(n))),
            // An i64 of 0 and up fits a usize on the 64-bit machines this
            // runs on; anywhere else a length that does not is too long.
            _ => usize::try_from(n).unwrap_or(usize::MAX),
        };
        if kind == b'$' {
            self.bulk_header(len, n, start)
        } else {
            self.array_header(len, n, start)
        }
    }

    /// `$len`: a bulk string's body follows.
    fn bulk_header(
        &mut self,
        len: usize,
        n: i64,
        start: u64,
    ) -> Result<(State, Option<Reply>), ProtocolError> {
        let limits = self.limits;
        if len > limits.max_bulk_len {
            let limit = limits.max_bulk_len;
            return Err(at(start, Problem::BulkTooLong { len: n, limit }));
        }
        // The whole body and its CR LF must fit in the reply: refuse now,
        // not after reading most of it.
        if self.reply_bytes.saturating_add(len).saturating_add(2) > limits.max_reply_bytes {
            let limit = limits.max_reply_bytes;
            return Err(at(start, Problem::ReplyTooLarge { limit }));
        }
        let data = Vec::new();
        let state = match len {
            0 => State::BodyEnd { data, cr: false },
            _ => State::Body { data, len },
        };
        Ok((state, None))
    }

    /// `*len`: that many values follow, as the array's items.
    fn array_header(
        &mut self,
        len: usize,
        n: i64,
        start: u64,
    ) -> Result<(State, Option<Reply>), ProtocolError> {
        if len > self.limits.max_array_len {
            let limit = self.limits.max_array_len;
            return Err(at(start, Problem::ArrayTooLong { len: n, limit }));
        }
        if len == 0 {
            return Ok((State::Start, Some(Reply::Array(Vec::new()))));
        }
        if self.open.len() >= self.limits.max_depth {
            let limit = self.limits.max_depth;
            return Err(at(start, Problem::TooDeep { limit }));
        }
        let items = Vec::new();
        self.open.push(OpenArray { len, items });
        Ok((State::Start, None))
    }

    /// A value is complete: it is the reply, or an item of the innermost
    /// open array, which may complete that array, and so on outward.
    fn finish(&mut self, mut value: Reply) -> Option<Reply> {
        while let Some(top) = self.open.last_mut() {
            top.items.push(value);
            if top.items.len() < top.len {
                return None;
            }
            let done = self.open.pop()?;
            value = Reply::Array(done.items);
        }
        self.reply_bytes = 0;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Reply {
        Reply::Bulk(bytes.to_vec())
    }

    fn array(items: Vec<Reply>) -> Reply {
        Reply::Array(items)
    }

    /// Every reply in `input`, fed in pieces of `chunk` bytes.
    fn read_all(input: &[u8], chunk: usize, limits: Limits) -> (Vec<Reply>, Option<ProtocolError>) {
        let mut reader = ReplyReader::new(limits);
        let mut replies = Vec::new();
        for piece in input.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                match reader.feed(rest) {
                    Ok((used, reply)) => {
                        replies.extend(reply);
                        rest = &rest[used..];
                    }
                    Err(error) => return (replies, Some(error)),
                }
            }
        }
        (replies, None)
    }

    fn one(input: &[u8]) -> Result<Reply, ProtocolError> {
        let (mut replies, error) = read_all(input, input.len().max(1), Limits::default());
        if let Some(error) = error {
            return Err(error);
        }
        assert_eq!(replies.len(), 1, "{:?}", String::from_utf8_lossy(input));
        Ok(replies.remove(0))
    }

    fn error_of(input: &[u8], limits: Limits) -> ProtocolError {
        read_all(input, input.len(), limits)
            .1
            .unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(input)))
    }

    /// Examples of each reply type, with what they read as.
    fn examples() -> Vec<(&'static [u8], Reply)> {
        vec![
            (b"+OK\r\n", Reply::Simple("OK".into())),
            (b"+\r\n", Reply::Simple(String::new())),
            (
                b"-ERR unknown command 'FOO'\r\n",
                Reply::Error("ERR unknown command 'FOO'".into()),
            ),
            (b":0\r\n", Reply::Integer(0)),
            (b":-42\r\n", Reply::Integer(-42)),
            (b":9223372036854775807\r\n", Reply::Integer(i64::MAX)),
            (b":-9223372036854775808\r\n", Reply::Integer(i64::MIN)),
            (b"$5\r\nhello\r\n", bulk(b"hello")),
            (b"$0\r\n\r\n", bulk(b"")),
            (b"$4\r\na\r\nb\r\n", bulk(b"a\r\nb")),
            (b"$3\r\n\x00\xff\r\r\n", bulk(b"\x00\xff\r")),
            (b"$-1\r\n", Reply::NullBulk),
            (b"*0\r\n", array(vec![])),
            (b"*-1\r\n", Reply::NullArray),
            (
                b"*3\r\n:1\r\n$1\r\nx\r\n+y\r\n",
                array(vec![
                    Reply::Integer(1),
                    bulk(b"x"),
                    Reply::Simple("y".into()),
                ]),
            ),
            (
                b"*4\r\n$-1\r\n*-1\r\n*0\r\n-E\r\n",
                array(vec![
                    Reply::NullBulk,
                    Reply::NullArray,
                    array(vec![]),
                    Reply::Error("E".into()),
                ]),
            ),
        ]
    }

    /// The reply `XREAD` gives for one stream with two entries: arrays
    /// five deep.
    fn xread_reply() -> (&'static [u8], Reply) {
        let entry = |id: &[u8], data: &[u8]| {
            array(vec![
                bulk(id),
                array(vec![bulk(b"id"), bulk(&id[..1]), bulk(b"data"), bulk(data)]),
            ])
        };
        (
            b"*1\r\n*2\r\n$10\r\nrbh:events\r\n*2\r\n\
              *2\r\n$3\r\n1-0\r\n*4\r\n$2\r\nid\r\n$1\r\n1\r\n$4\r\ndata\r\n$2\r\nhi\r\n\
              *2\r\n$3\r\n2-0\r\n*4\r\n$2\r\nid\r\n$1\r\n2\r\n$4\r\ndata\r\n$0\r\n\r\n",
            array(vec![array(vec![
                bulk(b"rbh:events"),
                array(vec![entry(b"1-0", b"hi"), entry(b"2-0", b"")]),
            ])]),
        )
    }

    #[test]
    fn every_reply_type() {
        for (input, expected) in examples() {
            assert_eq!(
                one(input).unwrap(),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn nested_arrays() {
        let (input, expected) = xread_reply();
        assert_eq!(one(input).unwrap(), expected);
        assert_eq!(
            one(b"*2\r\n*1\r\n*1\r\n:1\r\n*0\r\n").unwrap(),
            array(vec![
                array(vec![array(vec![Reply::Integer(1)])]),
                array(vec![])
            ])
        );
    }

    #[test]
    fn simple_strings_that_are_not_utf8_are_shown_not_refused() {
        assert_eq!(
            one(b"+caf\xe9\r\n").unwrap(),
            Reply::Simple("caf\u{fffd}".into())
        );
    }

    #[test]
    fn a_pipeline_of_replies_comes_out_one_at_a_time() {
        let mut reader = ReplyReader::new(Limits::default());
        let input = b"+OK\r\n:1\r\n$1\r\na\r\n";
        assert!(reader.is_between_replies());
        assert_eq!(
            reader.feed(input).unwrap(),
            (5, Some(Reply::Simple("OK".into())))
        );
        assert_eq!(
            reader.feed(&input[5..]).unwrap(),
            (4, Some(Reply::Integer(1)))
        );
        assert_eq!(reader.feed(&input[9..11]).unwrap(), (2, None));
        assert!(!reader.is_between_replies());
        assert_eq!(reader.feed(&input[11..]).unwrap(), (5, Some(bulk(b"a"))));
        assert!(reader.is_between_replies());
    }

    #[test]
    fn any_split_of_the_input_gives_the_same_replies() {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for (bytes, reply) in examples().into_iter().chain([xread_reply()]) {
            input.extend_from_slice(bytes);
            expected.push(reply);
        }
        for chunk in 1..=input.len() {
            let (replies, error) = read_all(&input, chunk, Limits::default());
            assert_eq!(error, None, "chunk {chunk}");
            assert_eq!(replies, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn any_split_of_a_bad_input_gives_the_same_error() {
        let input = b"+OK\r\n*2\r\n$3\r\nabc\r\n:12x\r\n";
        let whole = error_of(input, Limits::default());
        assert_eq!(whole.at, 21);
        for chunk in 1..=input.len() {
            let (replies, error) = read_all(input, chunk, Limits::default());
            assert_eq!(replies, vec![Reply::Simple("OK".into())], "chunk {chunk}");
            assert_eq!(error.as_ref(), Some(&whole), "chunk {chunk}");
        }
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete_not_wrong() {
        let (input, expected) = xread_reply();
        for end in 0..input.len() {
            let (replies, error) = read_all(&input[..end], 7, Limits::default());
            assert!(replies.is_empty() && error.is_none(), "prefix of {end}");
        }
        assert_eq!(read_all(input, 7, Limits::default()).0, vec![expected]);
    }

    #[test]
    fn garbage_names_the_byte_and_where_it_is() {
        let cases: [(&[u8], u64, &str); 14] = [
            (b"HTTP/1.1 400 Bad Request\r\n", 0, "byte 0 of the replies is 0x48 'H', where a RESP2 type byte (+ - : $ *) was expected"),
            (b"%1\r\n", 0, "0x25 '%'"), // a RESP3 map
            (b"+OK\n", 3, "0x0a (LF), where CR before LF"),
            (b"+OK\rX", 4, "0x58 'X', where LF after CR"),
            (b":12a\r\n", 3, "0x61 'a', where a digit or the CR LF"),
            (b":\r\n", 1, "0x0d (CR), where a digit was expected"),
            (b":-\r\n", 2, "0x0d (CR), where a digit"),
            (b":--1\r\n", 2, "0x2d '-', where a digit"),
            (b":1-\r\n", 2, "0x2d '-'"),
            (b":1 \r\n", 2, "0x20 ' '"),
            (b"$3\r\nabcd\r\n", 7, "0x64 'd', where CR right after a bulk string's announced length"),
            (b"$3\r\nabc\rX", 8, "0x58 'X', where LF after a bulk string's CR"),
            (b"*1\r\n\x00", 4, "byte 4 of the replies is 0x00, where"),
            (b":1\r\r\n", 3, "0x0d (CR), where LF after CR"),
        ];
        for (input, at, message) in cases {
            let error = error_of(input, Limits::default());
            assert_eq!(
                error.at,
                at,
                "{:?}: {error}",
                String::from_utf8_lossy(input)
            );
            assert!(
                error.to_string().contains(message),
                "{:?}: {error}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn numbers_and_lengths_out_of_range() {
        let too_large = error_of(b":9223372036854775808\r\n", Limits::default());
        assert_eq!(too_large.problem, Problem::NumberTooLarge);
        assert_eq!(too_large.at, 19);
        let too_small = error_of(b":-9223372036854775809\r\n", Limits::default());
        assert_eq!(too_small.problem, Problem::NumberTooLarge);
        for input in [&b"$-2\r\n"[..], b"*-2\r\n", b"$-9223372036854775808\r\n"] {
            let error = error_of(input, Limits::default());
            assert!(matches!(error.problem, Problem::BadLength(_)), "{error}");
            assert_eq!(error.at, 0);
        }
        assert!(error_of(b"*1\r\n$-7\r\n", Limits::default())
            .to_string()
            .contains("the length -7 at byte 4 is neither -1 (null) nor 0 or more"));
    }

    fn small() -> Limits {
        Limits {
            max_bulk_len: 10,
            max_array_len: 3,
            max_depth: 2,
            max_reply_bytes: 40,
        }
    }

    #[test]
    fn each_limit_is_an_error_at_the_value_that_breaks_it() {
        // Just within every limit.
        assert!(read_all(b"$10\r\n0123456789\r\n", 1, small()).1.is_none());
        assert!(
            read_all(b"*3\r\n:1\r\n:2\r\n*2\r\n*0\r\n:3\r\n", 1, small())
                .1
                .is_none()
        );
        let cases: [(&[u8], u64, Problem); 5] = [
            (
                b"+OK\r\n$11\r\n",
                5,
                Problem::BulkTooLong { len: 11, limit: 10 },
            ),
            (
                b"*1\r\n*4\r\n",
                4,
                Problem::ArrayTooLong { len: 4, limit: 3 },
            ),
            (b"*1\r\n*1\r\n*1\r\n", 8, Problem::TooDeep { limit: 2 }),
            // 41 bytes of simple string: the 41st byte breaks the limit.
            (&[b'+'; 45], 40, Problem::ReplyTooLarge { limit: 40 }),
            // A bulk string within its own limit whose body would not fit
            // in the reply's: refused at its header, before its body.
            (
                b"*3\r\n$10\r\n0123456789\r\n:123456\r\n$10\r\n",
                30,
                Problem::ReplyTooLarge { limit: 40 },
            ),
        ];
        for (input, at, problem) in cases {
            for chunk in [1, 3, input.len()] {
                let error = read_all(input, chunk, small()).1.expect("an error");
                assert_eq!((error.at, &error.problem), (at, &problem), "{error}");
            }
        }
    }

    #[test]
    fn the_reply_limit_counts_each_reply_on_its_own() {
        // Three replies of 30 bytes each: 90 bytes, but each is within 40.
        let one = b"$23\r\n01234567890123456789012\r\n";
        assert_eq!(one.len(), 30);
        let input = [&one[..], one, one].concat();
        let limits = Limits {
            max_bulk_len: 100,
            ..small()
        };
        let (replies, error) = read_all(&input, 4, limits);
        assert_eq!((replies.len(), error), (3, None));
    }

    #[test]
    fn memory_follows_the_bytes_that_came_not_the_length_announced() {
        let limits = Limits {
            max_bulk_len: 1 << 30,
            max_reply_bytes: 1 << 31,
            ..Limits::default()
        };
        let mut reader = ReplyReader::new(limits);
        assert_eq!(reader.feed(b"$1000000000\r\nabc").unwrap(), (16, None));
        let State::Body { data, len } = &reader.state else {
            panic!("not in a body: {:?}", reader.state);
        };
        assert_eq!((data.len(), *len), (3, 1_000_000_000));
        assert!(data.capacity() < 1024, "{} bytes taken", data.capacity());
        // The same for arrays: a million items announced, none taken yet.
        let mut reader = ReplyReader::new(Limits::default());
        reader.feed(b"*1000000\r\n:1\r\n").unwrap();
        assert!(reader.open[0].items.capacity() < 1024);
    }

    #[test]
    fn after_an_error_the_reader_stays_stopped() {
        let mut reader = ReplyReader::new(Limits::default());
        let error = reader.feed(b"?").unwrap_err();
        assert_eq!(reader.feed(b"+OK\r\n"), Err(error));
    }

    /// A small generator with a fixed seed, so a failure repeats.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_garbage_is_an_error_or_replies_never_a_panic() {
        // Mostly bytes that mean something in RESP, so the garbage gets
        // past the first byte often.
        let alphabet = b"+-:$*\r\n0123456789-1ab\x00";
        let mut rng = XorShift(0x5eed_1234_abcd_ef01);
        for _ in 0..20_000 {
            let len = rng.below(40);
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let chunk = 1 + rng.below(8);
            let (_, error) = read_all(&input, chunk, small());
            if let Some(error) = error {
                assert!(error.at < input.len() as u64, "{error}");
                assert_eq!(error, error_of(&input, small()), "split changed the error");
            }
        }
    }

    #[test]
    fn every_single_byte_change_to_a_valid_reply_is_handled() {
        let (input, _) = xread_reply();
        for at in 0..input.len() {
            for replacement in [b'\r', b'\n', b'*', b'$', b'-', b'9', b'x', 0] {
                let mut changed = input.to_vec();
                changed[at] = replacement;
                // Replies or an error, never a panic; and an error is never
                // past the end.
                if let (_, Some(error)) = read_all(&changed, 5, Limits::default()) {
                    assert!(error.at < changed.len() as u64);
                }
            }
        }
    }
}
