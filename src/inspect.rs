//! The frame inspector behind `GET /inspect`.
//!
//! A page's JavaScript never sees the bytes on the wire: `EventSource` hands
//! it parsed events, `WebSocket` hands it unmasked messages. The server does
//! see them, so it reports them: every SSE event it writes and every
//! WebSocket frame it reads or writes on the chat and SSE connections
//! becomes one record (direction, connection id, kind, length, the first
//! bytes as hex), sent to whoever listens on `/inspect` as an SSE stream.
//!
//! The inspector must never slow the connections it watches:
//! - with nobody listening, [`Inspector::record`] is one atomic load;
//! - each listener has a bounded queue, and a record that does not fit is
//!   dropped for that listener (and counted), never waited for;
//! - `--no-inspect` turns it off entirely.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::write_all_within;
use crate::json;
use crate::server::Shared;
use crate::sse;

/// How many bytes of each frame or event a record shows.
pub const PREVIEW_BYTES: usize = 256;

/// Records that may wait for one listener before new ones are dropped.
const LISTENER_QUEUE: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server.
    In,
    /// From the server to the client.
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sse,
    WebSocket,
}

struct Listener {
    queue: SyncSender<Arc<String>>,
    dropped: Arc<AtomicU64>,
}

pub struct Inspector {
    enabled: bool,
    listening: AtomicUsize,
    listeners: Mutex<Vec<Listener>>,
    next_seq: AtomicU64,
}

impl Inspector {
    pub fn new(enabled: bool) -> Inspector {
        Inspector {
            enabled,
            listening: AtomicUsize::new(0),
            listeners: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(1),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// True when someone is listening: callers that would do extra work
    /// just to build a record (re-masking a frame) check this first.
    pub fn active(&self) -> bool {
        self.listening.load(Ordering::Relaxed) > 0
    }

    /// Reports `bytes` (a whole frame or event; only a prefix is kept).
    pub fn record(&self, direction: Direction, connection: u64, kind: Kind, bytes: &[u8]) {
        self.record_prefix(direction, connection, kind, bytes, bytes.len());
    }

    /// Reports a frame or event of `total` bytes of which only the first
    /// ones, `prefix`, are at hand.
    pub fn record_prefix(
        &self,
        direction: Direction,
        connection: u64,
        kind: Kind,
        prefix: &[u8],
        total: usize,
    ) {
        if !self.active() {
            return;
        }
        let preview = &prefix[..prefix.len().min(PREVIEW_BYTES)];
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let record = json::object([
            ("seq", self.next_seq.fetch_add(1, Ordering::Relaxed).into()),
            ("time", millis.into()),
            (
                "dir",
                if direction == Direction::In {
                    "in"
                } else {
                    "out"
                }
                .into(),
            ),
            ("conn", connection.into()),
            ("kind", if kind == Kind::Sse { "sse" } else { "ws" }.into()),
            ("len", (total as u64).into()),
            ("hex", to_hex(preview).into()),
        ]);
        let record = Arc::new(record.to_string());
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        for listener in listeners.iter() {
            if let Err(TrySendError::Full(_)) = listener.queue.try_send(Arc::clone(&record)) {
                listener.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn listen(&self) -> (Receiver<Arc<String>>, Arc<AtomicU64>) {
        let (queue, receiver) = sync_channel(LISTENER_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.push(Listener {
            queue,
            dropped: Arc::clone(&dropped),
        });
        self.listening.store(listeners.len(), Ordering::Relaxed);
        (receiver, dropped)
    }

    fn forget(&self, dropped: &Arc<AtomicU64>) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.retain(|l| !Arc::ptr_eq(&l.dropped, dropped));
        self.listening.store(listeners.len(), Ordering::Relaxed);
    }
}

/// Lowercase hex, two digits per byte.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Serves `GET /inspect`: an SSE stream of records, one event each.
/// (With `--no-inspect` the router answers 404 instead of calling this.)
pub fn serve_stream(mut stream: TcpStream, shared: &Shared, id: u64) {
    let inspector = &shared.inspector;
    let (records, dropped) = inspector.listen();
    shared.log(format_args!("client {id} is watching the frame inspector"));
    // A comment opens the stream: the head alone may sit in a proxy's buffer.
    let mut opening = sse::STREAM_HEAD.to_vec();
    opening.extend(sse::format_comment("frame inspector: one event per frame"));
    let timeout = shared.config.write_timeout;
    let mut ok = write_all_within(&stream, &opening, timeout).is_ok();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
    let mut last_write = Instant::now();
    let mut reported_drops = 0;
    while ok {
        match records.recv_timeout(Duration::from_secs(1)) {
            Ok(first) => {
                let mut batch = Vec::new();
                let drops = dropped.load(Ordering::Relaxed);
                if drops != reported_drops {
                    let note = json::object([("dropped", drops.into())]);
                    batch.extend(sse::format_event(None, Some("dropped"), &note.to_string()));
                    reported_drops = drops;
                }
                for record in std::iter::once(first).chain(records.try_iter()) {
                    batch.extend(sse::format_event(None, None, &record));
                }
                ok = write_all_within(&stream, &batch, timeout).is_ok();
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                if sse::client_gone(&mut stream) {
                    break;
                }
                if last_write.elapsed() >= shared.config.keepalive {
                    let comment = sse::format_comment("keep-alive");
                    ok = write_all_within(&stream, &comment, timeout).is_ok();
                    last_write = Instant::now();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    inspector.forget(&dropped);
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_without_listeners_and_bounded_with_one() {
        let inspector = Inspector::new(true);
        inspector.record(Direction::Out, 1, Kind::Sse, b"data: x\n\n");
        let (records, dropped) = inspector.listen();
        assert!(
            records.try_recv().is_err(),
            "nothing recorded before anyone listened"
        );
        for _ in 0..LISTENER_QUEUE + 10 {
            inspector.record(
                Direction::In,
                2,
                Kind::WebSocket,
                &[0x81, 0x85, 1, 2, 3, 4, 0, 0, 0, 0, 0],
            );
        }
        assert_eq!(records.try_iter().count(), LISTENER_QUEUE);
        assert_eq!(dropped.load(Ordering::Relaxed), 10);
        inspector.forget(&dropped);
        assert!(!inspector.active());
    }

    #[test]
    fn a_record_shows_the_first_bytes_as_hex() {
        let inspector = Inspector::new(true);
        let (records, _) = inspector.listen();
        let frame = vec![0xABu8; 1000];
        inspector.record(Direction::Out, 9, Kind::WebSocket, &frame);
        let record = json::parse(records.recv().unwrap().as_bytes()).unwrap();
        assert_eq!(record.get("len").and_then(json::Json::as_f64), Some(1000.0));
        assert_eq!(record.get("dir").and_then(json::Json::as_str), Some("out"));
        assert_eq!(record.get("kind").and_then(json::Json::as_str), Some("ws"));
        assert_eq!(
            record.get("hex").and_then(json::Json::as_str).map(str::len),
            Some(2 * PREVIEW_BYTES)
        );
        assert_eq!(to_hex(&[0, 0x0f, 0xf0, 0xff]), "000ff0ff");
    }
}
