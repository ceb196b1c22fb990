//! A WebSocket client: the handshake from the client's side (a fresh random
//! key, and a check of the server's answer), then the same protocol core
//! as the server's (`websocket::protocol`), in the client's role: it masks
//! every frame, answers pings and closes, and refuses to send after a close.
//! Only the handshake and the reading loop are the client's own.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::{read_response_head, ClientError, Url};
use crate::random;
use crate::websocket::frame::OpCode;
use crate::websocket::handshake::accept_key;
use crate::websocket::message::{CloseCode, CloseFrame, Event, Role};
use crate::websocket::protocol::{Message, Protocol};
use crate::websocket::session::{Link, LinkError};

/// A complete message from the server, or its close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
    /// The server closed (the core has answered); its close frame, if it
    /// had a code.
    Closed(Option<CloseFrame>),
}

pub struct WsClient {
    stream: TcpStream,
    buf: Box<[u8]>,
    sender: WsSender,
}

/// The sending half, which can be cloned into another thread (one thread
/// reads lines from a terminal and sends them while another receives). It
/// shares the connection's [`Link`]: the core and the socket's write half.
#[derive(Clone)]
pub struct WsSender {
    link: Arc<Link>,
}

impl From<LinkError> for ClientError {
    fn from(e: LinkError) -> ClientError {
        match e {
            LinkError::Io(e) => ClientError::Io(e),
            other => ClientError::Refused(other.to_string()),
        }
    }
}

impl WsSender {
    /// Sends one frame as given, masked by the core with a fresh random key
    /// (§5.3: a client masks every frame, with a key that cannot be
    /// predicted).
    pub fn send_frame(&self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<(), ClientError> {
        Ok(self.link.send_frame(fin, opcode, payload)?)
    }

    pub fn send_text(&self, text: &str) -> Result<(), ClientError> {
        Ok(self.link.send(Message::Text(text.to_string()))?)
    }

    pub fn send_binary(&self, data: &[u8]) -> Result<(), ClientError> {
        Ok(self.link.send(Message::Binary(data.to_vec()))?)
    }

    /// Sends a whole message, moved rather than copied.
    pub fn send(&self, message: Message) -> Result<(), ClientError> {
        Ok(self.link.send(message)?)
    }

    /// Writes bytes as they are, however wrong: for tests and for
    /// `ws-client --misbehave`.
    pub fn send_raw(&self, bytes: &[u8]) -> Result<(), ClientError> {
        Ok(self.link.send_raw(bytes)?)
    }

    /// Sends a close frame, once: a second call does nothing. `None`: an
    /// empty close payload.
    pub fn send_close(&self, code: Option<CloseCode>, reason: &str) -> Result<(), ClientError> {
        match self.link.close(code, reason) {
            Ok(()) | Err(LinkError::Closing) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The largest message the client accepts.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How long one write to the server may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

impl WsClient {
    /// Connects to `ws://host:port/path`.
    pub fn connect(url: &str) -> Result<WsClient, ClientError> {
        WsClient::connect_with(url, &[])
    }

    /// Connects, sending extra request headers (an `Origin`, say).
    pub fn connect_with(
        url: &str,
        extra_headers: &[(&str, &str)],
    ) -> Result<WsClient, ClientError> {
        let url = Url::parse(url, &["ws"])?;
        let mut stream = url.connect(Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let _ = stream.set_nodelay(true);
        // RFC 6455 §4.1: the key is 16 random bytes, new for every connection.
        let mut key_bytes = [0u8; 16];
        key_bytes[..8].copy_from_slice(&random::random_u64().to_ne_bytes());
        key_bytes[8..].copy_from_slice(&random::random_u64().to_ne_bytes());
        let key = BASE64.encode(key_bytes);
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            url.path,
            url.host_header()
        );
        for (name, value) in extra_headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        let (head, leftover) = read_response_head(&mut stream)?;
        if head.status != 101 {
            return Err(ClientError::Refused(format!(
                "the server answered {} {} instead of 101 Switching Protocols",
                head.status, head.reason
            )));
        }
        // §4.1: the client must check these, or it might be talking to a
        // server that does not speak WebSocket at all.
        if !head.has_token("upgrade", "websocket") || !head.has_token("connection", "upgrade") {
            return Err(ClientError::Refused(
                "the 101 answer lacks Upgrade: websocket".into(),
            ));
        }
        let expected = accept_key(&key);
        if head.header("sec-websocket-accept") != Some(expected.as_str()) {
            return Err(ClientError::Refused(format!(
                "Sec-WebSocket-Accept is {:?}, expected {expected:?}",
                head.header("sec-websocket-accept")
            )));
        }
        stream.set_read_timeout(None)?;
        let protocol = Protocol::new(Role::Client, MAX_MESSAGE);
        let link = Link::new(protocol, Arc::new(stream.try_clone()?), WRITE_TIMEOUT, None);
        // Frames the server sent right behind its 101 are the core's first input.
        link.receive(&leftover);
        Ok(WsClient {
            stream,
            buf: vec![0u8; 16 * 1024].into_boxed_slice(),
            sender: WsSender { link },
        })
    }

    /// A sending half for another thread.
    pub fn sender(&self) -> WsSender {
        self.sender.clone()
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        Ok(self.stream.set_read_timeout(timeout)?)
    }

    pub fn send_frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.sender.send_frame(fin, opcode, payload)
    }

    pub fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.sender.send_text(text)
    }

    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.sender.send_binary(data)
    }

    /// Sends a whole message, moved rather than copied.
    pub fn send(&mut self, message: Message) -> Result<(), ClientError> {
        self.sender.send(message)
    }

    /// Writes bytes as they are, however wrong (see [`WsSender::send_raw`]).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.sender.send_raw(bytes)
    }

    /// The next frame-level event, pings and pongs included. The core has
    /// already answered what needs an answer (a ping, a close).
    pub fn next_event(&mut self) -> Result<Event, ClientError> {
        let link = &self.sender.link;
        loop {
            // Once the protocol is closed nothing more is read from the
            // bytes, but the socket is still read: the server closes TCP
            // first (§7.1.1), and that end of the stream is what a caller
            // waiting here sees.
            match link.next_event() {
                Ok(Some(event)) => return Ok(event),
                Ok(None) => {}
                Err(error) => {
                    // The server broke the protocol: the core has queued the
                    // close with the right code; end the connection.
                    link.shutdown();
                    return Err(ClientError::Refused(format!(
                        "protocol error from the server: {error}"
                    )));
                }
            }
            let n = self.stream.read(&mut self.buf)?;
            if n == 0 {
                link.receive_eof();
                return Err(ClientError::Closed);
            }
            link.receive(&self.buf[..n]);
        }
    }

    /// The next message. A close from the server is returned as
    /// [`Received::Closed`] (the core has answered it).
    pub fn receive(&mut self) -> Result<Received, ClientError> {
        loop {
            match self.next_event()? {
                Event::Text(text) => return Ok(Received::Text(text)),
                Event::Binary(data) => return Ok(Received::Binary(data)),
                Event::Ping(_) | Event::Pong(_) => {}
                Event::Close(frame) => return Ok(Received::Closed(frame)),
            }
        }
    }

    /// Starts the close handshake and waits (at most `timeout`) for the
    /// server's answer. Returns the server's close frame.
    pub fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        timeout: Duration,
    ) -> Result<Option<CloseFrame>, ClientError> {
        self.sender.send_close(Some(code), reason)?;
        self.set_read_timeout(Some(timeout))?;
        loop {
            match self.next_event() {
                Ok(Event::Close(frame)) => {
                    // §7.1.1: the server closes TCP first; wait for it briefly.
                    let mut rest = [0u8; 64];
                    let _ = self.stream.read(&mut rest);
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return Ok(frame);
                }
                Ok(_) => {} // messages still in flight are dropped
                Err(e) => return Err(e),
            }
        }
    }

    /// The underlying socket (tests use it to half-close or stall).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}
