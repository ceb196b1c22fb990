//! `GET /events`: one Server-Sent Events stream, fed by the hub.
//!
//! The connection's life: read where the client wants to resume from
//! (`resume_point_asked`), look up what it missed, write the opening
//! (head, `retry:`, welcome, initial data, a `reset` if the resume cannot
//! be complete) and the replay, then hand the stream to the fan-out
//! (`fanout.rs`), which writes the live events; this thread waits for the
//! client to leave, and writes the stream itself only if it falls behind.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fanout::{Joined, Mode, Stream, DIRECT_WRITE_TIMEOUT};
use super::App;
use crate::http::{write_all_within, RequestHead};
use crate::hub::{After, Event, Hub, Place, Replay, Resume};
use crate::inspect::{ConnectionTap, Kind};
use crate::json;
use crate::sse::format::{format_comment, format_event, format_retry, STREAM_HEAD};
use crate::sse::stream::{self, End, Feed, Next, Source, Timing};
use crate::tap::{Direction, Tap};
use crate::time;

/// How long a resume waits for this instance to catch up with the
/// cluster's log (`--broker`) before it calls an id too new.
const CATCH_UP: Duration = Duration::from_secs(1);

/// Hub events as SSE blocks: the hub made each event's framing once; here
/// it is gathered, with the shared data, into the stream's write batch.
struct EventFeed {
    tap: Option<ConnectionTap>,
}

impl Feed for EventFeed {
    type Item = Arc<Event>;

    fn append(&mut self, event: &Arc<Event>, out: &mut Vec<u8>) {
        let start = out.len();
        for part in event.sse_parts() {
            out.extend_from_slice(part);
        }
        if let Some(tap) = &self.tap {
            tap.record(Direction::Out, &out[start..], out.len() - start);
        }
    }

    fn wrote(&mut self, bytes: &[u8]) {
        if let Some(tap) = &self.tap {
            tap.record(Direction::Out, bytes, bytes.len());
        }
    }
}

/// A stream that fell behind reads the hub's history by id: its place is
/// a number, and more than `--queue` events behind, it is let go.
struct HubSource<'a> {
    hub: &'a Hub,
    cursor: Place,
}

impl Source for HubSource<'_> {
    type Item = Arc<Event>;

    fn next(&mut self, wait: Duration) -> Next<Arc<Event>> {
        match self.hub.wait_after(self.cursor, wait) {
            After::Events(events) if events.is_empty() => Next::Idle,
            After::Events(events) if events.len() <= self.hub.queue_limit() => {
                self.cursor.id = events.last().map_or(self.cursor.id, |e| e.id);
                Next::Items(events)
            }
            After::Events(_) | After::Missed => Next::Closed,
            // The ids started over: the reset, then the new sequence.
            After::Restarted { reset, place } => {
                self.cursor = place;
                Next::Items(vec![reset])
            }
        }
    }
}

/// Serves `GET /events` on this connection until the client leaves.
pub fn serve_events(socket: TcpStream, head: RequestHead, app: &App, id: u64) {
    let _counted = app.sse_streams.enter();
    let _reader = app.hub.reader();
    let started = Instant::now();
    // The request is not needed past this line: its memory goes now, not
    // when the stream ends.
    let asked = resume_point_asked(&head).map(str::to_string);
    drop(head);
    let asked = asked.as_deref();
    let (replay, resume) = replay(app, asked);
    app.log(format_args!(
        "client {id} opened an SSE stream{} (SSE clients: {})",
        match asked {
            Some(last) => format!(" resuming after {last}"),
            None => String::new(),
        },
        app.sse_streams.get()
    ));

    let mut feed = EventFeed {
        tap: app.inspector.tap(id, Kind::Sse),
    };
    let opening = opening(app, id, &replay, &resume, feed.tap.as_ref());
    let timeout = app.config.write_timeout;
    let replayed = replay.events.iter().cloned();
    let written = write_all_within(&socket, &opening, timeout)
        .and_then(|()| stream::write_batched(&socket, &mut feed, replayed, timeout));
    let end = match written {
        Err(e) => End::WriteFailed(e),
        Ok(()) => {
            let cursor = replay.place_after();
            let ends_at = stream::jittered(app.config.max_stream).map(|age| started + age);
            live(socket, app, feed, cursor, ends_at)
        }
    };
    log_end(app, id, started, &end);
}

/// The live part: the fan-out writes, this thread waits; if the stream
/// falls behind, this thread writes.
fn live(
    socket: TcpStream,
    app: &App,
    mut feed: EventFeed,
    cursor: Place,
    ends_at: Option<Instant>,
) -> End {
    let _ = socket.set_write_timeout(Some(DIRECT_WRITE_TIMEOUT));
    let stream = Stream::new(socket, feed.tap.clone(), cursor);
    let direct = match app.fanout.join(&stream, &app.hub) {
        Joined::Direct => wait_for_the_end(&stream, app, ends_at),
        Joined::Behind => None,
    };
    let end = match direct {
        Some(end) => end,
        None => {
            let end = write_behind(&stream, app, &mut feed, ends_at);
            // A stream that fell behind and then could not keep up (its
            // writes timed out, or it fell --queue events behind) was too
            // slow: counted as such in /stats.
            if matches!(end, End::WriteFailed(_) | End::QueueClosed) {
                app.hub.note_dropped();
            }
            end
        }
    };
    stream.take_over(true);
    app.fanout.leave(&stream);
    let _ = stream.socket.shutdown(Shutdown::Both);
    end
}

/// While the fan-out writes the stream: block reading the socket. A
/// client sends nothing on an event stream, so the read returns when it
/// has gone, when the keep-alive or the maximum age is due, or when the
/// fan-out hands the stream back (by shutting the reading side). `None`:
/// the stream fell behind and this thread must write it now.
fn wait_for_the_end(stream: &Stream, app: &App, ends_at: Option<Instant>) -> Option<End> {
    let keepalive = app.config.keepalive;
    let comment = format_comment("keep-alive");
    let mut scratch = [0u8; 64];
    loop {
        if stream.mode().0 != Mode::Direct {
            return None;
        }
        let now = Instant::now();
        if ends_at.is_some_and(|at| at <= now) {
            return Some(End::MaxAge);
        }
        let keepalive_due = stream.last_write() + keepalive;
        if keepalive_due <= now {
            if !stream.keep_alive(&comment) {
                return None;
            }
            continue;
        }
        let mut wait = keepalive_due - now;
        if let Some(at) = ends_at {
            wait = wait.min(at - now);
        }
        let _ = stream
            .socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        match (&stream.socket).read(&mut scratch) {
            Ok(0) => return stream_or_client_ended(stream),
            Ok(_) => {} // unexpected bytes: ignore them
            Err(e) if is_wait_over(&e) => {}
            Err(_) => return stream_or_client_ended(stream),
        }
    }
}

/// The read side ended: the fan-out handed the stream back, or the
/// client has gone.
fn stream_or_client_ended(stream: &Stream) -> Option<End> {
    match stream.mode().0 {
        Mode::Direct => Some(End::ClientGone),
        Mode::Behind { .. } | Mode::Ended => None,
    }
}

fn is_wait_over(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The stream fell behind: this thread finishes what did not fit, then
/// writes from the history with the ordinary write deadline, through the
/// same loop as `/inspect`.
fn write_behind(stream: &Stream, app: &App, feed: &mut EventFeed, ends_at: Option<Instant>) -> End {
    let (rest, cursor) = stream.take_over(false);
    let timeout = app.config.write_timeout;
    let _ = stream.socket.set_write_timeout(Some(timeout));
    if let Err(e) = write_all_within(&stream.socket, &rest, timeout) {
        return End::WriteFailed(e);
    }
    let mut source = HubSource {
        hub: &app.hub,
        cursor,
    };
    let timing = Timing {
        keepalive: app.config.keepalive,
        write_timeout: timeout,
        ends_at,
        // Its reading side was shut to wake this thread: a write that
        // fails is how a gone client shows now.
        check_client: false,
    };
    stream::run(&stream.socket, &mut source, feed, &timing)
}

/// The id the client saw last, if it says: browsers send `Last-Event-ID`
/// when they reconnect; clients that cannot set headers may use the query.
fn resume_point_asked(head: &RequestHead) -> Option<&str> {
    head.header("last-event-id")
        .or_else(|| head.query_param("lastEventId"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// What the client missed, from the asked resume point if it is one of
/// our ids.
fn replay(app: &App, asked: Option<&str>) -> (Replay, Resume) {
    let parsed = asked.map(|text| text.parse::<u64>().map_err(|_| text));
    let last_id = parsed.and_then(|r| r.ok());
    // In a cluster, the client may have seen an event on another instance
    // that this instance's reader has not brought in yet: wait a moment
    // for it rather than call the id one from the future.
    if let (Some(n), Some(_)) = (last_id, &app.broker) {
        app.hub.wait_for(n, CATCH_UP);
    }
    let replay = app.hub.replay_from(last_id);
    let resume = match parsed {
        Some(Err(text)) => Resume::Reset(format!(
            "Last-Event-ID {text:?} is not an id this server gave out"
        )),
        _ => replay.resume.clone(),
    };
    (replay, resume)
}

/// The opening of the stream: head, retry, welcome, initial data, and a
/// reset when the resume cannot be complete.
///
/// The welcome's id is this connection's resume point: the id just before
/// the first event that follows it (the first replayed one, or else the
/// next live one). If the connection drops at any moment after it, the
/// browser reconnects from there and misses nothing it could still get.
fn opening(
    app: &App,
    id: u64,
    replay: &Replay,
    resume: &Resume,
    tap: Option<&ConnectionTap>,
) -> Vec<u8> {
    let resume_point = match replay.events.first() {
        Some(first) => first.id - 1,
        None => replay.newest_id,
    };
    let welcome = json::object([
        ("type", "welcome".into()),
        ("message", format!("Welcome to SSE! ID: {id}").into()),
        ("clientId", id.into()),
    ]);
    let initial = json::object([
        ("type", "initial_data".into()),
        ("message", "This is the initial data".into()),
        ("timestamp", time::now_iso8601().into()),
    ]);
    let mut first = format_retry(app.config.retry_ms);
    first.extend(format_event(Some(resume_point), None, &welcome.to_string()));
    let mut blocks = vec![first, format_event(None, None, &initial.to_string())];
    if let Resume::Reset(why) = resume {
        let reset = json::object([
            ("type", "reset".into()),
            ("message", why.clone().into()),
            ("newestId", replay.newest_id.into()),
        ]);
        blocks.push(format_event(None, None, &reset.to_string()));
    }
    let mut out = STREAM_HEAD.to_vec();
    for block in &blocks {
        if let Some(tap) = tap {
            tap.record(Direction::Out, block, block.len());
        }
        out.extend_from_slice(block);
    }
    out
}

fn log_end(app: &App, id: u64, started: Instant, end: &End) {
    let why = match end {
        End::ClientGone => "the client left".to_string(),
        End::WriteFailed(e) => format!("a write failed: {e}"),
        End::QueueClosed => "it fell too far behind; it may resume with Last-Event-ID".to_string(),
        End::MaxAge => "it reached --max-stream-secs; the client will reconnect".to_string(),
    };
    app.log(format_args!(
        "client {id}: SSE stream ended after {:.1} s: {why} (SSE clients: {})",
        started.elapsed().as_secs_f64(),
        app.sse_streams.get() - 1
    ));
}
