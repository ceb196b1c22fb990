//! SSE fan-out: one thread writes each event to every stream's socket
//! itself, and a stream's own thread takes over only when its socket is
//! full.
//!
//! The obvious design, a queue per stream and a thread per stream waiting
//! on it, costs one wake-up (a system call, and a thread switch) per
//! stream per event, and each thread woke every second besides to see
//! whether its client had gone. At 5,000 streams an event took longer to
//! fan out than the 100 ms between events (measured: `futex_wake` was the
//! largest cost in the profile). Writing to a socket whose buffer has room
//! is one system call that does not block, so one thread can do it for
//! every stream in a loop, which is the least a fan-out can cost.
//!
//! Each stream's own thread, meanwhile, blocks reading its socket: a
//! client never sends anything on an event stream, so the read returns
//! only when the client has gone (or the keep-alive is due). No timer per
//! thread, and a gone client is noticed at once.
//!
//! A socket with no room (a client that reads slowly, or not at all) must
//! not hold the fan-out up: its writes are given a send timeout of one
//! clock tick, and a write that does not finish in it hands the stream to
//! its own thread, woken by shutting the reading side of its socket. From
//! then on that thread writes the stream's events itself, from the hub's
//! history, with the ordinary write deadline; if it falls more than
//! `--queue` events behind, the stream ends and the client resumes with
//! `Last-Event-ID`, as before.

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::App;
use crate::hub::{After, Event, Hub, Place};
use crate::inspect::ConnectionTap;
use crate::tap::{Direction, Tap};

/// The send timeout of a stream the fan-out thread writes to. The kernel
/// rounds it up to a clock tick or two (measured here: a write to a full
/// socket returned after 7 to 8 ms): the most one full socket
/// can cost the fan-out, once, before its stream is handed over.
pub const DIRECT_WRITE_TIMEOUT: Duration = Duration::from_micros(1);

/// How long the fan-out thread waits for an event before looking again.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// The streams the fan-out thread writes to.
#[derive(Default)]
pub struct Fanout {
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    streams: Vec<Arc<Stream>>,
    /// The newest event written to every registered stream.
    delivered: Place,
}

/// One event stream's socket and where it stands.
pub struct Stream {
    pub socket: TcpStream,
    tap: Option<ConnectionTap>,
    state: Mutex<StreamState>,
}

#[derive(Debug)]
struct StreamState {
    /// The newest event written to this stream (or begun: see `Behind`).
    cursor: Place,
    mode: Mode,
    last_write: Instant,
}

/// Who writes a stream's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The fan-out thread.
    Direct,
    /// The stream's own thread, which first writes `rest`: the bytes of an
    /// event or comment that did not fit in the socket.
    Behind { rest: Vec<u8> },
    /// Nobody: the stream is over.
    Ended,
}

impl Stream {
    /// `cursor`: the newest event the stream's opening already carried.
    pub fn new(socket: TcpStream, tap: Option<ConnectionTap>, cursor: Place) -> Arc<Stream> {
        let state = StreamState {
            cursor,
            mode: Mode::Direct,
            last_write: Instant::now(),
        };
        Arc::new(Stream {
            socket,
            tap,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who writes now, and from which event on.
    pub fn mode(&self) -> (Mode, Place) {
        let state = self.lock();
        (state.mode.clone(), state.cursor)
    }

    /// The stream's thread takes it over (or ends it): the fan-out thread
    /// leaves it alone from now on. Returns what is left to write first
    /// and the newest event begun.
    pub fn take_over(&self, ended: bool) -> (Vec<u8>, Place) {
        let mut state = self.lock();
        let rest = match std::mem::replace(&mut state.mode, Mode::Ended) {
            Mode::Behind { rest } if !ended => {
                state.mode = Mode::Behind { rest: Vec::new() };
                rest
            }
            Mode::Direct if !ended => {
                state.mode = Mode::Behind { rest: Vec::new() };
                Vec::new()
            }
            _ => Vec::new(),
        };
        (rest, state.cursor)
    }

    /// When the stream last had bytes written to it.
    pub fn last_write(&self) -> Instant {
        self.lock().last_write
    }

    /// Writes a keep-alive comment while the fan-out thread owns the
    /// stream (the lock keeps it from landing inside an event). `false`:
    /// it did not fit, and the stream's thread must take over.
    pub fn keep_alive(&self, comment: &[u8]) -> bool {
        let mut state = self.lock();
        if state.mode != Mode::Direct {
            return false;
        }
        self.record(comment);
        let cursor = state.cursor;
        self.write_or_fall_behind(&mut state, &[comment], cursor)
    }

    /// The fan-out thread's part: writes `event` if the stream is still
    /// its to write. Returns whether it stays so.
    fn offer(&self, event: &Event, at: Place) -> bool {
        let mut state = self.lock();
        if state.mode != Mode::Direct {
            return false;
        }
        if state.cursor.generation == at.generation && state.cursor.id >= at.id {
            return true; // its opening carried this event already
        }
        if state.cursor.generation != at.generation || state.cursor.id + 1 < at.id {
            // A gap (the fan-out missed events), or a stream that began
            // before the ids started over: the thread catches up from the
            // history, or sends the reset.
            state.mode = Mode::Behind { rest: Vec::new() };
            self.wake();
            return false;
        }
        let parts = event.sse_parts();
        self.record_parts(&parts);
        self.write_or_fall_behind(&mut state, &parts, at)
    }

    /// The ids started over: a stream still in the old sequence gets the
    /// `reset` event, whose id is its new place.
    fn reset(&self, reset: &Event, at: Place) -> bool {
        let mut state = self.lock();
        if state.mode != Mode::Direct {
            return false;
        }
        if state.cursor.generation == at.generation {
            return true; // it joined after the restart
        }
        let parts = reset.sse_parts();
        self.record_parts(&parts);
        self.write_or_fall_behind(&mut state, &parts, at)
    }

    /// One non-waiting write of `parts`; on success the stream's cursor
    /// moves to `at`. If not all of it fit, the rest is kept for the
    /// stream's thread, which is woken to take over.
    fn write_or_fall_behind(&self, state: &mut StreamState, parts: &[&[u8]], at: Place) -> bool {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let written = write_once(&self.socket, parts).unwrap_or(0);
        state.cursor = at;
        if written == total {
            state.last_write = Instant::now();
            return true;
        }
        let whole = parts.concat();
        state.mode = Mode::Behind {
            rest: whole[written..].to_vec(),
        };
        self.wake();
        false
    }

    /// The stream's thread is blocked reading its socket: shutting the
    /// reading side makes that read return at once.
    fn wake(&self) {
        let _ = self.socket.shutdown(Shutdown::Read);
    }

    fn record(&self, bytes: &[u8]) {
        if let Some(tap) = &self.tap {
            tap.record(Direction::Out, bytes, bytes.len());
        }
    }

    fn record_parts(&self, parts: &[&[u8]]) {
        if let Some(tap) = self.tap.as_ref().filter(|t| t.watching()) {
            let bytes = parts.concat();
            tap.record(Direction::Out, &bytes, bytes.len());
        }
    }
}

/// One `writev`, however much of `parts` it takes.
/// It runs once per stream per event, so the slices stay on the stack.
fn write_once(socket: &TcpStream, parts: &[&[u8]]) -> io::Result<usize> {
    assert!(
        parts.len() <= 3,
        "an event is written in at most three parts"
    );
    let mut slices = [IoSlice::new(&[]); 3];
    for (slice, part) in slices.iter_mut().zip(parts) {
        *slice = IoSlice::new(part);
    }
    let slices = &slices[..parts.len()];
    loop {
        match (&*socket).write_vectored(slices) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// What joining the fan-out came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The fan-out thread writes the stream's events from now on.
    Direct,
    /// The socket was full already: the stream's thread writes them.
    Behind,
}

impl Fanout {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a stream to the fan-out thread. Events that thread wrote to
    /// the others since the stream's opening are written to it first,
    /// under the same lock, so that it misses none and gets none twice.
    pub fn join(&self, stream: &Arc<Stream>, hub: &Hub) -> Joined {
        let mut registry = self.lock();
        let mut state = stream.lock();
        let delivered = registry.delivered;
        if state.cursor.generation != delivered.generation {
            // It began before the ids started over: its thread sends the
            // reset and goes on from there.
            state.mode = Mode::Behind { rest: Vec::new() };
            return Joined::Behind;
        }
        if state.cursor.id < delivered.id {
            let After::Events(events) = hub.events_after(state.cursor) else {
                state.mode = Mode::Behind { rest: Vec::new() };
                return Joined::Behind;
            };
            for event in events.iter().take_while(|e| e.id <= delivered.id) {
                let parts = event.sse_parts();
                stream.record_parts(&parts);
                let at = Place {
                    generation: delivered.generation,
                    id: event.id,
                };
                if !stream.write_or_fall_behind(&mut state, &parts, at) {
                    return Joined::Behind;
                }
            }
        }
        drop(state);
        registry.streams.push(Arc::clone(stream));
        Joined::Direct
    }

    /// Takes a stream off the list (its thread is ending it).
    pub fn leave(&self, stream: &Arc<Stream>) {
        self.lock().streams.retain(|s| !Arc::ptr_eq(s, stream));
    }

    /// Streams the fan-out thread writes to now.
    pub fn len(&self) -> usize {
        self.lock().streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes one event to every stream, in the order they joined.
    fn deliver(&self, event: &Event, at: Place) {
        let mut registry = self.lock();
        registry.streams.retain(|stream| stream.offer(event, at));
        registry.delivered = at;
    }

    /// Writes the `reset` of a restart to every stream.
    fn reset(&self, reset: &Event, at: Place) {
        let mut registry = self.lock();
        registry.streams.retain(|stream| stream.reset(reset, at));
        registry.delivered = at;
    }
}

/// Starts the fan-out thread: it reads the hub's events by id and writes
/// each to every direct stream.
pub fn start_fanout(app: &Arc<App>) {
    // Where to start is taken now, not when the thread first runs: an event
    // published in between would otherwise never be fanned out.
    let cursor = app.hub.newest_place();
    app.fanout.lock().delivered = cursor;
    let app = Arc::clone(app);
    // Without it no stream gets an event: a server that cannot start it
    // must not pretend to run.
    thread::Builder::new()
        .name("fanout".into())
        .spawn(move || fan_out_forever(&app, cursor))
        .expect("cannot start the fan-out thread");
}

fn fan_out_forever(app: &App, mut cursor: Place) {
    loop {
        match app.hub.wait_after(cursor, IDLE_WAIT) {
            After::Events(events) => {
                for event in &events {
                    cursor.id = event.id;
                    app.fanout.deliver(event, cursor);
                }
            }
            // The fan-out itself fell behind the history (it cannot, unless
            // the machine stalled): start again from the newest; every
            // stream then sees a gap and its thread catches up or ends.
            After::Missed => cursor = app.hub.newest_place(),
            After::Restarted { reset, place } => {
                app.fanout.reset(&reset, place);
                cursor = place;
            }
        }
    }
}
