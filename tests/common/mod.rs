//! Shared helpers for the integration tests: a server on port 0, raw HTTP
//! requests, SSE and WebSocket clients, and a seeded random generator.
#![allow(dead_code, unused_imports)] // each test file uses a different part of this module

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub use realtime_by_hand::client::sse::{Item, SseConnection, SseEvent};
pub use realtime_by_hand::client::ws::{Received, WsClient};
pub use realtime_by_hand::client::Url;
pub use realtime_by_hand::config::Config;
pub use realtime_by_hand::json::{self, Json};
pub use realtime_by_hand::server::{RunningServer, Server};
pub use realtime_by_hand::websocket::message::{CloseFrame, Event};

/// A configuration for tests: a free port, no log lines, no ticker (tests
/// that want one set it), and the real `public/` directory.
///
/// The raw requests in the tests name made-up hosts (`Host: t`, `test`,
/// `x`), so those names are allowed, as `--allowed-host` would allow them.
/// The Host policy's own tests start from [`default_hosts`] instead.
pub fn test_config() -> Config {
    Config {
        port: 0,
        quiet: true,
        tick: Duration::ZERO,
        allowed_hosts: ["t", "test", "x"].map(String::from).to_vec(),
        ..Config::default()
    }
}

/// [`test_config`] with the Host policy's defaults: loopback names and the
/// `--host` address only.
pub fn default_hosts() -> Config {
    Config {
        allowed_hosts: Vec::new(),
        ..test_config()
    }
}

/// Starts a server on a free port, in this process.
pub fn start(config: Config) -> RunningServer {
    Server::bind(config).expect("bind").spawn().expect("spawn")
}

pub fn start_default() -> RunningServer {
    start(test_config())
}

/// A connected socket with generous timeouts, so a hung test fails instead
/// of hanging forever.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A response as the tests see it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Json {
        json::parse(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Reads one response with a `Content-Length` body (or none, for 1xx, 204
/// and answers to HEAD when `head_request` is set). Bytes after it stay
/// in `pending` for the next call.
pub fn read_response_from(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    head_request: bool,
) -> HttpResponse {
    let end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("read response");
        assert!(
            n > 0,
            "connection closed before a response; got {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    pending.drain(..end);
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
    let length = if head_request || status < 200 || status == 204 {
        0
    } else {
        length
    };
    while pending.len() < length {
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk).expect("read body");
        assert!(n > 0, "connection closed inside a body");
        pending.extend_from_slice(&chunk[..n]);
    }
    let body = pending.drain(..length).collect();
    HttpResponse {
        status,
        headers,
        body,
    }
}

pub fn read_response(stream: &mut TcpStream) -> HttpResponse {
    read_response_from(stream, &mut Vec::new(), false)
}

/// Sends raw bytes on a new connection and reads one response.
pub fn raw_request(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut stream = connect(addr);
    stream.write_all(raw).expect("write request");
    read_response(&mut stream)
}

pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
    raw_request(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// `POST /trigger-event` with `{"message": message}`; returns the event id.
pub fn trigger(addr: SocketAddr, message: &str) -> u64 {
    let mut body = String::new();
    json::write_string(&mut body, message);
    let response = post_json(addr, "/trigger-event", &format!("{{\"message\":{body}}}"));
    assert_eq!(response.status, 200, "{}", response.text());
    response
        .json()
        .get("id")
        .and_then(Json::as_f64)
        .expect("id") as u64
}

pub fn stats(addr: SocketAddr) -> Json {
    get(addr, "/stats").json()
}

pub fn stat(addr: SocketAddr, name: &str) -> u64 {
    stats(addr)
        .get(name)
        .and_then(Json::as_f64)
        .unwrap_or_else(|| panic!("no {name} in /stats")) as u64
}

/// Polls until `check` holds, for at most `limit`. Returns whether it did.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens `/events` (optionally resuming) with a read timeout.
pub fn open_events(addr: SocketAddr, last_event_id: Option<&str>) -> SseConnection {
    let url = Url::parse(&format!("http://{addr}/events"), &["http"]).unwrap();
    let connection = SseConnection::connect(&url, last_event_id).expect("open /events");
    connection
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    connection
}

/// The `type` field of an event's JSON data.
pub fn event_type(event: &SseEvent) -> String {
    json::parse(event.data.as_bytes())
        .ok()
        .and_then(|v| v.get("type").and_then(Json::as_str).map(str::to_string))
        .unwrap_or_default()
}

/// Opens a WebSocket to `path` on the server.
pub fn open_ws(addr: SocketAddr, path: &str) -> WsClient {
    let client = WsClient::connect(&format!("ws://{addr}{path}")).expect("WebSocket handshake");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
}

/// A small seeded generator (SplitMix64): the same seed gives the same
/// inputs on every run, so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Reads until the server's close frame, skipping messages (a chat's
/// welcome), pings and pongs. Panics if TCP ends first.
pub fn read_close(client: &mut WsClient) -> Option<CloseFrame> {
    for _ in 0..50 {
        match client.next_event() {
            Ok(Event::Close(frame)) => return frame,
            Ok(_) => {}
            Err(e) => panic!("the connection ended without a close frame: {e}"),
        }
    }
    panic!("no close frame among 50 events");
}
