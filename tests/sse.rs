//! Integration tests for the Server-Sent Events half: the stream's exact
//! framing (read as raw bytes), what each event carries, ids and resume
//! with `Last-Event-ID`, the ticker and keep-alive, slow subscribers,
//! stream lifetime, and `/inspect`.
//!
//! Exact framing is checked on the raw text of the stream; everything else
//! goes through the crate's own client parser (`SseConnection`), which is
//! what a Rust user of the server would use. Every test starts its own
//! server on 127.0.0.1 port 0, and every wait is bounded.

mod common;
use common::*;

use realtime_by_hand::client::sse::EventStreamParser;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers local to this file
// ---------------------------------------------------------------------------

/// An event stream read as raw bytes, for checks of the exact framing.
struct RawStream {
    stream: TcpStream,
    bytes: Vec<u8>,
}

impl RawStream {
    /// Sends `GET target` with `extra` header lines; reads nothing yet.
    fn open(addr: SocketAddr, target: &str, extra: &str) -> RawStream {
        let mut stream = connect(addr);
        stream
            .write_all(format!("GET {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n").as_bytes())
            .unwrap();
        RawStream {
            stream,
            bytes: Vec::new(),
        }
    }

    /// Reads until `done(self)` holds; panics after `limit`.
    fn read_until(&mut self, limit: Duration, done: impl Fn(&RawStream) -> bool) {
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; 16 * 1024];
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out; the stream so far: {:?}",
                String::from_utf8_lossy(&self.bytes)
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "the stream closed; so far: {:?}",
                    String::from_utf8_lossy(&self.bytes)
                ),
                Ok(n) => self.bytes.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Reads until at least `n` complete blocks (events or comments) have
    /// arrived after the `retry:` line.
    fn read_blocks(&mut self, n: usize) -> Vec<String> {
        self.read_until(Duration::from_secs(10), |s| s.blocks().len() >= n);
        self.blocks()
    }

    /// The response head, up to and including the blank line.
    fn head(&self) -> Option<String> {
        let end = self.bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        Some(String::from_utf8_lossy(&self.bytes[..end + 4]).into_owned())
    }

    /// The body as text (empty until the head is complete).
    fn body(&self) -> String {
        match self.head() {
            Some(head) => String::from_utf8_lossy(&self.bytes[head.len()..]).into_owned(),
            None => String::new(),
        }
    }

    /// The value of the `retry:` line the body starts with, once it is in.
    fn retry(&self) -> Option<String> {
        let body = self.body();
        let (line, _) = body.split_once('\n')?;
        Some(line.strip_prefix("retry: ")?.to_string())
    }

    /// The complete blocks after the leading `retry:` line, each without
    /// its final blank line. The `retry:` line may end a block of its own
    /// or open the first event's block; both are valid event-stream text,
    /// so it is set aside here and checked on its own.
    fn blocks(&self) -> Vec<String> {
        let body = self.body();
        let rest = match body.strip_prefix("retry: ") {
            Some(rest) => match rest.split_once('\n') {
                Some((_, after)) => after.strip_prefix('\n').unwrap_or(after).to_string(),
                None => return Vec::new(),
            },
            None => body,
        };
        let mut blocks: Vec<String> = rest.split("\n\n").map(str::to_string).collect();
        blocks.pop(); // the unfinished rest after the last "\n\n"
        blocks
    }
}

/// Polls `/stats` until `name` equals `want`, for at most `limit`.
fn stat_becomes(addr: SocketAddr, name: &str, want: u64, limit: Duration) -> bool {
    eventually(limit, || stat(addr, name) == want)
}

/// The JSON in the (single) `data:` line of a raw block.
fn block_data(block: &str) -> Json {
    let lines: Vec<&str> = block
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(lines.len(), 1, "one data line expected in {block:?}");
    json::parse(lines[0].as_bytes()).unwrap_or_else(|e| panic!("bad JSON in {block:?}: {e}"))
}

/// The data of a parsed event as JSON.
fn data(event: &SseEvent) -> Json {
    json::parse(event.data.as_bytes())
        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", event.data))
}

fn text_field(value: &Json, key: &str) -> String {
    value
        .get(key)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("no string {key:?} in {value}"))
        .to_string()
}

fn number_field(value: &Json, key: &str) -> u64 {
    value
        .get(key)
        .and_then(Json::as_f64)
        .unwrap_or_else(|| panic!("no number {key:?} in {value}")) as u64
}

/// `2026-11-24T09:30:05.123Z`: an ISO 8601 date and time in UTC.
fn is_iso8601_utc(text: &str) -> bool {
    let Some(core) = text.strip_suffix('Z') else {
        return false;
    };
    let (main, fraction) = core.split_once('.').unwrap_or((core, "0"));
    let b = main.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = main.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return false;
    }
    if b[13] != b':' || b[16] != b':' || fraction.is_empty() {
        return false;
    }
    if !fraction.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    matches!(
        (digits(0..4), digits(5..7), digits(8..10), digits(11..13), digits(14..16), digits(17..19)),
        (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s))
            if y >= 2020 && (1..=12).contains(&mo) && (1..=31).contains(&d)
                && h < 24 && mi < 60 && s < 61
    )
}

/// Reads the opening `welcome` and `initial_data` of a parsed stream.
fn read_opening(events: &mut SseConnection) -> (SseEvent, SseEvent) {
    let welcome = events.next_event().expect("welcome");
    assert_eq!(event_type(&welcome), "welcome", "{welcome:?}");
    let initial = events.next_event().expect("initial_data");
    assert_eq!(event_type(&initial), "initial_data", "{initial:?}");
    (welcome, initial)
}

/// Opens `/events` with the resume point in the query string only.
fn open_events_with_query(addr: SocketAddr, last_event_id: &str) -> SseConnection {
    let url = Url::parse(
        &format!("http://{addr}/events?lastEventId={last_event_id}"),
        &["http"],
    )
    .unwrap();
    let connection = SseConnection::connect(&url, None).expect("open /events");
    connection
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    connection
}

/// Asserts that no event arrives within `wait` (a short quiet period).
fn assert_quiet(events: &mut SseConnection, wait: Duration) {
    events.set_read_timeout(Some(wait)).unwrap();
    match events.next_event() {
        Ok(event) => panic!("unexpected event: {event:?}"),
        Err(_) => events
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap(),
    }
}

/// A notification the test triggered: its id and message.
fn expect_notification(events: &mut SseConnection, id: u64, message: &str) {
    let event = events
        .next_event()
        .unwrap_or_else(|e| panic!("waiting for event {id}: {e}"));
    assert_eq!(event.last_event_id, id.to_string(), "{event:?}");
    let value = data(&event);
    assert_eq!(text_field(&value, "type"), "notification");
    assert_eq!(text_field(&value, "message"), message);
}

// ---------------------------------------------------------------------------
// The opening of a stream
// ---------------------------------------------------------------------------

/// The exact bytes of the opening: the headers a browser and a proxy need,
/// `retry:` first, then `welcome` with the resume point as its id, then
/// `initial_data` without an id.
#[test]
fn the_stream_opens_with_headers_retry_welcome_and_initial_data() {
    let server = start_default();
    let mut raw = RawStream::open(server.addr, "/events", "Accept: text/event-stream\r\n");
    let blocks = raw.read_blocks(2);
    let head = raw.head().unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for wanted in [
        "Content-Type: text/event-stream",
        "Cache-Control: no-cache",
        "Connection: keep-alive",
        "Access-Control-Allow-Origin: *",
        "X-Accel-Buffering: no",
    ] {
        assert!(
            head.lines().any(|l| l.eq_ignore_ascii_case(wanted)),
            "no {wanted:?} in {head}"
        );
    }
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "a stream has no length: {head}"
    );

    // retry: first.
    let body = raw.body();
    assert!(body.starts_with("retry: "), "{body:?}");
    let retry = raw.retry().expect("a retry: line");
    assert!(retry.parse::<u64>().is_ok(), "{retry:?}");

    // welcome: the first event, id 0 before any broadcast, one data line.
    let welcome = &blocks[0];
    assert!(
        welcome.starts_with("id: 0\ndata: "),
        "welcome framing: {welcome:?}"
    );
    assert!(!welcome.contains("event:"), "{welcome:?}");
    let value = block_data(welcome);
    assert_eq!(text_field(&value, "type"), "welcome");
    let client_id = number_field(&value, "clientId");
    assert_eq!(
        text_field(&value, "message"),
        format!("Welcome to SSE! ID: {client_id}")
    );

    // initial_data: no id line.
    let initial = &blocks[1];
    assert!(initial.starts_with("data: "), "{initial:?}");
    assert!(
        !initial.contains("id:"),
        "initial_data has no id: {initial:?}"
    );
    let value = block_data(initial);
    assert_eq!(text_field(&value, "type"), "initial_data");
    assert!(!text_field(&value, "message").is_empty());
    let timestamp = text_field(&value, "timestamp");
    assert!(is_iso8601_utc(&timestamp), "{timestamp:?}");
}

/// The welcome's id is the newest broadcast id at connect, so a client that
/// drops before any new broadcast still resumes without a gap.
#[test]
fn welcome_carries_the_newest_broadcast_id_at_connect() {
    let server = start_default();
    trigger(server.addr, "one");
    trigger(server.addr, "two");
    let mut raw = RawStream::open(server.addr, "/events", "");
    let blocks = raw.read_blocks(2);
    assert!(blocks[0].starts_with("id: 2\n"), "{:?}", blocks[0]);
    assert_eq!(text_field(&block_data(&blocks[0]), "type"), "welcome");

    // Through the client parser: the welcome's id is what it would resume
    // from, and each connection gets its own clientId.
    let mut a = open_events(server.addr, None);
    let mut b = open_events(server.addr, None);
    let (wa, ia) = read_opening(&mut a);
    let (wb, _) = read_opening(&mut b);
    assert_eq!(wa.last_event_id, "2");
    assert_eq!(ia.last_event_id, "2", "initial_data keeps the last id");
    assert_ne!(
        number_field(&data(&wa), "clientId"),
        number_field(&data(&wb), "clientId")
    );
}

// ---------------------------------------------------------------------------
// Broadcast events
// ---------------------------------------------------------------------------

/// Each trigger is one `notification` event whose id grows by one per
/// broadcast, and every subscriber sees the same ids.
#[test]
fn a_trigger_arrives_as_a_notification_with_ids_growing_by_one() {
    let server = start_default();
    let mut a = open_events(server.addr, None);
    let mut b = open_events(server.addr, None);
    read_opening(&mut a);
    read_opening(&mut b);
    let ids: Vec<u64> = (0..5)
        .map(|i| trigger(server.addr, &format!("message {i}")))
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    for events in [&mut a, &mut b] {
        for (i, id) in ids.iter().enumerate() {
            let event = events.next_event().unwrap();
            assert_eq!(event.event_type, "message", "no event: line by default");
            assert_eq!(event.last_event_id, id.to_string());
            let value = data(&event);
            assert_eq!(text_field(&value, "type"), "notification");
            assert_eq!(text_field(&value, "message"), format!("message {i}"));
            assert!(is_iso8601_utc(&text_field(&value, "timestamp")));
        }
    }
}

/// A posted `type` replaces `notification`; a posted `event` name becomes
/// an `event:` line, which `EventSource` dispatches to its own listener.
#[test]
fn a_posted_type_and_event_name_are_used() {
    let server = start_default();
    let mut events = open_events(server.addr, None);
    read_opening(&mut events);
    let mut raw = RawStream::open(server.addr, "/events", "");
    raw.read_blocks(2);

    let typed = post_json(
        server.addr,
        "/trigger-event",
        r#"{"message":"typed","type":"alert"}"#,
    );
    assert_eq!(typed.status, 200, "{}", typed.text());
    let named = post_json(
        server.addr,
        "/trigger-event",
        r#"{"message":"named","event":"custom-name"}"#,
    );
    assert_eq!(named.status, 200, "{}", named.text());

    let first = events.next_event().unwrap();
    assert_eq!(first.event_type, "message");
    assert_eq!(text_field(&data(&first), "type"), "alert");
    assert_eq!(first.last_event_id, "1");
    let second = events.next_event().unwrap();
    assert_eq!(second.event_type, "custom-name");
    assert_eq!(text_field(&data(&second), "type"), "notification");
    assert_eq!(text_field(&data(&second), "message"), "named");
    assert_eq!(second.last_event_id, "2");

    let blocks = raw.read_blocks(4);
    assert!(blocks[2].starts_with("id: 1\ndata: "), "{:?}", blocks[2]);
    assert!(
        blocks[3].starts_with("id: 2\nevent: custom-name\ndata: "),
        "{:?}",
        blocks[3]
    );
}

/// An event name with a line break would let a poster inject fields
/// (`x\ndata: forged`) into every stream: it is refused with 400 and does
/// not use up an id.
#[test]
fn an_event_name_with_cr_or_lf_is_400_and_takes_no_id() {
    let server = start_default();
    let mut events = open_events(server.addr, None);
    read_opening(&mut events);
    assert_eq!(trigger(server.addr, "before"), 1);
    for name in [
        "a\\nb",
        "a\\rb",
        "a\\r\\nb",
        "x\\ndata: forged",
        "\\n",
        "trailing\\r",
    ] {
        let body = format!(r#"{{"message":"m","event":"{name}"}}"#);
        let response = post_json(server.addr, "/trigger-event", &body);
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        assert!(
            response.json().get("error").is_some(),
            "{}",
            response.text()
        );
    }
    assert_eq!(stat(server.addr, "events_sent"), 1);
    assert_eq!(trigger(server.addr, "after"), 2, "no id was used up");
    expect_notification(&mut events, 1, "before");
    expect_notification(&mut events, 2, "after");
}

/// A message with line breaks is escaped inside the JSON, so each event
/// keeps exactly one `data:` line and the client gets the text back intact.
#[test]
fn a_message_with_line_breaks_stays_on_one_data_line() {
    let server = start_default();
    let mut events = open_events(server.addr, None);
    read_opening(&mut events);
    let mut raw = RawStream::open(server.addr, "/events", "");
    raw.read_blocks(2);
    let messages = [
        "line one\nline two",
        "cr\ronly",
        "crlf\r\nhere",
        "\n\n",
        "ends with\n",
        "data: not a field\n\nid: 99",
    ];
    for message in messages {
        trigger(server.addr, message);
    }
    for (i, message) in messages.iter().enumerate() {
        expect_notification(&mut events, i as u64 + 1, message);
    }
    let blocks = raw.read_blocks(2 + messages.len());
    for (i, block) in blocks[2..].iter().enumerate() {
        let lines: Vec<&str> = block.split('\n').collect();
        assert_eq!(lines.len(), 2, "id and one data line: {block:?}");
        assert_eq!(lines[0], format!("id: {}", i + 1));
        assert_eq!(text_field(&block_data(block), "message"), messages[i]);
    }
    assert!(!raw.body().contains('\r'), "no raw CR in the stream");
}

// ---------------------------------------------------------------------------
// The ticker and keep-alive
// ---------------------------------------------------------------------------

/// With `--tick-secs`, every subscriber gets a `periodic_update` each tick,
/// carrying the number of subscribers.
#[test]
fn periodic_update_goes_out_every_tick_with_the_subscriber_count() {
    let server = start(Config {
        tick: Duration::from_millis(300),
        ..test_config()
    });
    let mut a = open_events(server.addr, None);
    let mut b = open_events(server.addr, None);
    read_opening(&mut a);
    read_opening(&mut b);
    let started = Instant::now();
    let mut updates = Vec::new();
    while updates.len() < 4 && started.elapsed() < Duration::from_secs(8) {
        let event = a.next_event().unwrap();
        let value = data(&event);
        assert_eq!(text_field(&value, "type"), "periodic_update");
        assert!(is_iso8601_utc(&text_field(&value, "timestamp")));
        let connections = number_field(&value, "connections");
        assert_eq!(
            text_field(&value, "message"),
            format!("Periodic update: {connections} clients connected")
        );
        let id: u64 = event.last_event_id.parse().unwrap();
        updates.push((id, connections));
    }
    let took = started.elapsed();
    assert!(updates.len() >= 4, "only {updates:?} in {took:?}");
    // Consecutive ids: nothing else is broadcast, and no tick was skipped.
    for pair in updates.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "{updates:?}");
    }
    // Both subscribers were in before the second tick after opening.
    assert_eq!(updates.last().unwrap().1, 2, "{updates:?}");
    // Four ticks of 300 ms: well under the bound even on a slow machine.
    assert!(took < Duration::from_secs(6), "{took:?}");
    // The other subscriber got the same events.
    let seen_by_b = b.next_event().unwrap();
    assert_eq!(text_field(&data(&seen_by_b), "type"), "periodic_update");
}

/// A quiet stream gets a `: keep-alive` comment after `--keepalive-secs`,
/// so proxies keep it open and a dead client is found.
#[test]
fn a_keep_alive_comment_goes_out_when_the_stream_is_quiet() {
    let server = start(Config {
        keepalive: Duration::from_millis(300),
        ..test_config()
    });
    let opened = Instant::now();
    let mut raw = RawStream::open(server.addr, "/events", "");
    raw.read_until(Duration::from_secs(5), |s| {
        s.body().matches(": keep-alive\n\n").count() >= 2
    });
    let took = opened.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "two keep-alives in {took:?}"
    );
    // Nothing but the opening and comments.
    for block in raw.blocks().iter().skip(2) {
        assert_eq!(block, ": keep-alive");
    }
    println!("two keep-alive comments after {took:?}");

    // The client parser reports them as comments, not events.
    let mut events = open_events(server.addr, None);
    read_opening(&mut events);
    match events.next_item().unwrap() {
        Item::Comment(text) => assert_eq!(text, "keep-alive"),
        other => panic!("expected a comment, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Resume with Last-Event-ID
// ---------------------------------------------------------------------------

/// A client that reconnects with `Last-Event-ID` gets exactly what it
/// missed, in order and once each, then the live stream without a gap or a
/// duplicate.
#[test]
fn resume_with_last_event_id_replays_exactly_the_missed_events() {
    let server = start_default();
    let addr = server.addr;
    let mut first = open_events(addr, None);
    read_opening(&mut first);
    trigger(addr, "seen 1");
    trigger(addr, "seen 2");
    expect_notification(&mut first, 1, "seen 1");
    expect_notification(&mut first, 2, "seen 2");
    let resume_from = first.last_event_id().to_string();
    assert_eq!(resume_from, "2");
    drop(first);

    for i in 3..=7 {
        assert_eq!(trigger(addr, &format!("missed {i}")), i);
    }
    let mut second = open_events(addr, Some(&resume_from));
    read_opening(&mut second);
    for i in 3..=7 {
        expect_notification(&mut second, i, &format!("missed {i}"));
    }
    assert_quiet(&mut second, Duration::from_millis(300));
    for i in 8..=9 {
        assert_eq!(trigger(addr, &format!("live {i}")), i);
        expect_notification(&mut second, i, &format!("live {i}"));
    }
    assert_quiet(&mut second, Duration::from_millis(300));
}

/// Clients that cannot set headers resume with `?lastEventId=N`; it works
/// the same, and the welcome's id is the resume point.
#[test]
fn resume_with_the_last_event_id_query_replays_exactly_the_missed_events() {
    let server = start_default();
    let addr = server.addr;
    trigger(addr, "seen 1");
    trigger(addr, "seen 2");
    for i in 3..=7 {
        trigger(addr, &format!("missed {i}"));
    }
    let mut events = open_events_with_query(addr, "2");
    let (welcome, _) = read_opening(&mut events);
    assert_eq!(
        welcome.last_event_id, "2",
        "the welcome's id is the resume point, from the server"
    );
    for i in 3..=7 {
        expect_notification(&mut events, i, &format!("missed {i}"));
    }
    assert_quiet(&mut events, Duration::from_millis(300));
    assert_eq!(trigger(addr, "live 8"), 8);
    expect_notification(&mut events, 8, "live 8");
}

/// On a resumed connection the welcome's `id:` is the Last-Event-ID that
/// was sent, not the newest id: if this connection drops before the replay
/// is read, resuming again from the welcome's id loses nothing.
#[test]
fn welcome_on_a_resumed_connection_carries_the_resume_point() {
    let server = start_default();
    for i in 1..=7 {
        trigger(server.addr, &format!("event {i}"));
    }
    let mut raw = RawStream::open(server.addr, "/events", "Last-Event-ID: 2\r\n");
    let blocks = raw.read_blocks(7);
    assert!(blocks[0].starts_with("id: 2\ndata: "), "{:?}", blocks[0]);
    assert_eq!(text_field(&block_data(&blocks[0]), "type"), "welcome");
    assert!(!blocks[1].contains("id:"), "{:?}", blocks[1]);
    for (offset, block) in blocks[2..7].iter().enumerate() {
        assert!(
            block.starts_with(&format!("id: {}\n", offset + 3)),
            "{block:?}"
        );
    }
}

/// The first event after the opening (welcome, initial_data).
fn third_event(events: &mut SseConnection) -> SseEvent {
    read_opening(events);
    events.next_event().unwrap()
}

/// Resuming from an id the history no longer holds cannot be complete, and
/// the client is told so with a `reset` event. At the very edge of the
/// history the replay is still complete and there is no reset.
#[test]
fn resume_older_than_the_history_gets_a_reset_event() {
    let server = start(Config {
        history: 3,
        ..test_config()
    });
    for i in 1..=10 {
        trigger(server.addr, &format!("event {i}"));
    }
    // History: 8, 9, 10. From 7 nothing is missing.
    let mut edge = open_events(server.addr, Some("7"));
    read_opening(&mut edge);
    for i in 8..=10 {
        expect_notification(&mut edge, i, &format!("event {i}"));
    }
    assert_quiet(&mut edge, Duration::from_millis(300));

    // From 5, events 6 and 7 are gone; 8 to 10 are still there.
    let mut old = open_events(server.addr, Some("5"));
    let (welcome, _) = read_opening(&mut old);
    assert_eq!(
        welcome.last_event_id, "7",
        "the resume point is just before the first event that follows"
    );
    let reset = old.next_event().unwrap();
    assert_eq!(event_type(&reset), "reset", "{reset:?}");
    assert!(
        reset.data.contains("events 6 to 7 were missed"),
        "{reset:?}"
    );
    assert_eq!(reset.last_event_id, "7", "a reset carries no id of its own");
    // Then what the history still holds, then live.
    for i in 8..=10 {
        expect_notification(&mut old, i, &format!("event {i}"));
    }
    assert_eq!(trigger(server.addr, "live"), 11);
    expect_notification(&mut old, 11, "live");
}

/// An id newer than anything this server has sent means it restarted (its
/// history died with the old process): `reset`.
#[test]
fn resume_newer_than_the_newest_id_gets_a_reset_event() {
    let server = start_default();
    let mut fresh = open_events(server.addr, Some("1"));
    assert_eq!(event_type(&third_event(&mut fresh)), "reset");
    for i in 1..=3 {
        trigger(server.addr, &format!("event {i}"));
    }
    let mut ahead = open_events(server.addr, Some("999"));
    let reset = third_event(&mut ahead);
    assert_eq!(event_type(&reset), "reset", "{reset:?}");
    assert_eq!(trigger(server.addr, "live"), 4);
    expect_notification(&mut ahead, 4, "live");
}

/// An id this server could never have given out is also a `reset`.
#[test]
fn a_non_numeric_last_event_id_gets_a_reset_event() {
    let server = start_default();
    trigger(server.addr, "one");
    for id in ["abc", "-1", "1.5", "0x1", "18446744073709551616"] {
        let mut events = open_events(server.addr, Some(id));
        let reset = third_event(&mut events);
        assert_eq!(event_type(&reset), "reset", "{id}: {reset:?}");
    }
    // The query string spelling too.
    let mut events = open_events_with_query(server.addr, "abc");
    assert_eq!(event_type(&third_event(&mut events)), "reset");
}

// ---------------------------------------------------------------------------
// Slow subscribers and stream lifetime
// ---------------------------------------------------------------------------

/// One subscriber that never reads must not slow the others. Its socket
/// buffers fill, its queue overflows, the hub drops it; meanwhile a normal
/// subscriber receives all 2,000 events (of about 8 KiB each) in order.
/// The stalled client then finds its stream ended and, resuming from the
/// last id it saw, gets the rest without loss.
#[test]
fn a_stalled_subscriber_does_not_slow_the_others() {
    const EVENTS: u64 = 2000;
    // The poster stays at most this many events ahead of the normal reader,
    // so the normal reader's queue (64) is never what limits it.
    const WINDOW: u64 = 32;
    let server = start(Config {
        queue: 64,
        history: 5000,
        write_timeout: Duration::from_secs(2),
        ..test_config()
    });
    let addr = server.addr;

    let mut stalled = connect(addr);
    stalled
        .write_all(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut normal = open_events(addr, None);
    read_opening(&mut normal);
    assert!(stat_becomes(addr, "subscribers", 2, Duration::from_secs(5)));

    let received = Arc::new(AtomicU64::new(0));
    let poster = {
        let received = Arc::clone(&received);
        thread::spawn(move || {
            let pad = "x".repeat(8 * 1024);
            let mut stream = connect(addr);
            let mut pending = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(40);
            for i in 1..=EVENTS {
                while i > received.load(Ordering::SeqCst) + WINDOW {
                    assert!(Instant::now() < deadline, "the reader stopped at {i}");
                    thread::sleep(Duration::from_millis(1));
                }
                let body = format!(r#"{{"message":"{i} {pad}"}}"#);
                let request = format!(
                    "POST /trigger-event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(request.as_bytes()).unwrap();
                let response = read_response_from(&mut stream, &mut pending, false);
                assert_eq!(response.status, 200, "{}", response.text());
                let id = response.json().get("id").and_then(Json::as_f64).unwrap();
                assert_eq!(id as u64, i);
            }
        })
    };

    let started = Instant::now();
    for i in 1..=EVENTS {
        let event = normal
            .next_event()
            .unwrap_or_else(|e| panic!("normal subscriber, waiting for {i}: {e}"));
        assert_eq!(event.last_event_id, i.to_string());
        let message = text_field(&data(&event), "message");
        assert!(message.starts_with(&format!("{i} ")), "event {i}");
        received.store(i, Ordering::SeqCst);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {i} events in 30 s"
        );
    }
    let took = started.elapsed();
    poster.join().expect("poster");
    println!("the normal subscriber received {EVENTS} events of ~8 KiB in {took:?}");

    let dropped = eventually(Duration::from_secs(10), || {
        stat(addr, "dropped_slow_subscribers") >= 1
    });
    assert!(dropped, "the stalled subscriber was never dropped");

    // The stalled client reads at last: what was buffered, then the end.
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut chunk = vec![0u8; 256 * 1024];
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let ended = loop {
        assert!(Instant::now() < deadline, "the stalled stream never ended");
        match stalled.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true, // reset: ended as well
        }
    };
    assert!(ended, "the stalled stream is still open");
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the stalled stream's head")
        + 4;
    let mut parser = EventStreamParser::new();
    let mut ids = Vec::new();
    for item in parser.feed(&bytes[head_end..]) {
        if let Item::Event(event) = item {
            if event_type(&event) == "notification" {
                ids.push(event.last_event_id.parse::<u64>().unwrap());
            }
        }
    }
    let last_seen = ids.last().copied().unwrap_or(0);
    assert_eq!(ids, (1..=last_seen).collect::<Vec<_>>(), "in order, no gap");
    assert!(last_seen < EVENTS, "the stalled client got everything?");
    println!(
        "the stalled subscriber had {last_seen} events ({} bytes) buffered before it was cut off",
        bytes.len()
    );

    // Resuming from its last id replays the rest, without loss.
    let mut resumed = open_events(addr, Some(&last_seen.to_string()));
    read_opening(&mut resumed);
    for i in last_seen + 1..=EVENTS {
        let event = resumed
            .next_event()
            .unwrap_or_else(|e| panic!("replay, waiting for {i}: {e}"));
        assert_eq!(event.last_event_id, i.to_string());
        assert!(text_field(&data(&event), "message").starts_with(&format!("{i} ")));
    }
    assert_quiet(&mut resumed, Duration::from_millis(300));
}

/// A stream's thread must end soon after its client goes away, or every
/// closed browser tab would leak a thread.
#[test]
fn the_stream_thread_ends_promptly_when_the_client_goes_away() {
    let server = start_default();
    let mut events = open_events(server.addr, None);
    read_opening(&mut events);
    assert!(stat_becomes(
        server.addr,
        "sse_connections",
        1,
        Duration::from_secs(5)
    ));
    let closed = Instant::now();
    drop(events);
    let ended = eventually(Duration::from_secs(4), || {
        stat(server.addr, "sse_connections") == 0
    });
    let took = closed.elapsed();
    assert!(ended, "still counted after {took:?}");
    assert_eq!(stat(server.addr, "subscribers"), 0);
    println!("the stream's thread ended {took:?} after the client left");
}

/// `--max-stream-secs` ends each stream after 80–100 % of the limit, so the
/// browser reconnects (and resumes) through whatever balances connections.
#[test]
fn max_stream_secs_ends_the_stream_in_time() {
    let server = start(Config {
        max_stream: Duration::from_secs(1),
        ..test_config()
    });
    let opened = Instant::now();
    let mut events = open_events(server.addr, None);
    read_opening(&mut events);
    let ended = loop {
        match events.next_item() {
            Ok(_) => assert!(opened.elapsed() < Duration::from_secs(5)),
            Err(_) => break opened.elapsed(),
        }
    };
    assert!(
        ended >= Duration::from_millis(700) && ended <= Duration::from_secs(3),
        "the stream ended after {ended:?}"
    );
    println!("with --max-stream-secs 1 the stream ended after {ended:?}");
    assert!(stat_becomes(
        server.addr,
        "sse_connections",
        0,
        Duration::from_secs(3)
    ));
}

// ---------------------------------------------------------------------------
// /inspect
// ---------------------------------------------------------------------------

/// `/inspect` is an event stream that reports what the server writes on
/// event streams.
#[test]
fn inspect_is_an_event_stream_reporting_sse_writes() {
    let server = start_default();
    let mut inspect = RawStream::open(server.addr, "/inspect", "");
    inspect.read_until(Duration::from_secs(5), |s| s.head().is_some());
    let head = inspect.head().unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case("Content-Type: text/event-stream")),
        "{head}"
    );
    let mut events = open_events(server.addr, None);
    let (welcome, _) = read_opening(&mut events);
    let connection = number_field(&data(&welcome), "clientId");
    inspect.read_until(Duration::from_secs(5), |s| {
        s.blocks().iter().any(|b| b.contains("\"kind\":\"sse\""))
    });
    let record = inspect
        .blocks()
        .into_iter()
        .find(|b| b.contains("\"kind\":\"sse\""))
        .unwrap();
    let value = block_data(&record);
    assert_eq!(text_field(&value, "dir"), "out");
    assert_eq!(number_field(&value, "conn"), connection);
    assert!(number_field(&value, "len") > 0);
}

/// With `--no-inspect` the endpoint does not exist.
#[test]
fn inspect_is_404_when_turned_off() {
    let server = start(Config {
        inspect: false,
        ..test_config()
    });
    assert_eq!(get(server.addr, "/inspect").status, 404);
}
