//! A WebSocket client: the handshake from the client's side (a fresh random
//! key, and a check of the server's answer), masked frames, pings answered,
//! and the close handshake. It reuses the server's frame code: the format
//! is the same in both directions, only the masking rule is reversed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::{read_response_head, ClientError, Url};
use crate::random;
use crate::websocket::connection::{close_payload, CloseFrame, Event, MessageReader, Role};
use crate::websocket::frame::{self, OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT};
use crate::websocket::handshake::accept_key;

/// A complete message from the server, or its close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
    /// The server closed (we have answered); the close frame, if it had a code.
    Closed(Option<CloseFrame>),
}

pub struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    reader: MessageReader,
    sender: WsSender,
}

/// The sending half, which can be cloned into another thread (one thread
/// reads lines from a terminal and sends them while another receives). A
/// mutex keeps each frame whole and remembers whether our close went out.
#[derive(Clone)]
pub struct WsSender {
    state: Arc<Mutex<SenderState>>,
}

struct SenderState {
    stream: TcpStream,
    close_sent: bool,
}

impl WsSender {
    fn lock(&self) -> std::sync::MutexGuard<'_, SenderState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends one frame, masked with a fresh random key (§5.3: a client
    /// masks every frame, with a key that cannot be predicted).
    pub fn send_frame(&self, fin: bool, opcode: u8, payload: &[u8]) -> Result<(), ClientError> {
        let frame = frame::encode_masked_frame(fin, opcode, payload, random::random_mask());
        self.send_raw(&frame)
    }

    pub fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.send_frame(true, OP_TEXT, text.as_bytes())
    }

    pub fn send_binary(&self, data: &[u8]) -> Result<(), ClientError> {
        self.send_frame(true, OP_BINARY, data)
    }

    /// Writes bytes as they are, however wrong: for tests and for
    /// `ws-client --misbehave`.
    pub fn send_raw(&self, bytes: &[u8]) -> Result<(), ClientError> {
        let mut state = self.lock();
        if state.close_sent {
            return Err(ClientError::Refused(
                "the close frame was already sent".into(),
            ));
        }
        Ok(state.stream.write_all(bytes)?)
    }

    /// Sends a close frame, once. `None`: an empty close payload.
    pub fn send_close(&self, code: Option<u16>, reason: &str) -> Result<(), ClientError> {
        let mut state = self.lock();
        if state.close_sent {
            return Ok(());
        }
        state.close_sent = true;
        let payload = code.map(|c| close_payload(c, reason)).unwrap_or_default();
        let frame = frame::encode_masked_frame(true, OP_CLOSE, &payload, random::random_mask());
        Ok(state.stream.write_all(&frame)?)
    }
}

/// The largest message the client accepts.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

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
        let sender = WsSender {
            state: Arc::new(Mutex::new(SenderState {
                stream: stream.try_clone()?,
                close_sent: false,
            })),
        };
        Ok(WsClient {
            stream,
            buf: leftover,
            start: 0,
            reader: MessageReader::new(Role::Client, MAX_MESSAGE),
            sender,
        })
    }

    /// A sending half for another thread.
    pub fn sender(&self) -> WsSender {
        self.sender.clone()
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        Ok(self.stream.set_read_timeout(timeout)?)
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> Result<(), ClientError> {
        self.sender.send_frame(fin, opcode, payload)
    }

    pub fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.sender.send_text(text)
    }

    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.sender.send_binary(data)
    }

    /// Writes bytes as they are, however wrong (see [`WsSender::send_raw`]).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.sender.send_raw(bytes)
    }

    /// The next frame-level event, pings and pongs included, unanswered.
    pub fn next_event(&mut self) -> Result<Event, ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.start < self.buf.len() {
                let result = self.reader.receive(&self.buf[self.start..]);
                match result {
                    Ok((used, event)) => {
                        self.start += used;
                        if self.start == self.buf.len() {
                            self.buf.clear();
                            self.start = 0;
                        }
                        if let Some(event) = event {
                            return Ok(event);
                        }
                    }
                    Err(error) => {
                        // The server broke the protocol: fail the connection.
                        let _ = self
                            .sender
                            .send_close(Some(error.close_code()), &error.to_string());
                        let _ = self.stream.shutdown(Shutdown::Both);
                        return Err(ClientError::Refused(format!(
                            "protocol error from the server: {error}"
                        )));
                    }
                }
                continue;
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message. Pings are answered on the way; a close from the
    /// server is answered and returned as [`Received::Closed`].
    pub fn receive(&mut self) -> Result<Received, ClientError> {
        loop {
            match self.next_event()? {
                Event::Text(text) => return Ok(Received::Text(text)),
                Event::Binary(data) => return Ok(Received::Binary(data)),
                Event::Ping(payload) => self.send_frame(true, OP_PONG, &payload)?,
                Event::Pong(_) => {}
                Event::Close(frame) => {
                    // §5.5.1: answer with a close echoing the code.
                    let _ = self.sender.send_close(frame.as_ref().map(|f| f.code), "");
                    return Ok(Received::Closed(frame));
                }
            }
        }
    }

    /// Starts the close handshake and waits (at most `timeout`) for the
    /// server's answer. Returns the server's close frame.
    pub fn close(
        &mut self,
        code: u16,
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
