//! A WebSocket connection on a real socket: the [`Protocol`] core behind a
//! lock with the socket's write half ([`Link`]), and the server's reading
//! loop around it ([`Session`]): reading, liveness pings, and closing TCP
//! once the protocol is done.
//!
//! Nothing here decides what to answer: the core does. This file only moves
//! bytes between the socket and the core, and keeps time.

use std::fmt;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::frame::OpCode;
use super::message::{CloseCode, Event, MessageError};
use super::protocol::{Message, Outgoing, Protocol, SendError, State};
use crate::http::{linger, write_parts_within};
use crate::tap::{Direction, Tap, PREVIEW};

/// The protocol core and the socket it writes to, shared by the threads of
/// one connection (a chat connection's reader and its broadcast writer; a
/// client's receiving loop and the thread that sends what is typed).
///
/// The lock keeps each frame whole (two threads writing at once could
/// interleave their bytes) and keeps frames in the order the core queued
/// them. The core refuses frames after our close; the link also refuses
/// them after a failed write, which may have left half a frame on the wire.
pub struct Link {
    state: Mutex<LinkState>,
    tap: Option<Box<dyn Tap>>,
}

struct LinkState {
    protocol: Protocol,
    stream: Arc<TcpStream>,
    /// The most one frame may take to write (`--write-timeout-secs`).
    write_timeout: Duration,
    /// Set when a write failed: the error, for the log.
    broken: Option<String>,
}

/// Why a frame could not be sent.
#[derive(Debug)]
pub enum LinkError {
    /// The protocol refuses it: our close frame went out already.
    Closing,
    /// An earlier write failed; nothing more can go on this connection.
    Broken(String),
    /// This write failed (or did not finish in time).
    Io(io::Error),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Closing => write!(f, "{}", SendError::Closed),
            LinkError::Broken(why) => write!(f, "the connection is broken ({why})"),
            LinkError::Io(e) => write!(f, "a write failed: {e}"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<SendError> for LinkError {
    fn from(_: SendError) -> LinkError {
        LinkError::Closing
    }
}

impl Link {
    /// `stream`: the connection's socket, shared with the thread that reads
    /// it (one file descriptor, where a `try_clone` would take two).
    pub fn new(
        protocol: Protocol,
        stream: Arc<TcpStream>,
        write_timeout: Duration,
        tap: Option<Box<dyn Tap>>,
    ) -> Arc<Link> {
        let state = LinkState {
            protocol,
            stream,
            write_timeout,
            broken: None,
        };
        Arc::new(Link {
            state: Mutex::new(state),
            tap,
        })
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // A panic elsewhere while holding the lock leaves nothing half-done
        // that matters here: carry on with the data as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ----- what the peer sent -----

    /// Hands received bytes to the core.
    pub fn receive(&self, bytes: &[u8]) {
        self.lock().protocol.receive_data(bytes);
    }

    /// The peer closed TCP.
    pub fn receive_eof(&self) {
        self.lock().protocol.receive_eof();
    }

    /// The next event in what was received, with the replies the core
    /// queued for it written out. See [`Protocol::next_event`].
    pub fn next_event(&self) -> Result<Option<Event>, MessageError> {
        let mut state = self.lock();
        // Copying frames for the inspector costs something: only while
        // somebody is watching.
        let watching = self.tap.as_ref().is_some_and(|tap| tap.watching());
        state.protocol.keep_frames(watching);
        let result = state.protocol.next_event();
        if let Some(tap) = &self.tap {
            for (wire, total) in state.protocol.take_seen_frames() {
                tap.record(Direction::In, &wire, total as usize);
            }
        }
        // A write that fails here shows up at the next send, or as the
        // reason the connection ended.
        let _ = self.flush(&mut state);
        result
    }

    // ----- what we send -----

    /// Sends a whole message in one frame.
    pub fn send(&self, message: Message) -> Result<(), LinkError> {
        let mut state = self.lock();
        Self::usable(&state)?;
        state.protocol.send_message(message)?;
        self.flush(&mut state)
    }

    /// Sends one frame as given (fragments, or a test's odd frames).
    pub fn send_frame(&self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<(), LinkError> {
        let mut state = self.lock();
        Self::usable(&state)?;
        state.protocol.send_frame(fin, opcode, payload)?;
        self.flush(&mut state)
    }

    /// Sends a broadcast: a header made once, and data every subscriber
    /// shares (see [`Protocol::send_shared`]).
    pub fn send_shared(&self, head: &[u8], payload: Arc<[u8]>) -> Result<(), LinkError> {
        let mut state = self.lock();
        Self::usable(&state)?;
        state.protocol.send_shared(head, payload)?;
        self.flush(&mut state)
    }

    pub fn ping(&self, payload: &[u8]) -> Result<(), LinkError> {
        let mut state = self.lock();
        Self::usable(&state)?;
        state.protocol.send_ping(payload)?;
        self.flush(&mut state)
    }

    /// Sends our close frame, unless one went out already (then `Closing`).
    pub fn close(&self, code: Option<CloseCode>, reason: &str) -> Result<(), LinkError> {
        let mut state = self.lock();
        Self::usable(&state)?;
        state.protocol.send_close(code, reason)?;
        self.flush(&mut state)
    }

    /// Writes bytes as they are, however wrong, past the core: only for
    /// tests and `ws-client --misbehave`, which break the protocol on
    /// purpose. Refused, like any frame, once our close went out.
    pub fn send_raw(&self, bytes: &[u8]) -> Result<(), LinkError> {
        let state = self.lock();
        Self::usable(&state)?;
        if state.protocol.state() != State::Open {
            return Err(LinkError::Closing);
        }
        let timeout = state.write_timeout;
        write_parts_within(&state.stream, &[bytes], timeout).map_err(LinkError::Io)
    }

    fn usable(state: &LinkState) -> Result<(), LinkError> {
        match &state.broken {
            Some(why) => Err(LinkError::Broken(why.clone())),
            None => Ok(()),
        }
    }

    /// Writes every frame the core has queued, each whole and within the
    /// write deadline, reporting each to the tap in wire order.
    fn flush(&self, state: &mut LinkState) -> Result<(), LinkError> {
        while let Some(frame) = state.protocol.next_to_send() {
            if state.broken.is_some() {
                break;
            }
            self.report(&frame);
            let written = write_parts_within(&state.stream, &frame.parts(), state.write_timeout);
            if let Err(e) = written {
                state.broken = Some(format!("a write failed: {e}"));
                return Err(LinkError::Io(e));
            }
        }
        Ok(())
    }

    fn report(&self, frame: &Outgoing) {
        let Some(tap) = &self.tap else { return };
        if !tap.watching() {
            return;
        }
        let [head, body] = frame.parts();
        let preview = [head, &body[..body.len().min(PREVIEW)]].concat();
        tap.record(Direction::Out, &preview, frame.len());
    }

    // ----- the connection as a whole -----

    /// True while a frame or message from the peer has started and is
    /// not complete.
    pub fn receiving(&self) -> bool {
        self.lock().protocol.receiving()
    }

    /// Where the protocol is (open, closing, closed).
    pub fn state(&self) -> State {
        self.lock().protocol.state()
    }

    /// True while frames may still be sent.
    pub fn is_open(&self) -> bool {
        let state = self.lock();
        state.broken.is_none() && state.protocol.state() == State::Open
    }

    /// Why writing stopped, if a write failed.
    pub fn broken(&self) -> Option<String> {
        self.lock().broken.clone()
    }

    /// Ends the TCP connection in both directions, which also wakes a
    /// thread blocked reading from it.
    pub fn shutdown(&self) {
        let _ = self.lock().stream.shutdown(Shutdown::Both);
    }
}

/// How a session ended.
#[derive(Debug)]
pub enum Ended {
    /// The peer sent a close frame (with this code, if any) and we answered.
    PeerClosed(Option<CloseCode>),
    /// The peer broke the protocol; we closed with the error's code.
    Violation(MessageError),
    /// Silence, then no answer to our ping.
    Unresponsive,
    /// A message was started and not finished in time; we closed with 1008.
    MessageTimeout,
    /// We closed first (the application asked to), then the connection ended.
    ServerClosed,
    /// TCP ended without a close frame.
    TcpClosed,
    /// A write failed or timed out (the peer stopped reading).
    WriteFailed(String),
    /// Reading from the socket failed.
    ReadFailed(io::Error),
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::PeerClosed(Some(code)) => write!(f, "the client closed with {code}"),
            Ended::PeerClosed(None) => write!(f, "the client closed without a code"),
            Ended::Violation(e) => write!(f, "closed with {}: {e}", e.close_code()),
            Ended::Unresponsive => write!(f, "no answer to a ping"),
            Ended::MessageTimeout => write!(f, "closed with 1008: a message took too long"),
            Ended::ServerClosed => write!(f, "the server closed it"),
            Ended::TcpClosed => write!(f, "the client closed TCP without a close frame"),
            Ended::WriteFailed(why) => write!(f, "dropped: {why}"),
            Ended::ReadFailed(e) => write!(f, "dropped: a read failed: {e}"),
        }
    }
}

/// Timeouts of a session (from the server's configuration).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub close_timeout: Duration,
    /// How long a started message may take to arrive in full.
    pub message_timeout: Duration,
}

/// How much is read from the socket at a time: a little at first, more
/// each time a read fills the buffer, up to the most. A thousand idle chat
/// connections then hold a thousand small buffers, and a bulk transfer
/// still reads in large pieces.
const READ_FIRST: usize = 2 * 1024;
const READ_MOST: usize = 64 * 1024;

/// What the server sends to find out whether a quiet peer is still there.
const PING_PAYLOAD: &[u8] = b"are you there?";

/// The server's reading side of a WebSocket connection.
pub struct Session {
    stream: Arc<TcpStream>,
    buf: Vec<u8>,
    link: Arc<Link>,
    timeouts: Timeouts,
    /// When the message now arriving must be complete.
    message_deadline: Option<Instant>,
    /// The read timeout the socket has now.
    read_timeout: Option<Duration>,
}

impl Session {
    /// `leftover`: bytes that arrived together with the handshake request.
    pub fn new(
        stream: Arc<TcpStream>,
        leftover: &[u8],
        link: Arc<Link>,
        timeouts: Timeouts,
    ) -> Session {
        link.receive(leftover);
        Session {
            stream,
            buf: vec![0u8; READ_FIRST],
            link,
            timeouts,
            message_deadline: None,
            read_timeout: None,
        }
    }

    /// Closes the connection from our side, for the application: our
    /// close frame, then TCP closed the way the protocol wants it.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        let _ = self.link.close(Some(code), reason);
        self.close_tcp();
    }

    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Waits for the next data message; pings are answered and the peer's
    /// liveness is checked meanwhile. Every `Err` means the connection is
    /// over, and closed.
    pub fn next_message(&mut self) -> Result<Message, Ended> {
        loop {
            match self.link.next_event() {
                Ok(Some(Event::Text(text))) => return Ok(Message::Text(text)),
                Ok(Some(Event::Binary(data))) => return Ok(Message::Binary(data)),
                // The core has answered the ping; a pong needs nothing.
                Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
                Ok(Some(Event::Close(frame))) => {
                    self.close_tcp();
                    return Err(Ended::PeerClosed(frame.map(|f| f.code)));
                }
                Ok(None) => self.read_more()?,
                Err(error) => {
                    self.close_tcp();
                    return Err(Ended::Violation(error));
                }
            }
        }
    }

    /// Reads more bytes into the core. Silence for `ping_interval` gets a
    /// ping; silence for `pong_timeout` after it ends the connection. Any
    /// bytes at all show that the peer is alive, so a message that has
    /// started gets a deadline of its own: a peer trickling one byte a
    /// second would otherwise hold its buffer (up to `--max-message`)
    /// forever.
    fn read_more(&mut self) -> Result<(), Ended> {
        let mut ping_sent = false;
        loop {
            let deadline = self.message_deadline();
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Err(self.message_too_slow());
            }
            let mut wait = if ping_sent {
                self.timeouts.pong_timeout
            } else {
                self.timeouts.ping_interval
            };
            if let Some(deadline) = deadline {
                wait = wait.min(deadline - now);
            }
            self.wait_at_most(wait);
            match (&*self.stream).read(&mut self.buf) {
                Ok(0) => return Err(self.gone(Ended::TcpClosed)),
                Ok(n) => {
                    self.link.receive(&self.buf[..n]);
                    if n == self.buf.len() && n < READ_MOST {
                        self.buf.resize(2 * n, 0);
                    }
                    return Ok(());
                }
                Err(e) if is_timeout(&e) && deadline.is_some_and(|d| d <= Instant::now()) => {
                    return Err(self.message_too_slow());
                }
                Err(e) if is_timeout(&e) && ping_sent => {
                    let _ = self
                        .link
                        .close(Some(CloseCode::GoingAway), "no answer to ping");
                    self.link.shutdown();
                    return Err(Ended::Unresponsive);
                }
                Err(e) if is_timeout(&e) => {
                    if self.link.ping(PING_PAYLOAD).is_err() {
                        return Err(self.gone(Ended::ServerClosed));
                    }
                    ping_sent = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.gone(Ended::ReadFailed(e))),
            }
        }
    }

    /// Sets the socket's read timeout, in steps of a tenth of a second: a
    /// system call per read would cost an echo a good part of its speed,
    /// and a deadline met within 100 ms is met.
    fn wait_at_most(&mut self, wait: Duration) {
        const STEP: u128 = 100;
        let steps = wait.as_millis().div_ceil(STEP).max(1);
        let wait = Duration::from_millis((steps * STEP) as u64);
        if self.read_timeout != Some(wait) {
            let _ = self.stream.set_read_timeout(Some(wait));
            self.read_timeout = Some(wait);
        }
    }

    /// The deadline of the message now arriving, set when its first byte
    /// came and cleared once it is complete.
    fn message_deadline(&mut self) -> Option<Instant> {
        if self.link.receiving() {
            let timeout = self.timeouts.message_timeout;
            let deadline = self
                .message_deadline
                .get_or_insert_with(|| Instant::now() + timeout);
            Some(*deadline)
        } else {
            self.message_deadline = None;
            None
        }
    }

    /// RFC 6455 §7.4.1: 1008 is for a message that breaks the endpoint's
    /// policy; taking longer than allowed to arrive is one.
    fn message_too_slow(&mut self) -> Ended {
        let reason = format!(
            "a message must arrive within {} s (--message-timeout-secs)",
            self.timeouts.message_timeout.as_secs_f64()
        );
        let _ = self.link.close(Some(CloseCode::Policy), &reason);
        self.close_tcp();
        Ended::MessageTimeout
    }

    /// The connection is gone. If our side ended it first (a write failed,
    /// or the application closed it), that is the real reason; what this
    /// thread saw was only the consequence.
    fn gone(&self, seen: Ended) -> Ended {
        let ended = match (self.link.broken(), self.link.state()) {
            (Some(why), _) => Ended::WriteFailed(why),
            (None, State::Closing) => Ended::ServerClosed,
            (None, State::Open | State::Closed) => seen,
        };
        self.link.receive_eof();
        self.link.shutdown();
        ended
    }

    /// After the closing handshake, or after failing the connection:
    /// RFC 6455 §7.1.1 says the server should be the one to close TCP. Our
    /// close frame went out already; half-close, and wait a bounded time for
    /// the peer to finish, discarding what it sends.
    fn close_tcp(&mut self) {
        linger(&self.stream, self.timeouts.close_timeout, usize::MAX);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
