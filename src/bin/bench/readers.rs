//! Subscribers: up to 10,000 sockets held by this process, each read by a
//! thread of its own.
//!
//! Design: a thread per subscriber, with a 64 KiB stack, blocked in `read`
//! until its event's bytes arrive; the arrival time is taken right after
//! that `read` returns, before the bytes are parsed. `std` has no `poll` or
//! `epoll`; the other way, a few threads scanning non-blocking sockets,
//! was tried first and dropped: a scan costs a `read` per socket per pass
//! whether or not anything arrived (at 10,000 sockets, passes of 3 ms kept
//! both cores busy through every burst), so on two cores the readers took
//! CPU time from the very writer they were timing and from the kernel's
//! softirq thread, the loopback device dropped packets, and TCP's
//! retransmissions (200 ms and more) became the figures. A blocked thread
//! costs nothing until its data comes, and then one wake-up: the load's
//! cost grows with what arrives, not with how long it waits.
//!
//! What that costs: 10,000 threads here besides the server's 10,000 (the
//! machine allows 32,768 tasks; each thread takes about four memory maps of
//! the 65,530 a process may have, and its stack's touched pages). A thread
//! ends as soon as its subscriber has every event it waits for.
//!
//! Each subscriber costs one socket: the handshakes (HTTP for SSE, the
//! upgrade for WebSocket) are done here with the client library's pieces
//! (`read_response_head`, the event-stream parser, the WebSocket protocol
//! core), because `SseConnection` does not hand out its socket and
//! `WsClient` keeps a second one for writing.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use realtime_by_hand::client::read_response_head;
use realtime_by_hand::client::sse::{Dechunker, EventStreamParser, Item, SseEvent};
use realtime_by_hand::random;
use realtime_by_hand::websocket::handshake::accept_key;
use realtime_by_hand::websocket::message::{Event, Role};
use realtime_by_hand::websocket::protocol::Protocol;

use crate::procs::RAW_HELLO;
use crate::report::Progress;
use crate::target::find_marker;

/// Events a run can tell apart (one bit each per subscriber).
pub const MAX_EVENTS: usize = 64;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a subscriber speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET /events`.
    Sse,
    /// A chat WebSocket on `/ws`.
    Ws,
    /// The raw fan-out: SSE-formatted bytes with no HTTP at all.
    Raw,
}

enum Decoder {
    /// An event stream, and its dechunker when it arrives in chunks: this
    /// server ends a stream by closing the connection, but nginx in front
    /// of it sends an HTTP/1.1 client `Transfer-Encoding: chunked`.
    Sse(EventStreamParser, Option<Dechunker>),
    Ws(Box<Protocol>),
}

/// One subscriber: its socket, its parser, and what it has received.
pub struct Sub {
    stream: TcpStream,
    decoder: Decoder,
    /// Bit `seq` set when event `seq` arrived.
    pub got: u64,
    /// Each event's arrival, in the order seen.
    pub arrivals: Vec<(usize, Instant)>,
    /// SSE only: every marked event as it came, with its `id:`, repeats
    /// included, for the cluster's check that ids follow one another.
    pub ids: Vec<(usize, u64)>,
    /// SSE only: the welcome's `id:`, where this stream's ids start from.
    pub first_id: Option<u64>,
    /// SSE only: `periodic_update` events seen. The bench starts servers
    /// with `--tick-secs 0`, so there must be none.
    pub ticks: usize,
    /// Which server this subscriber was opened on, when a set-up has
    /// several (the cluster's instances); 0 otherwise.
    pub on: usize,
    dead: bool,
}

/// How an attempt to subscribe ended.
pub enum Opened {
    /// Boxed: a subscriber is large beside the other two answers.
    Sub(Box<Sub>),
    /// `503`: the server is at its cap.
    Refused,
    Failed(String),
}

/// Connects and subscribes, with timeouts.
pub fn open(kind: Kind, addr: SocketAddr) -> Opened {
    let mut stream = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(stream) => stream,
        Err(e) => return Opened::Failed(format!("connect: {e}")),
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CONNECT_TIMEOUT));
    let handshake = match kind {
        Kind::Raw => raw_handshake(&mut stream),
        Kind::Sse => sse_handshake(&mut stream, addr),
        Kind::Ws => ws_handshake(&mut stream, addr),
    };
    let (decoder, leftover) = match handshake {
        Ok(Some(opened)) => opened,
        Ok(None) => return Opened::Refused,
        Err(e) => return Opened::Failed(e),
    };
    let mut sub = Sub {
        stream,
        decoder,
        got: 0,
        arrivals: Vec::new(),
        ids: Vec::new(),
        first_id: None,
        ticks: 0,
        on: 0,
        dead: false,
    };
    sub.take(&leftover, Instant::now(), None);
    Opened::Sub(Box::new(sub))
}

type Handshake = Result<Option<(Decoder, Vec<u8>)>, String>;

/// The raw writer's first bytes: the connection has been accepted.
fn raw_handshake(stream: &mut TcpStream) -> Handshake {
    let mut hello = vec![0u8; RAW_HELLO.len()];
    stream
        .read_exact(&mut hello)
        .map_err(|e| format!("the raw writer's hello: {e}"))?;
    Ok(Some((Decoder::Sse(EventStreamParser::new(), None), hello)))
}

fn sse_handshake(stream: &mut TcpStream, addr: SocketAddr) -> Handshake {
    let request =
        format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let (head, leftover) = read_response_head(stream).map_err(|e| e.to_string())?;
    match head.status {
        200 => {
            let dechunker = head
                .has_token("transfer-encoding", "chunked")
                .then(Dechunker::default);
            Ok(Some((
                Decoder::Sse(EventStreamParser::new(), dechunker),
                leftover,
            )))
        }
        503 => Ok(None),
        status => Err(format!("GET /events answered {status} {}", head.reason)),
    }
}

fn ws_handshake(stream: &mut TcpStream, addr: SocketAddr) -> Handshake {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&random::random_u64().to_ne_bytes());
    key[8..].copy_from_slice(&random::random_u64().to_ne_bytes());
    let key = BASE64.encode(key);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let (head, leftover) = read_response_head(stream).map_err(|e| e.to_string())?;
    match head.status {
        101 if head.header("sec-websocket-accept") == Some(accept_key(&key).as_str()) => {
            let mut protocol = Protocol::new(Role::Client, 1 << 20);
            protocol.receive_data(&leftover);
            Ok(Some((Decoder::Ws(Box::new(protocol)), Vec::new())))
        }
        101 => Err("the upgrade's Sec-WebSocket-Accept is wrong".into()),
        503 => Ok(None),
        status => Err(format!("the upgrade answered {status} {}", head.reason)),
    }
}

impl Sub {
    fn live(&self, want: u64) -> bool {
        !self.dead && self.got & want != want
    }

    /// Reads until the subscriber has every event it waits for, the
    /// connection ends, or the pool stops (seen at each read timeout).
    fn follow(mut self, shared: &Shared) -> Sub {
        let _ = self.stream.set_read_timeout(Some(STOP_CHECK));
        let mut buf = [0u8; 8192];
        while self.live(shared.want) && !shared.stop.load(Ordering::Relaxed) {
            match (&self.stream).read(&mut buf) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    let now = Instant::now();
                    self.take(&buf[..n], now, Some(shared));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.dead = true,
            }
        }
        self
    }

    /// Decodes bytes that arrived at `now` and records the events in them.
    fn take(&mut self, bytes: &[u8], now: Instant, shared: Option<&Shared>) {
        let mut seen = Vec::new();
        match &mut self.decoder {
            Decoder::Sse(parser, dechunker) => {
                let mut plain = Vec::new();
                let bytes = match dechunker {
                    Some(dechunker) => match dechunker.feed(bytes, &mut plain) {
                        Ok(()) => &plain[..],
                        Err(_) => {
                            self.dead = true;
                            return;
                        }
                    },
                    None => bytes,
                };
                for item in parser.feed(bytes) {
                    if let Item::Event(event) = item {
                        seen.extend(self.note_sse(&event));
                    }
                }
            }
            Decoder::Ws(protocol) => {
                protocol.receive_data(bytes);
                loop {
                    match protocol.next_event() {
                        Ok(Some(Event::Text(text))) => seen.extend(find_marker(&text)),
                        Ok(Some(Event::Close(_))) | Err(_) => self.dead = true,
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                    }
                }
                // The core's answers (a pong, the close): small, written at once.
                for frame in protocol.data_to_send() {
                    for part in frame.parts() {
                        let _ = (&self.stream).write_all(part);
                    }
                }
            }
        }
        for seq in seen {
            self.record(seq, now, shared);
        }
    }

    /// An SSE event's marker, if it has one; its id goes to `ids`, or to
    /// `first_id` for the first event without a marker (the welcome).
    fn note_sse(&mut self, event: &SseEvent) -> Option<usize> {
        let id = event.last_event_id.parse().ok();
        match find_marker(&event.data) {
            Some(seq) => {
                self.ids.extend(id.map(|id| (seq, id)));
                Some(seq)
            }
            None => {
                if event.data.contains("\"type\":\"periodic_update\"") {
                    self.ticks += 1;
                } else if self.first_id.is_none() {
                    self.first_id = id;
                }
                None
            }
        }
    }

    fn record(&mut self, seq: usize, now: Instant, shared: Option<&Shared>) {
        let bit = 1u64.checked_shl(seq as u32).unwrap_or(0);
        if bit == 0 || self.got & bit != 0 {
            return;
        }
        self.got |= bit;
        self.arrivals.push((seq, now));
        if let Some(shared) = shared {
            shared.counts[seq].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Many attempts to subscribe, and how they ended.
#[derive(Default)]
pub struct Crowd {
    pub subs: Vec<Sub>,
    pub refused: usize,
    pub failed: usize,
    pub first_error: Option<String>,
}

/// Threads that open subscribers at once: the server starts a thread for
/// each, so a few in flight keep both cores busy.
const CONNECTORS: usize = 4;

/// Opens `n` subscribers from a few threads, showing the count as it goes.
pub fn open_many(kind: Kind, addr: SocketAddr, n: usize, progress: &Progress, what: &str) -> Crowd {
    let done = AtomicUsize::new(0);
    let crowds: Vec<Crowd> = thread::scope(|scope| {
        let workers: Vec<_> = (0..CONNECTORS.min(n.max(1)))
            .map(|first| {
                let done = &done;
                scope.spawn(move || {
                    let mut crowd = Crowd::default();
                    for _ in (first..n).step_by(CONNECTORS) {
                        match open(kind, addr) {
                            Opened::Sub(sub) => crowd.subs.push(*sub),
                            Opened::Refused => crowd.refused += 1,
                            Opened::Failed(e) => {
                                crowd.failed += 1;
                                crowd.first_error.get_or_insert(e);
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    crowd
                })
            })
            .collect();
        while !workers.iter().all(|w| w.is_finished()) {
            progress.detail(&format!(
                "{what}: connecting {}/{n}",
                done.load(Ordering::Relaxed)
            ));
            thread::sleep(Duration::from_millis(100));
        }
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let mut all = Crowd::default();
    for crowd in crowds {
        all.subs.extend(crowd.subs);
        all.refused += crowd.refused;
        all.failed += crowd.failed;
        all.first_error = all.first_error.or(crowd.first_error);
    }
    all
}

/// How often a waiting reader looks whether the pool has stopped.
const STOP_CHECK: Duration = Duration::from_secs(1);

/// A reader thread's stack: a read buffer, a parser, no recursion.
const READER_STACK: usize = 64 * 1024;

/// What the reader threads share with the bench's conductor.
struct Shared {
    stop: AtomicBool,
    /// How many subscribers have event `seq`.
    counts: Vec<AtomicUsize>,
    /// The events every subscriber waits for.
    want: u64,
}

/// The reader threads, one per subscriber.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Sub>>,
    pub held: usize,
}

impl Pool {
    /// Starts a reader for each subscriber, waiting for events `0..events`.
    pub fn start(subs: Vec<Sub>, events: usize) -> Result<Pool, String> {
        let want = if events >= MAX_EVENTS {
            u64::MAX
        } else {
            (1u64 << events) - 1
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            counts: (0..MAX_EVENTS).map(|_| AtomicUsize::new(0)).collect(),
            want,
        });
        let mut pool = Pool {
            shared,
            threads: Vec::with_capacity(subs.len()),
            held: subs.len(),
        };
        for sub in subs {
            let shared = Arc::clone(&pool.shared);
            let spawned = thread::Builder::new()
                .name("reader".into())
                .stack_size(READER_STACK)
                .spawn(move || sub.follow(&shared));
            match spawned {
                Ok(thread) => pool.threads.push(thread),
                Err(e) => {
                    let started = pool.threads.len();
                    pool.finish();
                    return Err(format!(
                        "could not start reader thread {}: {e}",
                        started + 1
                    ));
                }
            }
        }
        Ok(pool)
    }

    /// How many subscribers have event `seq`.
    pub fn count(&self, seq: usize) -> usize {
        self.shared.counts[seq].load(Ordering::Relaxed)
    }

    /// Waits until every subscriber has every event in `seqs`, at most
    /// until `deadline`. True when they all have.
    pub fn wait_for(&self, seqs: std::ops::Range<usize>, deadline: Instant) -> bool {
        loop {
            if seqs.clone().all(|seq| self.count(seq) >= self.held) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the readers and hands back the subscribers.
    pub fn finish(mut self) -> Vec<Sub> {
        self.shared.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.threads)
            .into_iter()
            .filter_map(|t| t.join().ok())
            .collect()
    }
}

impl Drop for Pool {
    /// A pool left behind (a run that failed half-way) stops its readers;
    /// each ends at its next read timeout.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
