//! The frame inspector behind `GET /inspect`: the [`Tap`] the connections
//! report to, and the listeners it hands records to. (The `/inspect` stream
//! itself is `app/inspector_feed.rs`.)
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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::json;
pub use crate::tap::Direction;
use crate::tap::{Tap, PREVIEW};

/// Records that may wait for one listener before new ones are dropped.
const LISTENER_QUEUE: usize = 512;

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

    /// The tap for one connection, or `None` with `--no-inspect`.
    pub fn tap(self: &Arc<Inspector>, connection: u64, kind: Kind) -> Option<ConnectionTap> {
        self.enabled.then(|| ConnectionTap {
            inspector: Arc::clone(self),
            connection,
            kind,
        })
    }

    /// Reports a frame or event of `total` bytes of which only the first
    /// ones, `prefix`, are at hand.
    pub fn record(
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
        let preview = &prefix[..prefix.len().min(PREVIEW)];
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

    /// Starts listening: records from now on arrive in the returned
    /// [`Listening`]'s queue, until it is dropped.
    pub fn listen(self: &Arc<Inspector>) -> Listening {
        let (queue, records) = sync_channel(LISTENER_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.push(Listener {
            queue,
            dropped: Arc::clone(&dropped),
        });
        self.listening.store(listeners.len(), Ordering::Relaxed);
        Listening {
            inspector: Arc::clone(self),
            records,
            dropped,
        }
    }

    fn forget(&self, dropped: &Arc<AtomicU64>) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.retain(|l| !Arc::ptr_eq(&l.dropped, dropped));
        self.listening.store(listeners.len(), Ordering::Relaxed);
    }
}

/// One listener's place: its queue of records (JSON texts) and the count of
/// records that did not fit in it. Dropping it stops the listening.
pub struct Listening {
    inspector: Arc<Inspector>,
    pub records: Receiver<Arc<String>>,
    pub dropped: Arc<AtomicU64>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.inspector.forget(&self.dropped);
    }
}

/// The inspector's [`Tap`] for one connection: the protocols report through
/// it without knowing the inspector exists.
#[derive(Clone)]
pub struct ConnectionTap {
    inspector: Arc<Inspector>,
    connection: u64,
    kind: Kind,
}

impl Tap for ConnectionTap {
    fn watching(&self) -> bool {
        self.inspector.active()
    }

    fn record(&self, direction: Direction, prefix: &[u8], total: usize) {
        let (connection, kind) = (self.connection, self.kind);
        self.inspector
            .record(direction, connection, kind, prefix, total);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_without_listeners_and_bounded_with_one() {
        let inspector = Arc::new(Inspector::new(true));
        inspector.record(Direction::Out, 1, Kind::Sse, b"data: x\n\n", 9);
        let listening = inspector.listen();
        let (records, dropped) = (&listening.records, &listening.dropped);
        assert!(
            records.try_recv().is_err(),
            "nothing recorded before anyone listened"
        );
        for _ in 0..LISTENER_QUEUE + 10 {
            let frame = [0x81, 0x85, 1, 2, 3, 4, 0, 0, 0, 0, 0];
            inspector.record(Direction::In, 2, Kind::WebSocket, &frame, frame.len());
        }
        assert_eq!(records.try_iter().count(), LISTENER_QUEUE);
        assert_eq!(dropped.load(Ordering::Relaxed), 10);
        drop(listening);
        assert!(!inspector.active());
    }

    #[test]
    fn a_record_shows_the_first_bytes_as_hex() {
        let inspector = Arc::new(Inspector::new(true));
        let listening = inspector.listen();
        let frame = vec![0xABu8; 1000];
        let tap = inspector.tap(9, Kind::WebSocket).unwrap();
        tap.record(Direction::Out, &frame, frame.len());
        let record = json::parse(listening.records.recv().unwrap().as_bytes()).unwrap();
        assert_eq!(record.get("len").and_then(json::Json::as_f64), Some(1000.0));
        assert_eq!(record.get("dir").and_then(json::Json::as_str), Some("out"));
        assert_eq!(record.get("kind").and_then(json::Json::as_str), Some("ws"));
        assert_eq!(
            record.get("hex").and_then(json::Json::as_str).map(str::len),
            Some(2 * PREVIEW)
        );
        assert_eq!(to_hex(&[0, 0x0f, 0xf0, 0xff]), "000ff0ff");
    }
}
