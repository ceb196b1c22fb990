//! The opening handshake (RFC 6455 §4.2): an HTTP request that asks to
//! switch protocols, and the `101` answer that proves the server understood.
//!
//! The proof is `Sec-WebSocket-Accept`: the client's random key with a fixed
//! GUID appended, hashed with SHA-1, in base64. It is not security; it shows
//! that the server really speaks WebSocket, so that a plain HTTP server (or a
//! cache) can never be tricked into looking like one.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::fmt;

use crate::http::{RequestHead, Response, Version};

/// RFC 6455 §1.3: the GUID every server appends to the client's key.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(client_key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha1.digest().bytes())
}

/// Why an upgrade request is refused, each with its status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// 400: not HTTP/1.1 or later (§4.1).
    OldHttp,
    /// 400: `Upgrade` does not list `websocket`.
    NoUpgradeToken,
    /// 400: `Connection` does not list `Upgrade`.
    NoConnectionUpgrade,
    /// 426: a version other than 13; the answer says which one we speak.
    UnsupportedVersion(Option<String>),
    /// 400: no `Sec-WebSocket-Key`, or not 16 bytes in base64.
    BadKey(String),
}

impl HandshakeError {
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion(_) => 426,
            _ => 400,
        }
    }

    pub fn to_response(&self) -> Response {
        let response = Response::text(
            self.status(),
            &format!("WebSocket handshake refused: {self}\n"),
        );
        match self {
            // §4.4: tell the client which versions we do speak.
            HandshakeError::UnsupportedVersion(_) => response.header("Sec-WebSocket-Version", "13"),
            _ => response,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::OldHttp => write!(f, "WebSocket needs HTTP/1.1"),
            HandshakeError::NoUpgradeToken => write!(f, "the Upgrade header must list 'websocket'"),
            HandshakeError::NoConnectionUpgrade => {
                write!(f, "the Connection header must list 'Upgrade'")
            }
            HandshakeError::UnsupportedVersion(Some(v)) => {
                write!(f, "Sec-WebSocket-Version {v:?} is not supported; use 13")
            }
            HandshakeError::UnsupportedVersion(None) => {
                write!(f, "Sec-WebSocket-Version is missing; use 13")
            }
            HandshakeError::BadKey(why) => write!(f, "Sec-WebSocket-Key {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Checks an upgrade request (the router already made sure it is a `GET`).
/// Returns the client's key.
///
/// It does not look at `Origin`. Which pages may open a WebSocket is the
/// application's policy (`app::policy`), checked before the handshake; a
/// protocol module knows what a valid handshake is, not whom to trust, and
/// the client (`client::ws`) shares this module.
pub fn check_request(head: &RequestHead) -> Result<&str, HandshakeError> {
    if head.version != Version::Http11 {
        return Err(HandshakeError::OldHttp);
    }
    // Both headers are token lists: Firefox sends "Connection: keep-alive, Upgrade".
    if !head.has_token("upgrade", "websocket") {
        return Err(HandshakeError::NoUpgradeToken);
    }
    if !head.has_token("connection", "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    match head.header("sec-websocket-version").map(str::trim) {
        Some("13") => {}
        other => {
            return Err(HandshakeError::UnsupportedVersion(
                other.map(str::to_string),
            ))
        }
    }
    let key = head
        .header("sec-websocket-key")
        .map(str::trim)
        .ok_or_else(|| HandshakeError::BadKey("is missing".into()))?;
    // §4.1: the key is 16 random bytes, base64-encoded (24 characters).
    match BASE64.decode(key) {
        Ok(bytes) if bytes.len() == 16 => {}
        Ok(bytes) => {
            return Err(HandshakeError::BadKey(format!(
                "decodes to {} bytes, not 16",
                bytes.len()
            )))
        }
        Err(_) => return Err(HandshakeError::BadKey("is not valid base64".into())),
    }
    Ok(key)
}

/// The `101 Switching Protocols` answer. No `Sec-WebSocket-Extensions`:
/// compression (permessage-deflate) is declined simply by not echoing the
/// client's offer. No `Sec-WebSocket-Protocol` either: we choose none, and
/// an empty one would make browsers fail the connection.
pub fn response(client_key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(client_key)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadLimits, HeadParser};

    #[test]
    fn the_rfc_sample_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn head(extra: &str) -> RequestHead {
        let raw = format!("GET /ws HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        HeadParser::new(HeadLimits::default())
            .feed(raw.as_bytes())
            .unwrap()
            .1
            .unwrap()
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn accepts_browsers_requests() {
        assert_eq!(check_request(&head(GOOD)), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        let firefox = GOOD.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        assert!(check_request(&head(&firefox)).is_ok());
        let with_deflate = format!(
            "{GOOD}Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        );
        assert!(check_request(&head(&with_deflate)).is_ok());
        let text = String::from_utf8(response("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(
            !text.contains("Sec-WebSocket-Extensions") && !text.contains("Sec-WebSocket-Protocol")
        );
    }

    #[test]
    fn refusals_and_their_statuses() {
        let cases = [
            (GOOD.replace("Upgrade: websocket\r\n", ""), 400),
            (
                GOOD.replace("Connection: Upgrade", "Connection: keep-alive"),
                400,
            ),
            (GOOD.replace("13", "8"), 426),
            (GOOD.replace("Sec-WebSocket-Version: 13\r\n", ""), 426),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), 400),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64!"), 400),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
        ];
        for (extra, status) in cases {
            let error = check_request(&head(&extra)).unwrap_err();
            assert_eq!(error.status(), status, "{error}");
        }
        let response = HandshakeError::UnsupportedVersion(Some("8".into())).to_response();
        assert!(response
            .headers
            .contains(&("Sec-WebSocket-Version", "13".to_string())));
    }

    #[test]
    fn any_origin_is_the_application_s_business() {
        // The handshake is the protocol only: the Origin policy is checked
        // before it (app::policy), so here any Origin is a valid handshake.
        let from = |origin: &str| head(&format!("{GOOD}Origin: {origin}\r\n"));
        assert!(check_request(&from("https://evil.example")).is_ok());
        assert!(check_request(&from("null")).is_ok());
    }
}
