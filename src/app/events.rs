//! `GET /events`: one Server-Sent Events stream, fed by the hub.
//!
//! The connection's life: read where the client wants to resume from
//! ([`resume_point_asked`]), join the hub, write the opening (head,
//! `retry:`, welcome, initial data, a `reset` if the resume cannot be
//! complete), replay what was missed, then hand the stream to the shared
//! write loop (`sse::stream::run`) until it ends.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use super::App;
use crate::http::{write_all_within, RequestHead};
use crate::hub::{Event, Resume, Subscription};
use crate::inspect::{ConnectionTap, Kind};
use crate::json;
use crate::sse::format::{format_event, format_retry, STREAM_HEAD};
use crate::sse::stream::{self, End, Feed, Timing};
use crate::tap::{Direction, Tap};
use crate::time;

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

/// Serves `GET /events` on this connection until the client leaves.
pub fn serve_events(mut stream: TcpStream, head: &RequestHead, app: &App, id: u64) {
    let _counted = app.sse_streams.enter();
    let started = Instant::now();
    let asked = resume_point_asked(head);
    let (subscription, resume) = subscribe(app, asked);
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
    let opening = opening(app, id, &subscription, &resume, feed.tap.as_ref());
    let timeout = app.config.write_timeout;
    let replay = subscription.replay.iter().cloned();
    let written = write_all_within(&stream, &opening, timeout)
        .and_then(|()| stream::write_batched(&stream, &mut feed, replay, timeout));
    let end = match written {
        Err(e) => End::WriteFailed(e),
        Ok(()) => {
            let timing = Timing {
                keepalive: app.config.keepalive,
                write_timeout: timeout,
                ends_at: stream::jittered(app.config.max_stream).map(|age| started + age),
            };
            let end = stream::run(&mut stream, &subscription.events, &mut feed, &timing);
            let _ = stream.shutdown(Shutdown::Both);
            end
        }
    };
    log_end(app, id, started, &end);
}

/// The id the client saw last, if it says: browsers send `Last-Event-ID`
/// when they reconnect; clients that cannot set headers may use the query.
fn resume_point_asked(head: &RequestHead) -> Option<&str> {
    head.header("last-event-id")
        .or_else(|| head.query_param("lastEventId"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Joins the hub, from the asked resume point if it is one of our ids.
fn subscribe(app: &App, asked: Option<&str>) -> (Subscription, Resume) {
    let parsed = asked.map(|text| text.parse::<u64>().map_err(|_| text));
    let last_id = parsed.and_then(|r| r.ok());
    let subscription = app.hub.subscribe(last_id);
    let resume = match parsed {
        Some(Err(text)) => Resume::Reset(format!(
            "Last-Event-ID {text:?} is not an id this server gave out"
        )),
        _ => subscription.resume.clone(),
    };
    (subscription, resume)
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
    subscription: &Subscription,
    resume: &Resume,
    tap: Option<&ConnectionTap>,
) -> Vec<u8> {
    let resume_point = match subscription.replay.first() {
        Some(first) => first.id - 1,
        None => subscription.newest_id,
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
            ("newestId", subscription.newest_id.into()),
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
