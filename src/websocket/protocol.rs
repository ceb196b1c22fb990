//! The WebSocket protocol as a state machine with no socket in it
//! ("sans-I/O"): bytes in, events out, bytes to send out.
//!
//! ```text
//!   receive_data(bytes) ──► Protocol ──► next_event() → Text, Binary, Ping, Pong, Close
//!   receive_eof()            │  ▲
//!                            ▼  └── send_message / send_ping / send_close …
//!                      data_to_send() → frames to write, in order
//! ```
//!
//! Everything RFC 6455 requires of an endpoint, beyond reading frames, is
//! decided here and nowhere else:
//! - a ping is answered with a pong carrying its payload (§5.5.2);
//! - a close is answered with a close echoing its code (§5.5.1), and the
//!   connection is then closed: no more frames of ours;
//! - a protocol error fails the connection (§7.1.7): a close frame with the
//!   right code (1002, 1007 or 1009) is queued and nothing more is read;
//! - after our close frame, nothing but that close goes out (§5.5.1): every
//!   send is refused with [`SendError::Closed`].
//!
//! The server's socket loop (`session.rs`) and the client (`client/ws.rs`)
//! both drive this type; neither builds a pong or a close reply itself. A
//! unit test, or a debugger, can feed it bytes and look at what comes out.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use super::frame::{self, OpCode, MAX_HEADER_LEN};
use super::message::{close_payload, CloseCode, Event, MessageError, MessageReader, Role};
use crate::budget::Budget;
use crate::random;

/// Where a connection is in its life (§4, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's. Its messages may still
    /// arrive; we send nothing more.
    Closing,
    /// Both close frames have been sent, or the connection failed, or TCP
    /// ended: nothing more goes either way.
    Closed,
}

/// A send that the protocol refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Our close frame has gone out already (§5.5.1: it is the last frame).
    Closed,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection is closing: no frame may follow the close frame")
    }
}

impl std::error::Error for SendError {}

/// A complete data message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

/// One frame waiting to be written: its header (and, for a small frame,
/// its payload too), then the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub head: Vec<u8>,
    pub body: Body,
}

/// The part of a frame that is not copied behind its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Everything is in `head`.
    Empty,
    /// A large payload, moved here rather than copied.
    Owned(Vec<u8>),
    /// A payload kept once and shared by many connections (the data of the
    /// hub's broadcast).
    Shared(Arc<[u8]>),
}

impl Outgoing {
    /// The frame's bytes in the order they go on the wire, in one or two
    /// pieces.
    pub fn parts(&self) -> [&[u8]; 2] {
        let body: &[u8] = match &self.body {
            Body::Empty => &[],
            Body::Owned(bytes) => bytes,
            Body::Shared(bytes) => bytes,
        };
        [&self.head, body]
    }

    /// The frame's length on the wire.
    pub fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Payloads up to this size are copied behind their header, so the frame
/// is one piece and one write; larger ones stay where they are.
const COPY_LIMIT: usize = 16 * 1024;

/// One side of a WebSocket connection, without the connection.
#[derive(Debug)]
pub struct Protocol {
    role: Role,
    reader: MessageReader,
    state: State,
    /// Received bytes not yet turned into events.
    input: Vec<u8>,
    start: usize,
    /// Frames to write, oldest first.
    output: VecDeque<Outgoing>,
    /// Where a client's masking keys come from (§5.3: unpredictable).
    mask: fn() -> [u8; 4],
}

impl Protocol {
    /// `max_message`: the largest frame or message accepted (1009 above it).
    pub fn new(role: Role, max_message: usize) -> Protocol {
        Protocol {
            role,
            reader: MessageReader::new(role, max_message),
            state: State::Open,
            input: Vec::new(),
            start: 0,
            output: VecDeque::new(),
            mask: random::random_mask,
        }
    }

    /// See [`MessageReader::with_limit_flag`].
    pub fn with_limit_flag(mut self, flag: &'static str) -> Protocol {
        self.reader = self.reader.with_limit_flag(flag);
        self
    }

    /// See [`MessageReader::with_budget`].
    pub fn with_budget(mut self, budget: Budget) -> Protocol {
        self.reader = self.reader.with_budget(budget);
        self
    }

    /// True while a frame or message from the peer has started and is not
    /// complete (the session gives it `--message-timeout-secs` to finish).
    pub fn receiving(&self) -> bool {
        self.reader.in_progress()
    }

    /// Replaces the random masking keys of a client with a fixed source,
    /// so that a test can predict the bytes it sends.
    pub fn with_masks(mut self, mask: fn() -> [u8; 4]) -> Protocol {
        self.mask = mask;
        self
    }

    pub fn state(&self) -> State {
        self.state
    }

    // ----- bytes in -----

    /// Hands over bytes received from the peer. Nothing is decided yet:
    /// [`Protocol::next_event`] reads them, one event at a time, so that the
    /// answers to one message go out before anything that follows it.
    pub fn receive_data(&mut self, data: &[u8]) {
        if self.state == State::Closed {
            return; // after the end, bytes mean nothing
        }
        // What was read already goes; usually that is everything.
        self.input.drain(..self.start);
        self.start = 0;
        self.input.extend_from_slice(data);
    }

    /// The peer closed TCP. Without a close frame first, that is an
    /// abnormal closure (§7.1.5: the code is 1006, which nobody sends).
    pub fn receive_eof(&mut self) {
        self.state = State::Closed;
    }

    /// The next event in what was received, or `Ok(None)` when more bytes
    /// are needed (or nothing more will be read). Replies the protocol
    /// requires are queued on the way: see [`Protocol::data_to_send`].
    ///
    /// An `Err` means the peer broke the protocol: the close frame with the
    /// error's code is queued, and the connection is over.
    pub fn next_event(&mut self) -> Result<Option<Event>, MessageError> {
        while self.state != State::Closed && self.start < self.input.len() {
            let result = self.reader.receive(&self.input[self.start..]);
            let (used, event) = match result {
                Ok(ok) => ok,
                Err(error) => {
                    self.fail(&error);
                    return Err(error);
                }
            };
            self.start += used;
            if let Some(event) = event {
                self.answer(&event);
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// What the protocol itself must answer to an event.
    fn answer(&mut self, event: &Event) {
        match event {
            // §5.5.2: a pong carries the ping's payload back, unless we
            // are closing (our close must stay the last frame).
            Event::Ping(payload) => {
                let _ = self.send_control(OpCode::Pong, payload);
            }
            // §5.5.1: answer a close with a close, echoing the code; once
            // both have been sent the connection is closed.
            Event::Close(frame) => {
                if self.state == State::Open {
                    let code = frame.as_ref().map(|f| f.code);
                    let _ = self.send_close(code, "");
                }
                self.state = State::Closed;
            }
            Event::Text(_) | Event::Binary(_) | Event::Pong(_) => {}
        }
    }

    /// §7.1.7, "Fail the WebSocket Connection": send a close frame with the
    /// code that names the problem (if ours has not gone out yet), then
    /// read no more.
    fn fail(&mut self, error: &MessageError) {
        if self.state == State::Open {
            let _ = self.send_close(Some(error.close_code()), &error.to_string());
        }
        self.state = State::Closed;
    }

    /// Frames completed since the last call, as (a prefix of their wire
    /// bytes, their length), for the frame inspector; kept only while
    /// `keep` was last set (see [`MessageReader::keep_frames`]).
    pub fn keep_frames(&mut self, keep: bool) {
        self.reader.keep_frames = keep;
    }

    pub fn take_seen_frames(&mut self) -> Vec<(Vec<u8>, u64)> {
        self.reader.take_seen_frames()
    }

    // ----- bytes out -----

    /// The frames queued since the last call, to be written in this order.
    pub fn data_to_send(&mut self) -> Vec<Outgoing> {
        self.output.drain(..).collect()
    }

    /// The oldest frame queued, if any: [`Protocol::data_to_send`] one at
    /// a time, for a writer that writes each as it comes.
    pub fn next_to_send(&mut self) -> Option<Outgoing> {
        self.output.pop_front()
    }

    /// Queues a whole message in one frame.
    pub fn send_message(&mut self, message: Message) -> Result<(), SendError> {
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(data) => (OpCode::Binary, data),
        };
        self.check_open()?;
        self.queue_frame(true, opcode, payload);
        Ok(())
    }

    /// Queues one frame as it is given: the way to send a message in
    /// fragments (`fin` false, then continuations), or, in tests, frames a
    /// well-behaved sender would not. A close frame sent this way closes
    /// the sending side as [`Protocol::send_close`] does.
    pub fn send_frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.check_open()?;
        self.queue_frame(fin, opcode, payload.to_vec());
        if opcode == OpCode::Close {
            self.state = State::Closing;
        }
        Ok(())
    }

    /// Queues a frame whose header was encoded once for many connections
    /// and whose payload they all share (the hub's broadcast). Only a server
    /// may: client frames are masked, each with a key of its own.
    pub fn send_shared(&mut self, head: &[u8], payload: Arc<[u8]>) -> Result<(), SendError> {
        debug_assert_eq!(self.role, Role::Server, "a shared frame is unmasked");
        self.check_open()?;
        self.output.push_back(Outgoing {
            head: head.to_vec(),
            body: Body::Shared(payload),
        });
        Ok(())
    }

    /// Queues a ping (a liveness check; the peer answers with a pong).
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Starts the closing handshake, or (when answering the peer's close)
    /// finishes it. `None` sends an empty close payload: no code at all.
    /// From here on every send is refused.
    pub fn send_close(&mut self, code: Option<CloseCode>, reason: &str) -> Result<(), SendError> {
        self.check_open()?;
        let payload = code.map(|c| close_payload(c, reason)).unwrap_or_default();
        self.queue_frame(true, OpCode::Close, payload);
        self.state = State::Closing;
        Ok(())
    }

    /// A ping or a pong. Control frames carry at most 125 bytes (§5.5); a
    /// received ping is within that already, a ping of ours is cut to it.
    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        let cut = payload.len().min(frame::MAX_CONTROL_PAYLOAD);
        self.queue_frame(true, opcode, payload[..cut].to_vec());
        Ok(())
    }

    fn check_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::Closing | State::Closed => Err(SendError::Closed),
        }
    }

    /// Encodes one frame: masked with a fresh key by a client (§5.3),
    /// unmasked by a server (§5.1).
    fn queue_frame(&mut self, fin: bool, opcode: OpCode, mut payload: Vec<u8>) {
        let mask = (self.role == Role::Client).then(self.mask);
        let mut head = Vec::with_capacity(MAX_HEADER_LEN + payload.len().min(COPY_LIMIT));
        frame::encode_header(&mut head, fin, opcode, mask, payload.len() as u64);
        if let Some(mask) = mask {
            frame::apply_mask(&mut payload, mask, 0);
        }
        let body = if payload.len() <= COPY_LIMIT {
            head.extend_from_slice(&payload);
            Body::Empty
        } else {
            Body::Owned(payload)
        };
        self.output.push_back(Outgoing { head, body });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::frame::encode_masked_frame;

    /// RFC 6455 §5.7's masking key.
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn server() -> Protocol {
        Protocol::new(Role::Server, 1 << 20)
    }

    /// Everything queued to send, as the bytes that go on the wire.
    fn sent(protocol: &mut Protocol) -> Vec<u8> {
        let frames = protocol.data_to_send();
        frames.iter().flat_map(|f| f.parts().concat()).collect()
    }

    fn from_client(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        encode_masked_frame(true, opcode, payload, KEY)
    }

    #[test]
    fn a_ping_in_is_a_pong_out() {
        let mut p = server();
        // §5.7: a masked ping carrying "Hello".
        p.receive_data(&[
            0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!(p.next_event(), Ok(Some(Event::Ping(b"Hello".to_vec()))));
        assert_eq!(sent(&mut p), b"\x8a\x05Hello");
        assert_eq!(p.state(), State::Open);
    }

    #[test]
    fn a_close_in_is_echoed_with_its_code_and_ends_the_connection() {
        let mut p = server();
        p.receive_data(&from_client(OpCode::Close, b"\x03\xe8bye"));
        let event = p.next_event().unwrap().unwrap();
        assert!(matches!(&event, Event::Close(Some(f)) if f.code == CloseCode::Normal));
        assert_eq!(sent(&mut p), b"\x88\x02\x03\xe8");
        assert_eq!(p.state(), State::Closed);
        assert_eq!(
            p.send_message(Message::Text("late".into())),
            Err(SendError::Closed)
        );
        assert_eq!(sent(&mut p), b"", "nothing follows the close");
    }

    #[test]
    fn an_empty_close_is_answered_with_an_empty_close() {
        let mut p = server();
        p.receive_data(&from_client(OpCode::Close, b""));
        assert_eq!(p.next_event(), Ok(Some(Event::Close(None))));
        assert_eq!(sent(&mut p), b"\x88\x00");
    }

    #[test]
    fn a_bad_frame_in_is_a_close_with_1002_out() {
        let mut p = server();
        // RSV1 set, with no extension that defines it (§5.2).
        p.receive_data(&[0xC1, 0x80, 0, 0, 0, 0]);
        let error = p.next_event().unwrap_err();
        assert_eq!(error.close_code(), CloseCode::ProtocolError);
        let reason = b"reserved bits 100 set without an extension";
        let mut expected = vec![0x88, 2 + reason.len() as u8, 0x03, 0xea];
        expected.extend_from_slice(reason);
        assert_eq!(sent(&mut p), expected);
        // §7.1.7: after failing, nothing more is read.
        p.receive_data(&from_client(OpCode::Ping, b"x"));
        assert_eq!(p.next_event(), Ok(None));
        assert_eq!(sent(&mut p), b"");
        assert_eq!(p.state(), State::Closed);
    }

    #[test]
    fn bad_text_and_oversized_messages_have_their_own_codes() {
        let mut p = server();
        p.receive_data(&from_client(OpCode::Text, &[0xC3, 0x28]));
        assert!(p.next_event().is_err());
        assert_eq!(sent(&mut p)[..4], [0x88, 0x19, 0x03, 0xef]); // 1007

        let mut p = Protocol::new(Role::Server, 10);
        p.receive_data(&from_client(OpCode::Binary, &[0; 11]));
        assert!(p.next_event().is_err());
        assert_eq!(sent(&mut p)[2..4], [0x03, 0xf1]); // 1009
    }

    #[test]
    fn replies_keep_the_order_of_what_they_answer() {
        // A message, then a protocol error, in one read: the application's
        // answer to the message goes out before the close.
        let mut p = server();
        let mut input = from_client(OpCode::Text, b"hi");
        input.extend(from_client(OpCode::Continuation, b"orphan"));
        p.receive_data(&input);
        let Ok(Some(Event::Text(text))) = p.next_event() else {
            panic!("the text comes first");
        };
        p.send_message(Message::Text(text)).unwrap();
        assert!(p.next_event().is_err());
        let out = sent(&mut p);
        assert_eq!(&out[..4], b"\x81\x02hi");
        assert_eq!(out[4], 0x88);
    }

    #[test]
    fn after_our_close_nothing_else_is_sent_and_the_peer_close_completes_it() {
        let mut p = server();
        p.send_close(Some(CloseCode::Policy), "too slow").unwrap();
        assert_eq!(p.state(), State::Closing);
        assert_eq!(p.send_ping(b"?"), Err(SendError::Closed));
        assert_eq!(p.send_close(None, ""), Err(SendError::Closed));
        assert_eq!(sent(&mut p), b"\x88\x0a\x03\xf0too slow");
        // A ping that crosses our close is not answered: the close is last.
        p.receive_data(&from_client(OpCode::Ping, b"p"));
        p.receive_data(&from_client(OpCode::Close, b"\x03\xf0"));
        assert_eq!(p.next_event(), Ok(Some(Event::Ping(b"p".to_vec()))));
        assert!(matches!(p.next_event(), Ok(Some(Event::Close(Some(_))))));
        assert_eq!(sent(&mut p), b"", "the handshake is complete: no echo");
        assert_eq!(p.state(), State::Closed);
    }

    #[test]
    fn tcp_ending_without_a_close_closes_the_protocol() {
        let mut p = server();
        p.receive_eof();
        assert_eq!(p.state(), State::Closed);
        assert_eq!(p.send_ping(b""), Err(SendError::Closed));
    }

    #[test]
    fn a_client_masks_what_it_sends_and_answers_unmasked_pings() {
        let mut p = Protocol::new(Role::Client, 1 << 20).with_masks(|| KEY);
        p.send_message(Message::Text("Hello".into())).unwrap();
        // §5.7: the masked "Hello", byte for byte.
        assert_eq!(
            sent(&mut p),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        p.receive_data(&[0x89, 0x05, b'H', b'e', b'l', b'l', b'o']);
        assert_eq!(p.next_event(), Ok(Some(Event::Ping(b"Hello".to_vec()))));
        // §5.7: the masked pong answering it.
        assert_eq!(
            sent(&mut p),
            [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn large_payloads_are_moved_not_copied_behind_their_header() {
        let mut p = server();
        let big = vec![7u8; COPY_LIMIT + 1];
        p.send_message(Message::Binary(big.clone())).unwrap();
        let frames = p.data_to_send();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].head, [0x82, 0x7e, 0x40, 0x01]);
        assert_eq!(frames[0].body, Body::Owned(big));
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_events_and_replies() {
        let mut input = from_client(OpCode::Ping, b"one");
        input.extend(from_client(OpCode::Text, "héllo".as_bytes()));
        input.extend(from_client(OpCode::Close, b"\x03\xe9"));
        for chunk in [1, 2, 3, 7, input.len()] {
            let mut p = server();
            let mut events = Vec::new();
            for piece in input.chunks(chunk) {
                p.receive_data(piece);
                while let Some(event) = p.next_event().unwrap() {
                    events.push(event);
                }
            }
            assert_eq!(events.len(), 3, "chunks of {chunk}");
            assert_eq!(
                sent(&mut p),
                b"\x8a\x03one\x88\x02\x03\xe9",
                "chunks of {chunk}"
            );
        }
    }
}
