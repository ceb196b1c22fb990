//! Writing an HTTP/1.1 response: a status line, header lines, a blank line,
//! and the body, all in one buffer so it leaves in one `write` call.

use crate::json::Json;

/// A complete response with its body in memory. Streams (SSE, WebSocket)
/// write their own heads and do not use this type.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.as_bytes().to_vec())
    }

    /// A JSON answer. Every JSON response may be read by a page from another
    /// origin (the demo page served elsewhere, a tool), so it allows any.
    pub fn json(status: u16, value: &Json) -> Response {
        Response::new(status)
            .header("Content-Type", "application/json")
            .header("Access-Control-Allow-Origin", "*")
            .body(value.to_string().into_bytes())
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }

    /// The bytes to send. `head_only` answers a `HEAD` request: the same
    /// headers, `Content-Length` included, but no body (RFC 9110 §9.3.2).
    /// `close` adds `Connection: close`, telling the client that this is the
    /// last response on the connection.
    pub fn to_bytes(&self, head_only: bool, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\n",
                self.status,
                reason_phrase(self.status)
            )
            .as_bytes(),
        );
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        // 1xx and 204 responses carry no body and no length (RFC 9110 §8.6).
        if self.status >= 200 && self.status != 204 {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase for the status codes this server sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_status_headers_length_and_body() {
        let r = Response::text(404, "Not found\n").header("X-Test", "1");
        assert_eq!(
            String::from_utf8(r.to_bytes(false, false)).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nX-Test: 1\r\nContent-Length: 10\r\n\r\nNot found\n"
        );
    }

    #[test]
    fn head_keeps_the_length_but_drops_the_body() {
        let r = Response::text(200, "hello");
        let bytes = String::from_utf8(r.to_bytes(true, true)).unwrap();
        assert!(bytes.contains("Content-Length: 5\r\n"));
        assert!(bytes.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn no_content_has_no_length() {
        let bytes = String::from_utf8(Response::new(204).to_bytes(false, false)).unwrap();
        assert_eq!(bytes, "HTTP/1.1 204 No Content\r\n\r\n");
    }
}
