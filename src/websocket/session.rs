//! A WebSocket connection on a real socket: the reading loop around
//! [`MessageReader`], answers to pings, liveness checks, the close
//! handshake, and a writer that two threads can share.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::connection::{
    close_payload, Event, MessageError, MessageReader, Role, CLOSE_GOING_AWAY,
};
use super::frame::{self, OP_CLOSE, OP_PING, OP_PONG};
use crate::http::write_parts_within;
use crate::inspect::{Direction, Kind, PREVIEW_BYTES};
use crate::server::Shared;

/// Where to report frames for the inspector: the server and a connection id.
pub type Inspect = Option<(Arc<Shared>, u64)>;

/// The write half of a connection, shared by the threads that write to it.
///
/// A frame must go out whole: if two threads wrote at once, their bytes
/// could interleave and corrupt both frames. The mutex makes each frame one
/// indivisible write. It also remembers when the connection may take no
/// more frames: after our close frame (RFC 6455 §5.5.1), and after a failed
/// write, which may have left half a frame on the wire.
pub struct FrameWriter {
    state: Mutex<WriterState>,
    inspect: Inspect,
}

struct WriterState {
    stream: TcpStream,
    /// The most one frame may take to write (`--write-timeout-secs`).
    timeout: Duration,
    /// `Some(why)` once nothing more may be written.
    closed: Option<String>,
}

impl WriterState {
    /// Writes one whole frame (given in one or more pieces) within the write
    /// timeout, or closes the writer for good if that fails.
    fn write(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        if let Some(why) = &self.closed {
            return Err(io::Error::new(io::ErrorKind::NotConnected, why.clone()));
        }
        let written = write_parts_within(&self.stream, parts, self.timeout);
        if let Err(e) = &written {
            self.closed = Some(format!("a write failed: {e}"));
        }
        written
    }
}

/// Payloads up to this size are copied behind their header and written in
/// one call; larger ones go as two writes (under one deadline), to avoid
/// copying megabytes.
const COPY_LIMIT: usize = 16 * 1024;

impl FrameWriter {
    pub fn new(stream: TcpStream, timeout: Duration, inspect: Inspect) -> Arc<FrameWriter> {
        let state = WriterState {
            stream,
            timeout,
            closed: None,
        };
        Arc::new(FrameWriter {
            state: Mutex::new(state),
            inspect,
        })
    }

    fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True while someone watches `/inspect` (and this connection is shown).
    fn watched(&self) -> bool {
        self.inspect
            .as_ref()
            .is_some_and(|(shared, _)| shared.inspector.active())
    }

    fn record(&self, bytes: &[u8], total: usize) {
        if let Some((shared, id)) = &self.inspect {
            let inspector = &shared.inspector;
            inspector.record_prefix(Direction::Out, *id, Kind::WebSocket, bytes, total);
        }
    }

    /// Writes one encoded frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        self.record(frame, frame.len());
        state.write(&[frame])
    }

    /// Writes `payload` as one unmasked, unfragmented message.
    pub fn send_message(&self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut header = Vec::with_capacity(frame::MAX_HEADER_LEN + payload.len().min(COPY_LIMIT));
        frame::encode_header(&mut header, true, opcode, None, payload.len() as u64);
        let mut state = self.lock();
        // Recorded under the lock, like every frame: the inspector then
        // lists frames in the order they go on the wire.
        if self.watched() {
            let preview = [&header[..], &payload[..payload.len().min(PREVIEW_BYTES)]].concat();
            self.record(&preview, header.len() + payload.len());
        }
        if payload.len() <= COPY_LIMIT {
            header.extend_from_slice(payload);
            state.write(&[&header])
        } else {
            state.write(&[&header, payload])
        }
    }

    /// Sends our close frame, unless the writer is already closed. `None`
    /// sends an empty close payload (the answer to a close without a code).
    pub fn send_close(&self, code: Option<u16>, reason: &str) -> io::Result<()> {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Ok(());
        }
        let payload = code
            .map(|code| close_payload(code, reason))
            .unwrap_or_default();
        let frame = frame::encode_frame(OP_CLOSE, &payload);
        self.record(&frame, frame.len());
        let written = state.write(&[&frame]);
        if written.is_ok() {
            state.closed = Some(match code {
                Some(code) => format!("the server closed with {code} {reason:?}"),
                None => "the server answered a close".to_string(),
            });
        }
        written
    }

    /// Nothing more may be written; `why` is kept for the log.
    pub fn mark_closed(&self, why: &str) {
        self.lock().closed.get_or_insert_with(|| why.to_string());
    }

    /// Why the writer was closed, if it was.
    pub fn closed_reason(&self) -> Option<String> {
        self.lock().closed.clone()
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Ends the TCP connection in both directions, which also wakes a
    /// thread blocked reading from it.
    pub fn shutdown(&self) {
        let _ = self.lock().stream.shutdown(Shutdown::Both);
    }
}

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

/// How a session ended.
#[derive(Debug)]
pub enum Ended {
    /// The peer sent a close frame (with this code, if any) and we answered.
    PeerClosed(Option<u16>),
    /// The peer broke the protocol; we closed with the error's code.
    Violation(MessageError),
    /// Silence, then no answer to our ping.
    Unresponsive,
    /// The connection ended without a close handshake, or failed.
    Dropped(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::PeerClosed(Some(code)) => write!(f, "the client closed with {code}"),
            Ended::PeerClosed(None) => write!(f, "the client closed without a code"),
            Ended::Violation(e) => write!(f, "closed with {}: {e}", e.close_code()),
            Ended::Unresponsive => write!(f, "no answer to a ping"),
            Ended::Dropped(why) => write!(f, "dropped: {why}"),
        }
    }
}

/// Timeouts of a session (from the server's configuration).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub close_timeout: Duration,
}

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The reading side of a WebSocket connection.
pub struct Session {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    reader: MessageReader,
    pub writer: Arc<FrameWriter>,
    timeouts: Timeouts,
    inspect: Inspect,
}

impl Session {
    /// `leftover`: bytes that arrived together with the handshake request.
    pub fn new(
        stream: TcpStream,
        leftover: &[u8],
        writer: Arc<FrameWriter>,
        max_message: usize,
        timeouts: Timeouts,
        inspect: Inspect,
    ) -> Session {
        let mut buf = vec![0u8; READ_CHUNK.max(leftover.len())].into_boxed_slice();
        buf[..leftover.len()].copy_from_slice(leftover);
        let reader = MessageReader::new(Role::Server, max_message);
        Session {
            stream,
            buf,
            start: 0,
            end: leftover.len(),
            reader,
            writer,
            timeouts,
            inspect,
        }
    }

    /// Waits for the next data message, answering pings and keeping the
    /// connection alive meanwhile. Every `Err` means the connection is over
    /// (the close handshake, if any, is already done).
    pub fn next_message(&mut self) -> Result<Message, Ended> {
        let mut ping_sent = false;
        loop {
            while self.start < self.end {
                // Copying frames for the inspector costs something: only
                // while somebody is watching.
                self.reader.keep_frames = self
                    .inspect
                    .as_ref()
                    .is_some_and(|(s, _)| s.inspector.active());
                let result = self.reader.receive(&self.buf[self.start..self.end]);
                self.report_frames();
                let (used, event) = match result {
                    Ok(ok) => ok,
                    Err(error) => {
                        self.close(Some(error.close_code()), &error.to_string());
                        return Err(Ended::Violation(error));
                    }
                };
                self.start += used;
                match event {
                    None => {}
                    // RFC 6455 §5.5.2: a pong carries the ping's payload back.
                    Some(Event::Ping(payload)) => {
                        if let Err(e) = self.writer.send(&frame::encode_frame(OP_PONG, &payload)) {
                            return Err(self.dropped(e.to_string()));
                        }
                    }
                    Some(Event::Pong(_)) => {}
                    // §5.5.1: answer a close with a close, echoing its code.
                    Some(Event::Close(frame)) => {
                        let code = frame.map(|f| f.code);
                        self.close(code, "");
                        return Err(Ended::PeerClosed(code));
                    }
                    Some(Event::Text(text)) => return Ok(Message::Text(text)),
                    Some(Event::Binary(data)) => return Ok(Message::Binary(data)),
                }
            }
            // Everything buffered is used: wait for more, but not forever.
            let wait = if ping_sent {
                self.timeouts.pong_timeout
            } else {
                self.timeouts.ping_interval
            };
            let _ = self.stream.set_read_timeout(Some(wait));
            match self.stream.read(&mut self.buf) {
                Ok(0) => {
                    return Err(self.dropped("the client closed TCP without a close frame".into()))
                }
                Ok(n) => {
                    (self.start, self.end) = (0, n);
                    ping_sent = false; // any bytes at all show the peer is alive
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if ping_sent {
                        let _ = self
                            .writer
                            .send_close(Some(CLOSE_GOING_AWAY), "no answer to ping");
                        self.writer.shutdown();
                        return Err(Ended::Unresponsive);
                    }
                    if let Err(e) = self
                        .writer
                        .send(&frame::encode_frame(OP_PING, b"are you there?"))
                    {
                        return Err(self.dropped(e.to_string()));
                    }
                    ping_sent = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.dropped(e.to_string())),
            }
        }
    }

    fn report_frames(&mut self) {
        if let Some((shared, id)) = &self.inspect {
            for (wire, total) in self.reader.take_seen_frames() {
                let inspector = &shared.inspector;
                inspector.record_prefix(Direction::In, *id, Kind::WebSocket, &wire, total as usize);
            }
        }
    }

    /// The connection is gone. If the writer closed it first (a write
    /// failed, or the hub dropped a client that fell behind), that is the
    /// real reason; what this thread saw was only the consequence.
    fn dropped(&self, why: String) -> Ended {
        let why = self.writer.closed_reason().unwrap_or(why);
        self.writer.mark_closed(&why);
        self.writer.shutdown();
        Ended::Dropped(why)
    }

    /// Closes the connection from our side: sends our close frame (unless
    /// one went out already), half-closes TCP so the peer sees the end, and
    /// waits a bounded time for the peer to finish, discarding what it sends.
    /// RFC 6455 §7.1.1: the server should be the one to close TCP first.
    pub fn close(&mut self, code: Option<u16>, reason: &str) {
        let _ = self.writer.send_close(code, reason);
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + self.timeouts.close_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
