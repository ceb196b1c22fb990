//! Parsing an HTTP/1.1 request head (RFC 9112 §2–§5), incrementally.
//!
//! The bytes of a request arrive in pieces of any size: the whole head in one
//! `read`, or (from a slow or hostile client) one byte at a time. The
//! [`HeadParser`] is fed those pieces as they come and remembers where it
//! is, so each byte is looked at once: a head trickled in byte by byte costs
//! linear time, never the quadratic cost of re-scanning the buffer from the
//! start on every read. It touches no socket: a test, or a debugger session,
//! can feed it bytes directly.

use super::HttpError;

/// Size limits for a request head. Each maps to one status code when exceeded.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Request line plus header lines, line ends included (`431`).
    pub max_head_bytes: usize,
    /// Number of header fields (`431`).
    pub max_headers: usize,
    /// Length of the request target (`414`).
    pub max_uri_bytes: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request line and header fields. The body, if any, is still on
/// the socket: [`super::Connection::read_body`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHead {
    pub method: String,
    /// The request target exactly as sent, e.g. `/events?lastEventId=3`.
    pub target: String,
    pub version: Version,
    /// Header fields in the order they came; names keep their spelling, and
    /// [`RequestHead::header`] compares them case-insensitively (RFC 9110 §5.1).
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The value of the first header field called `name`, any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, for fields that may be repeated.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when a comma-separated header (such as `Connection` or `Upgrade`)
    /// lists `token`, compared case-insensitively across every copy of the
    /// field: `Connection: keep-alive, Upgrade` contains `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The path part of the target, before any `?`.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The value of `key` in the query string, if present (not percent-decoded:
    /// the values this server reads from queries are plain numbers).
    pub fn query_param(&self, key: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then_some(v)
        })
    }

    /// Whether the connection stays open after this request: HTTP/1.1
    /// defaults to yes, HTTP/1.0 to no (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.has_token("connection", "close"),
            Version::Http10 => self.has_token("connection", "keep-alive"),
        }
    }
}

/// Where a request line or header line is being collected.
#[derive(Debug)]
pub struct HeadParser {
    limits: HeadLimits,
    /// The line being collected, without its line end.
    line: Vec<u8>,
    /// Bytes of the head consumed so far, line ends included.
    seen: usize,
    request_line: Option<(String, String, Version)>,
    headers: Vec<(String, String)>,
}

impl HeadParser {
    pub fn new(limits: HeadLimits) -> HeadParser {
        HeadParser {
            limits,
            line: Vec::new(),
            seen: 0,
            request_line: None,
            headers: Vec::new(),
        }
    }

    /// True until the first byte of a head has been fed.
    pub fn is_untouched(&self) -> bool {
        self.seen == 0
    }

    /// Feeds the next bytes from the connection. Returns how many bytes
    /// were used and, once the blank line ending the head has been seen, the
    /// head. Bytes after the head (a body, or a pipelined request) are left
    /// unused for the caller.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<RequestHead>), HttpError> {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            match rest.iter().position(|&b| b == b'\n') {
                None => {
                    self.take(rest)?;
                    return Ok((input.len(), None));
                }
                Some(newline) => {
                    self.take(&rest[..newline])?;
                    used += newline + 1;
                    // The LF counts toward the head's size too.
                    self.seen += 1;
                    if self.seen > self.limits.max_head_bytes {
                        return Err(HttpError::HeadTooLarge {
                            limit: self.limits.max_head_bytes,
                        });
                    }
                    if let Some(head) = self.end_line()? {
                        return Ok((used, Some(head)));
                    }
                }
            }
        }
        Ok((used, None))
    }

    /// Appends part of a line, checking the limits before it is stored.
    fn take(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        self.seen += bytes.len();
        if self.request_line.is_none() && self.line.len() + bytes.len() > self.max_request_line() {
            return Err(HttpError::UriTooLong {
                limit: self.limits.max_uri_bytes,
            });
        }
        if self.seen > self.limits.max_head_bytes {
            return Err(HttpError::HeadTooLarge {
                limit: self.limits.max_head_bytes,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// The longest request line that can hold a target within the limit:
    /// the target, the longest method we know, "HTTP/1.1", two spaces, a CR.
    fn max_request_line(&self) -> usize {
        self.limits.max_uri_bytes + "OPTIONS".len() + " HTTP/1.1".len() + 2
    }

    /// A whole line has arrived (its LF already consumed).
    fn end_line(&mut self) -> Result<Option<RequestHead>, HttpError> {
        // RFC 9112 §2.2: a line ends with CRLF, and a bare LF is accepted too.
        // A CR anywhere else is refused: it is how request smuggling starts.
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.contains(&b'\r') {
            return Err(HttpError::BadRequest("bare CR in the request head".into()));
        }
        if self.request_line.is_none() {
            if line.is_empty() {
                // RFC 9112 §2.2: empty lines before the request line are ignored.
                return Ok(None);
            }
            self.request_line = Some(parse_request_line(&line, &self.limits)?);
            return Ok(None);
        }
        if line.is_empty() {
            let (method, target, version) = self.request_line.take().expect("checked above");
            let headers = std::mem::take(&mut self.headers);
            return Ok(Some(RequestHead {
                method,
                target,
                version,
                headers,
            }));
        }
        if self.headers.len() == self.limits.max_headers {
            return Err(HttpError::TooManyHeaders {
                limit: self.limits.max_headers,
            });
        }
        self.headers.push(parse_header_line(&line)?);
        self.line = line; // keep the allocation for the next line
        self.line.clear();
        Ok(None)
    }
}

/// RFC 9110 §5.6.2: the characters allowed in a method or header name.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request_line(
    line: &[u8],
    limits: &HeadLimits,
) -> Result<(String, String, Version), HttpError> {
    // RFC 9112 §3: method SP request-target SP HTTP-version, single spaces.
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest(
            "the request line must be: METHOD SP TARGET SP HTTP/1.1".into(),
        ));
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(HttpError::BadRequest(
            "the method is not a valid token".into(),
        ));
    }
    if target.len() > limits.max_uri_bytes {
        return Err(HttpError::UriTooLong {
            limit: limits.max_uri_bytes,
        });
    }
    if target.is_empty() || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequest(
            "the request target is empty or has a character that must be percent-encoded".into(),
        ));
    }
    let target = normalize_target(target)?;
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HttpError::VersionNotSupported);
        }
        _ => {
            return Err(HttpError::BadRequest(
                "the HTTP version is malformed".into(),
            ))
        }
    };
    // Both parts were checked to be ASCII above.
    Ok((
        String::from_utf8_lossy(method).into_owned(),
        target,
        version,
    ))
}

/// Accepts the target forms a server sees (RFC 9112 §3.2): origin-form
/// (`/path?query`), asterisk-form (`*`, for `OPTIONS`), and absolute-form
/// (`http://host/path`, which servers must accept), reduced to origin-form.
fn normalize_target(target: &[u8]) -> Result<String, HttpError> {
    let text = String::from_utf8_lossy(target);
    if text.starts_with('/') || text == "*" {
        return Ok(text.into_owned());
    }
    for scheme in ["http://", "https://"] {
        if text.len() > scheme.len() && text[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let after_authority = &text[scheme.len()..];
            return Ok(match after_authority.find(['/', '?']) {
                Some(i) if after_authority[i..].starts_with('/') => {
                    after_authority[i..].to_string()
                }
                Some(i) => format!("/{}", &after_authority[i..]),
                None => "/".to_string(),
            });
        }
    }
    Err(HttpError::BadRequest(
        "the request target must start with '/'".into(),
    ))
}

fn parse_header_line(line: &[u8]) -> Result<(String, String), HttpError> {
    if line[0] == b' ' || line[0] == b'\t' {
        // RFC 9112 §5.2: obsolete line folding; a server may refuse it.
        return Err(HttpError::BadRequest(
            "obsolete header line folding is not accepted".into(),
        ));
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(HttpError::BadRequest("a header line has no ':'".into()));
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        // This also catches "Name : value": RFC 9112 §5.1 says whitespace
        // before the colon must be refused with 400.
        return Err(HttpError::BadRequest(format!(
            "invalid header name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    // RFC 9110 §5.5: field values are visible characters, spaces, tabs and
    // obs-text; no other control characters, NUL above all.
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HttpError::BadRequest(format!(
            "header {:?} has a control character in its value",
            String::from_utf8_lossy(name)
        )));
    }
    let value = value.trim_ascii();
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// How the body of a request is delimited (RFC 9112 §6.3).
pub fn body_length(head: &RequestHead) -> Result<usize, HttpError> {
    let has_te = head.header("transfer-encoding").is_some();
    let lengths: Vec<&str> = head.header_values("content-length").collect();
    if has_te && !lengths.is_empty() {
        // The classic request-smuggling ambiguity: refuse it outright.
        return Err(HttpError::BadRequest(
            "both Transfer-Encoding and Content-Length are present".into(),
        ));
    }
    if has_te {
        return Err(HttpError::NotImplemented(
            "Transfer-Encoding is not supported; send a Content-Length".into(),
        ));
    }
    let mut length = None;
    // Repeated fields, or one field like "5, 5", must all agree (RFC 9110 §8.6).
    for value in lengths.iter().flat_map(|v| v.split(',')) {
        let value = value.trim();
        let parsed = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            value.parse::<usize>().ok()
        } else {
            None
        };
        let Some(n) = parsed else {
            return Err(HttpError::BadRequest(format!(
                "invalid Content-Length {value:?}"
            )));
        };
        if length.is_some_and(|previous| previous != n) {
            return Err(HttpError::BadRequest(
                "conflicting Content-Length values".into(),
            ));
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

/// Checks that apply once the whole head is known.
pub fn check_head(head: &RequestHead) -> Result<(), HttpError> {
    // RFC 9112 §3.2: an HTTP/1.1 request carries a Host field, and no
    // request of any version may carry two.
    match head.header_values("host").count() {
        0 if head.version == Version::Http11 => Err(HttpError::BadRequest(
            "an HTTP/1.1 request must carry a Host header".into(),
        )),
        0 | 1 => Ok(()),
        _ => Err(HttpError::BadRequest(
            "a request may carry only one Host header".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<(usize, Option<RequestHead>), HttpError> {
        HeadParser::new(HeadLimits::default()).feed(bytes)
    }

    fn head(bytes: &[u8]) -> RequestHead {
        parse_all(bytes).unwrap().1.expect("complete head")
    }

    #[test]
    fn parses_a_curl_request() {
        let raw = b"GET /events?lastEventId=7 HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
        let (used, h) = parse_all(raw).unwrap();
        let h = h.unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(h.method, "GET");
        assert_eq!(h.path(), "/events");
        assert_eq!(h.query_param("lastEventId"), Some("7"));
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.header("HOST"), Some("127.0.0.1:3000"));
        assert_eq!(h.header("accept"), Some("*/*"));
        assert!(h.keep_alive());
    }

    #[test]
    fn leaves_the_body_and_the_next_request_unread() {
        let raw = b"POST /trigger-event HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n";
        let (used, h) = parse_all(raw).unwrap();
        assert_eq!(&raw[used..], b"{}GET / HTTP/1.1\r\n");
        assert_eq!(body_length(&h.unwrap()).unwrap(), 2);
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_head() {
        let raw = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Long: 0123456789\r\n\r\n";
        let mut parser = HeadParser::new(HeadLimits::default());
        for (i, byte) in raw.iter().enumerate() {
            let (used, done) = parser.feed(std::slice::from_ref(byte)).unwrap();
            assert_eq!(used, 1);
            assert_eq!(done.is_some(), i == raw.len() - 1);
            if let Some(h) = done {
                assert_eq!(h, head(raw));
            }
        }
    }

    #[test]
    fn accepts_bare_lf_and_leading_empty_lines() {
        let h = head(b"\r\n\nGET / HTTP/1.0\nHost: x\n\n");
        assert_eq!(h.version, Version::Http10);
        assert!(!h.keep_alive());
    }

    #[test]
    fn token_lists_are_read_like_firefox_sends_them() {
        let h = head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n");
        assert!(h.has_token("connection", "upgrade"));
        assert!(h.has_token("upgrade", "websocket"));
        assert!(!h.has_token("connection", "close"));
    }

    #[test]
    fn absolute_form_is_reduced_to_a_path() {
        assert_eq!(
            head(b"GET http://example.com/a?b HTTP/1.1\r\nHost: x\r\n\r\n").target,
            "/a?b"
        );
        assert_eq!(
            head(b"GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n").target,
            "/"
        );
        assert_eq!(
            head(b"GET http://example.com?q HTTP/1.1\r\nHost: x\r\n\r\n").target,
            "/?q"
        );
    }

    fn status_of(raw: &[u8]) -> u16 {
        match parse_all(raw) {
            Err(e) => e.status(),
            Ok((_, Some(h))) => match check_head(&h).and_then(|_| body_length(&h)) {
                Err(e) => e.status(),
                Ok(_) => 200,
            },
            Ok((_, None)) => 0,
        }
    }

    #[test]
    fn each_malformation_has_its_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200),
            (b"GET  / HTTP/1.1\r\n\r\n", 400),
            (b"GET /\r\n\r\n", 400),
            (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
            (b"G(T / HTTP/1.1\r\n\r\n", 400),
            (b"GET nopath HTTP/1.1\r\n\r\n", 400),
            (b"GET /a\x01b HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / HTTP/1\r\n\r\n", 400),
            (b"GET / http/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400), // no Host
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.0\r\n\r\n", 200), // HTTP/1.0 needs no Host
            (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400), // but never two
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", 200),
        ];
        for (raw, want) in cases {
            assert_eq!(status_of(raw), *want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn limits_give_414_and_431() {
        let limits = HeadLimits::default();
        let long_target = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(limits.max_uri_bytes)
        );
        assert_eq!(status_of(long_target.as_bytes()), 414);
        let fits = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(limits.max_uri_bytes - 1)
        );
        assert_eq!(status_of(fits.as_bytes()), 200);
        // A request line that never ends is refused once it passes the limit,
        // without waiting for its end.
        let endless = vec![b'a'; 20_000];
        assert_eq!(parse_all(&endless).unwrap_err().status(), 414);

        let big_header = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "v".repeat(17_000)
        );
        assert_eq!(status_of(big_header.as_bytes()), 431);
        let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..100 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(status_of(many.as_bytes()), 431);
    }

    #[test]
    fn a_head_fed_byte_by_byte_costs_linear_time() {
        // Count the work instead of timing it: each call must use every byte
        // it is given and the parser must never hold more than one line.
        let mut raw = String::from("GET / HTTP/1.1\r\n");
        for i in 0..90 {
            raw.push_str(&format!("X-Header-{i}: {}\r\n", "v".repeat(100)));
        }
        raw.push_str("Host: x\r\n\r\n");
        let mut parser = HeadParser::new(HeadLimits::default());
        let mut longest_line = 0;
        for byte in raw.as_bytes() {
            let (used, _) = parser.feed(std::slice::from_ref(byte)).unwrap();
            assert_eq!(used, 1);
            longest_line = longest_line.max(parser.line.len());
        }
        assert!(
            longest_line < 130,
            "the parser buffered {longest_line} bytes"
        );
    }
}
