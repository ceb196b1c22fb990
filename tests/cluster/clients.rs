//! The clients' side of the cluster tests: posting over kept-alive
//! connections, reading broadcasts from event streams and chats, checking
//! a sequence of ids, and turning delays into figures worth quoting.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    connect, event_type, json, read_response_from, HttpResponse, Json, Received, SseConnection,
    Url, WsClient,
};

/// `POST /trigger-event`, over one connection kept alive from one post to
/// the next, as a busy client (or nginx) would.
pub struct Poster {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// Bytes read past the last response (none, with one request at a time).
    pending: Vec<u8>,
}

impl Poster {
    pub fn new(addr: SocketAddr) -> Poster {
        Poster {
            addr,
            stream: None,
            pending: Vec::new(),
        }
    }

    /// Posts `{"message": message}` and reads the answer.
    pub fn post(&mut self, message: &str) -> HttpResponse {
        let mut quoted = String::new();
        json::write_string(&mut quoted, message);
        let body = format!("{{\"message\":{quoted}}}");
        let request = format!(
            "POST /trigger-event HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let addr = self.addr;
        let stream = self.stream.get_or_insert_with(|| connect(addr));
        stream.write_all(request.as_bytes()).expect("write a post");
        let response = read_response_from(stream, &mut self.pending, false);
        if response.header("connection") == Some("close") {
            self.stream = None;
            self.pending.clear();
        }
        response
    }

    /// Posts and returns the event's id; anything but `200` fails the test.
    pub fn trigger(&mut self, message: &str) -> u64 {
        let response = self.post(message);
        assert_eq!(response.status, 200, "{}", response.text());
        response
            .json()
            .get("id")
            .and_then(Json::as_f64)
            .expect("an id") as u64
    }
}

/// A broadcast as a stream or a chat delivers it.
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// The SSE `id:` (0 for a chat message, which carries none).
    pub id: u64,
    /// The `type` of its JSON data: `notification`, `chat`, `reset`, …
    pub kind: String,
    pub data: Json,
}

impl Broadcast {
    pub fn message(&self) -> &str {
        self.data
            .get("message")
            .and_then(Json::as_str)
            .unwrap_or("")
    }
}

/// Opens an event stream (`url`: `http://…/events`) and reads its opening,
/// the welcome and `initial_data`, so that it is surely subscribed when
/// this returns. Every read waits at most 10 s.
pub fn open_stream(url: &str, last_event_id: Option<&str>) -> SseConnection {
    let parsed = Url::parse(url, &["http"]).expect("an http:// URL");
    let mut events = SseConnection::connect(&parsed, last_event_id)
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    events
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for expected in ["welcome", "initial_data"] {
        let event = events.next_event().expect("the stream's opening");
        assert_eq!(event_type(&event), expected, "{}", event.data);
    }
    events
}

/// The next event of a stream, as a broadcast. Panics if the stream ends
/// or stays quiet for its read timeout.
pub fn next_broadcast(events: &mut SseConnection) -> Broadcast {
    let event = events
        .next_event()
        .unwrap_or_else(|e| panic!("waiting for an event: {e}"));
    let data = json::parse(event.data.as_bytes()).expect("JSON data");
    Broadcast {
        id: event.last_event_id.parse().expect("a numeric id"),
        kind: event_type(&event),
        data,
    }
}

/// Reads broadcasts until one with id `last` (or a reset) has come, for at
/// most `limit` in all and `last + 100` events: the ids and messages seen.
pub fn read_until(events: &mut SseConnection, last: u64, limit: Duration) -> Vec<(u64, String)> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while Instant::now() < deadline && (seen.len() as u64) < last + 100 {
        let broadcast = next_broadcast(events);
        seen.push((broadcast.id, broadcast.message().to_string()));
        if broadcast.id >= last {
            break;
        }
    }
    seen
}

/// Checks that `ids` is exactly `first..=last`, in order; on failure says
/// where and how it went wrong (a gap, a duplicate, or a step back).
pub fn check_sequence(who: &str, ids: &[u64], first: u64, last: u64) {
    let mut expected = first;
    for (at, &id) in ids.iter().enumerate() {
        if id != expected {
            let what = if id == expected + 1 {
                format!("a gap: {expected} is missing")
            } else if id > expected {
                format!("a gap: {expected} to {} are missing", id - 1)
            } else if ids[..at].contains(&id) {
                format!("id {id} a second time")
            } else {
                format!("id {id} after {}: out of order", ids[at - 1])
            };
            panic!(
                "{who}: event {} of {} should be id {expected}; {what}",
                at + 1,
                ids.len()
            );
        }
        expected += 1;
    }
    assert_eq!(
        expected,
        last + 1,
        "{who}: the sequence stops at {}, before {last}",
        expected - 1
    );
}

/// Opens a chat WebSocket (`ws://ADDR/ws`) and reads its welcome.
pub fn open_chat(addr: SocketAddr) -> WsClient {
    let mut client = WsClient::connect(&format!("ws://{addr}/ws"))
        .unwrap_or_else(|e| panic!("chat handshake with {addr}: {e}"));
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let welcome = next_text(&mut client);
    assert_eq!(welcome.kind, "welcome", "{}", welcome.data);
    client
}

/// Sends a chat message as `tester`.
pub fn send_chat(client: &mut WsClient, message: &str) {
    let mut quoted = String::new();
    json::write_string(&mut quoted, message);
    let text = format!("{{\"type\":\"chat\",\"message\":{quoted},\"username\":\"tester\"}}");
    client.send_text(&text).expect("send a chat message");
}

/// The next text message of a chat, as a broadcast (id 0).
pub fn next_text(client: &mut WsClient) -> Broadcast {
    match client.receive() {
        Ok(Received::Text(text)) => {
            let data = json::parse(text.as_bytes()).expect("JSON text");
            let kind = data.get("type").and_then(Json::as_str).unwrap_or("");
            Broadcast {
                id: 0,
                kind: kind.to_string(),
                data,
            }
        }
        other => panic!("waiting for a chat message: {other:?}"),
    }
}

/// Reads a stream in a thread, `count` broadcasts, and sends each with
/// the moment it was read: for delays measured against post times.
pub fn timed_stream(mut events: SseConnection, count: usize) -> Receiver<(Instant, Broadcast)> {
    let (sender, arrivals) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..count {
            let Ok(event) = events.next_event() else {
                return;
            };
            let broadcast = Broadcast {
                id: event.last_event_id.parse().unwrap_or(0),
                kind: event_type(&event),
                data: json::parse(event.data.as_bytes()).unwrap_or(Json::Null),
            };
            if sender.send((Instant::now(), broadcast)).is_err() {
                return;
            }
        }
    });
    arrivals
}

/// The same for a chat connection: `count` text messages.
pub fn timed_chat(mut client: WsClient, count: usize) -> Receiver<(Instant, Broadcast)> {
    let (sender, arrivals) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..count {
            let Ok(Received::Text(text)) = client.receive() else {
                return;
            };
            let data = json::parse(text.as_bytes()).unwrap_or(Json::Null);
            let kind = data.get("type").and_then(Json::as_str).unwrap_or("");
            let broadcast = Broadcast {
                id: 0,
                kind: kind.to_string(),
                data,
            };
            if sender.send((Instant::now(), broadcast)).is_err() {
                return;
            }
        }
    });
    arrivals
}

/// Median and 99th percentile of some delays.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn figures(samples: &[Duration]) -> Figures {
    assert!(!samples.is_empty(), "no samples");
    let mut sorted = samples.to_vec();
    sorted.sort();
    // The nearest-rank percentile: the smallest sample with at least p %
    // of the samples at or below it.
    let rank = |p: f64| ((p / 100.0 * sorted.len() as f64).ceil() as usize).max(1) - 1;
    Figures {
        median: sorted[rank(50.0)],
        p99: sorted[rank(99.0)],
        max: sorted[sorted.len() - 1],
    }
}

/// A delay in milliseconds, two decimals: `0.42 ms`.
pub fn ms(delay: Duration) -> String {
    format!("{:.2} ms", delay.as_secs_f64() * 1000.0)
}

/// A response read raw, as it arrives: every read with its moment. For
/// seeing what a proxy holds back and when it lets it go.
#[derive(Default)]
pub struct Timeline {
    pub bytes: Vec<u8>,
    /// After each read: when it returned, and how many bytes there were
    /// in all by then.
    pub reads: Vec<(Instant, usize)>,
}

/// Sends `GET path` and reads the answer raw in a thread, sending each
/// piece with its moment, until the connection ends, or stays silent for
/// 30 s, or 10,000 reads.
pub fn raw_reader(addr: SocketAddr, path: &str) -> Receiver<(Instant, Vec<u8>)> {
    let mut stream = connect(addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send the GET");
    let (sender, pieces) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        for _ in 0..10_000 {
            match std::io::Read::read(&mut stream, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if sender.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    pieces
}

impl Timeline {
    /// Takes what `pieces` holds now, or within `wait`; whether anything came.
    pub fn take(&mut self, pieces: &Receiver<(Instant, Vec<u8>)>, wait: Duration) -> bool {
        let before = self.reads.len();
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match pieces.recv_timeout(left) {
                Ok((at, piece)) => {
                    self.bytes.extend_from_slice(&piece);
                    self.reads.push((at, self.bytes.len()));
                }
                Err(_) => return self.reads.len() > before,
            }
        }
    }

    /// When the byte at `index` arrived.
    pub fn arrival(&self, index: usize) -> Instant {
        let read = self.reads.iter().find(|(_, total)| *total > index);
        read.expect("a byte that arrived").0
    }

    /// The end of the response head.
    pub fn head_end(&self) -> Option<usize> {
        self.bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
    }
}

/// A chunked body taken apart: the size of each chunk, and for every byte
/// of the data where it was in the raw bytes.
pub struct Dechunked {
    pub chunk_sizes: Vec<usize>,
    pub data: Vec<u8>,
    pub raw_index: Vec<usize>,
}

/// Reads the chunks from `start` (where the body begins) to the last
/// complete one; `0\r\n` ends it.
pub fn dechunk(raw: &[u8], start: usize) -> Dechunked {
    let mut out = Dechunked {
        chunk_sizes: Vec::new(),
        data: Vec::new(),
        raw_index: Vec::new(),
    };
    let mut at = start;
    while let Some(line_end) = raw[at..].windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[at..at + line_end]).to_string();
        let size = usize::from_str_radix(size_text.trim(), 16).expect("a chunk size");
        let data_start = at + line_end + 2;
        if size == 0 || data_start + size + 2 > raw.len() {
            break;
        }
        out.chunk_sizes.push(size);
        out.data
            .extend_from_slice(&raw[data_start..data_start + size]);
        out.raw_index.extend(data_start..data_start + size);
        at = data_start + size + 2;
    }
    out
}
