//! The other side of the wire: an SSE client ([`sse`]) and a WebSocket
//! client ([`ws`]), as a library that the `sse-client` and `ws-client`
//! programs and the integration tests share.
//!
//! This module holds what both need: splitting a URL into host, port and
//! path, and reading an HTTP response head.

pub mod sse;
pub mod ws;

use std::fmt;
use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Duration;

use crate::json::{self, Json};

/// Errors a client can meet, each with a message a person can act on.
#[derive(Debug)]
pub enum ClientError {
    /// The URL is not `http://host[:port]/path` (or `ws://` for WebSocket).
    BadUrl(String),
    Io(io::Error),
    /// The server answered something other than what the protocol needs;
    /// trying again later may help.
    Refused(String),
    /// The server answered in a way that means "do not come back": an SSE
    /// client gives up instead of reconnecting (what `EventSource` does).
    Rejected(String),
    /// The connection ended.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadUrl(why) => write!(f, "bad URL: {why}"),
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Refused(why) | ClientError::Rejected(why) => write!(f, "{why}"),
            ClientError::Closed => write!(f, "the connection closed"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

/// A URL split into the parts a plain-TCP client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Url {
    /// Parses `scheme://host[:port][/path]`. Only the schemes in `allowed`
    /// are accepted; TLS (`https`, `wss`) is not part of this project.
    pub fn parse(text: &str, allowed: &[&str]) -> Result<Url, ClientError> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| ClientError::BadUrl(format!("{text:?} has no scheme")))?;
        let scheme = scheme.to_ascii_lowercase();
        if !allowed.contains(&scheme.as_str()) {
            return Err(ClientError::BadUrl(format!(
                "scheme {scheme:?} is not supported here; use {}",
                allowed.join(" or ")
            )));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            // "[::1]:3000" or "host:3000"; a bare IPv6 address has colons too.
            Some((host, port))
                if !port.contains(']') && (host.starts_with('[') || !host.contains(':')) =>
            {
                let port = port
                    .parse()
                    .map_err(|_| ClientError::BadUrl(format!("bad port {port:?}")))?;
                (host, port)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(ClientError::BadUrl(format!("{text:?} has no host")));
        }
        Ok(Url {
            scheme,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Opens a TCP connection to the URL's host and port.
    pub fn connect(&self, timeout: Duration) -> Result<TcpStream, ClientError> {
        use std::net::ToSocketAddrs;
        let mut last_error = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => return Ok(stream),
                Err(e) => last_error = Some(e),
            }
        }
        Err(ClientError::Io(last_error.unwrap_or_else(|| {
            io::Error::other("the host has no address")
        })))
    }
}

/// One line for a message of this server, the way the article's Node
/// client printed them: a label for each `type`, then the text.
pub fn describe_message(data: &str) -> String {
    let Ok(value) = json::parse(data.as_bytes()) else {
        return format!("[text] {data}");
    };
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    let number = |key: &str| {
        value
            .get(key)
            .and_then(Json::as_f64)
            .map_or(String::from("?"), |n| n.to_string())
    };
    match text("type").as_str() {
        "welcome" => format!(
            "[welcome] {} (client id {})",
            text("message"),
            number("clientId")
        ),
        "initial_data" => format!(
            "[initial data] {} at {}",
            text("message"),
            text("timestamp")
        ),
        "notification" => format!(
            "[notification] {} at {}",
            text("message"),
            text("timestamp")
        ),
        "periodic_update" => format!(
            "[periodic update] {} ({} connections)",
            text("message"),
            number("connections")
        ),
        "chat" => format!("[chat] {}: {}", text("username"), text("message")),
        "reset" => format!("[reset] {}", text("message")),
        "error" => format!("[error] {}", text("message")),
        "" => format!("[data] {data}"),
        other => format!("[{other}] {}", text("message")),
    }
}

/// A response status line and headers.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Largest response head a client accepts.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Reads a response head. Returns it with any bytes read past its end
/// (the start of the body, or the first WebSocket frames).
pub fn read_response_head(stream: &mut TcpStream) -> Result<(ResponseHead, Vec<u8>), ClientError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut scanned: usize = 0;
    let end = loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ClientError::Refused(
                    "the server did not answer in time".into(),
                ));
            }
            Err(e) => return Err(ClientError::Io(e)),
        };
        if n == 0 {
            return Err(ClientError::Refused(
                "the server closed the connection before answering".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        // Look for the blank line only in the new bytes (and the 3 before).
        let from = scanned.saturating_sub(3);
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + i + 4;
        }
        scanned = buf.len();
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(ClientError::Refused(
                "the response head is too large".into(),
            ));
        }
    };
    let text = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (version, status) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let status = match (version.starts_with("HTTP/1."), status.parse::<u16>()) {
        (true, Ok(status)) => status,
        _ => {
            return Err(ClientError::Refused(format!(
                "not an HTTP response: {status_line:?}"
            )))
        }
    };
    let reason = parts.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((
        ResponseHead {
            status,
            reason,
            headers,
        },
        buf[end..].to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:3000/events?lastEventId=3", &["http"]).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 3000, "/events?lastEventId=3")
        );
        assert_eq!(u.host_header(), "127.0.0.1:3000");
        let u = Url::parse("ws://localhost", &["ws"]).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 80, "/")
        );
        let u = Url::parse("ws://[::1]:9000?x", &["ws"]).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9000, "/?x")
        );
        assert_eq!(u.host_header(), "[::1]:9000");
        assert!(Url::parse("https://x/", &["http"]).is_err());
        assert!(Url::parse("localhost:3000", &["http"]).is_err());
        assert!(Url::parse("http://:80/", &["http"]).is_err());
        assert!(Url::parse("http://x:port/", &["http"]).is_err());
    }
}
