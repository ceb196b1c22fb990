//! `GET /inspect`: the frame inspector's records as an SSE stream, one
//! event per frame or event the server read or wrote on another connection.
//! (With `--no-inspect` the router answers 404 instead of calling this.)

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::App;
use crate::http::write_all_within;
use crate::json;
use crate::sse::format::{format_comment, format_event, STREAM_HEAD};
use crate::sse::stream::{self, Feed, Timing};

/// Records as SSE events; before them, a `dropped` event whenever records
/// had to be thrown away because this listener was not keeping up.
struct RecordFeed {
    dropped: Arc<AtomicU64>,
    reported_drops: u64,
}

impl Feed for RecordFeed {
    type Item = Arc<String>;

    fn append(&mut self, record: &Arc<String>, out: &mut Vec<u8>) {
        let drops = self.dropped.load(Ordering::Relaxed);
        if drops != self.reported_drops {
            let note = json::object([("dropped", drops.into())]);
            out.extend(format_event(None, Some("dropped"), &note.to_string()));
            self.reported_drops = drops;
        }
        out.extend(format_event(None, None, record));
    }
}

/// Serves `GET /inspect` until the client leaves.
pub fn serve_inspector(stream: TcpStream, app: &App, id: u64) {
    let mut listening = app.inspector.listen();
    app.log(format_args!("client {id} is watching the frame inspector"));
    // A comment opens the stream: the head alone may sit in a proxy's buffer.
    let mut opening = STREAM_HEAD.to_vec();
    opening.extend(format_comment("frame inspector: one event per frame"));
    let timing = Timing {
        keepalive: app.config.keepalive,
        write_timeout: app.config.write_timeout,
        ends_at: None,
        check_client: true,
    };
    if write_all_within(&stream, &opening, timing.write_timeout).is_ok() {
        let mut feed = RecordFeed {
            dropped: Arc::clone(&listening.dropped),
            reported_drops: 0,
        };
        // The inspector's own stream is not inspected: nothing is recorded.
        stream::run(&stream, &mut listening.records, &mut feed, &timing);
    }
    let _ = stream.shutdown(Shutdown::Both);
}
