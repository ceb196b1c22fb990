//! The cluster, for real: three instances of the server sharing one event
//! log in a private Redis (`--broker`), with nginx in front for the tests
//! that need a proxy.
//!
//! Every test here is `#[ignore]`d, so that `cargo test` passes on a
//! machine without redis-server and nginx. `tests/cluster/run.sh`
//! installs both (without starting their system services) and runs them:
//!
//!   tests/cluster/run.sh
//!   (= cargo test --release --test cluster -- --ignored --test-threads 1 --nocapture)
//!
//! With `--nocapture` the tests print what they measured (latencies, what
//! nginx's defaults do to a WebSocket and to a stream), as lines that
//! start with `cluster:` and tables a lesson can quote.
//!
//! The processes are started by `cluster/harness.rs`; the clients'
//! helpers are in `cluster/clients.rs`.

mod common;

#[path = "cluster/clients.rs"]
mod clients;
#[path = "cluster/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clients::*;
use common::*;
use harness::*;
use realtime_by_hand::client::sse::{Backoff, ReconnectingClient};

/// `/stats`'s `broker` object of an instance.
fn broker_stats(addr: SocketAddr) -> Json {
    stats(addr).get("broker").cloned().unwrap_or(Json::Null)
}

fn broker_connected(addr: SocketAddr) -> Option<bool> {
    match broker_stats(addr).get("connected") {
        Some(Json::Bool(connected)) => Some(*connected),
        _ => None,
    }
}

// ---------------------------------------------------------------------
// Delivery, ids and resume across instances.

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn an_event_posted_to_one_instance_reaches_every_instance() {
    let cluster = Cluster::start("delivery", &[]);
    let (a, b, c) = (cluster.addr(0), cluster.addr(1), cluster.addr(2));
    let mut stream_b = open_stream(&cluster.instances[1].url("/events"), None);
    let mut chat_c = open_chat(c);

    // A trigger on A: B's stream and C's chat get it, under id 1.
    assert_eq!(trigger(a, "posted to a"), 1);
    let on_b = next_broadcast(&mut stream_b);
    assert_eq!((on_b.id, on_b.message()), (1, "posted to a"));
    let on_c = next_text(&mut chat_c);
    assert_eq!(
        (on_c.kind.as_str(), on_c.message()),
        ("notification", "posted to a")
    );

    // A chat message on C: C itself, B's stream and a stream on A get it,
    // under the next id of the same sequence.
    let mut stream_a = open_stream(&cluster.instances[0].url("/events"), None);
    send_chat(&mut chat_c, "said on c");
    let echo = next_text(&mut chat_c);
    assert_eq!((echo.kind.as_str(), echo.message()), ("chat", "said on c"));
    for (name, stream) in [("a", &mut stream_a), ("b", &mut stream_b)] {
        let got = next_broadcast(stream);
        assert_eq!(
            (got.id, got.kind.as_str(), got.message()),
            (2, "chat", "said on c"),
            "on {name}"
        );
    }
    for addr in [a, b, c] {
        assert_eq!(stat(addr, "events_sent"), 2, "every hub is at id 2");
    }
    println!(
        "cluster: with --broker {}: a trigger on A reached B's stream and C's chat; \
         a chat on C reached A and B",
        cluster.broker()
    );
}

/// Posts `count` events from `threads` threads, each over one kept-alive
/// connection to instance `t % 3`: the ids the posts got, with messages.
fn post_concurrently(cluster: &Cluster, count: usize, threads: usize) -> HashMap<u64, String> {
    let posters: Vec<_> = (0..threads)
        .map(|t| {
            let addr = cluster.addr(t % 3);
            thread::spawn(move || {
                let mut poster = Poster::new(addr);
                (t..count)
                    .step_by(threads)
                    .map(|i| {
                        let message = format!("load-{i}");
                        (poster.trigger(&message), message)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut by_id = HashMap::new();
    for poster in posters {
        for (id, message) in poster.join().expect("a poster panicked") {
            if let Some(other) = by_id.insert(id, message.clone()) {
                panic!("id {id} was given to {other:?} and to {message:?}");
            }
        }
    }
    by_id
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn one_id_sequence_under_concurrent_posts_to_every_instance() {
    const EVENTS: u64 = 10_000;
    const THREADS: usize = 6;
    let cluster = Cluster::start("sequence", &[]);
    // One stream on each instance, opened before the first post, so each
    // should see every id from 1.
    let readers: Vec<_> = cluster
        .instances
        .iter()
        .map(|instance| {
            let mut events = open_stream(&instance.url("/events"), None);
            thread::spawn(move || read_until(&mut events, EVENTS, Duration::from_secs(120)))
        })
        .collect();
    let started = Instant::now();
    let posted = post_concurrently(&cluster, EVENTS as usize, THREADS);
    let posting = started.elapsed();
    let mut ids: Vec<u64> = posted.keys().copied().collect();
    ids.sort_unstable();
    check_sequence("the ids the posts got", &ids, 1, EVENTS);
    for (reader, instance) in readers.into_iter().zip(&cluster.instances) {
        let seen = reader.join().expect("a reader panicked");
        let who = format!("the stream on {}", instance.name);
        let seen_ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
        check_sequence(&who, &seen_ids, 1, EVENTS);
        for (id, message) in &seen {
            assert_eq!(&posted[id], message, "{who}: id {id} is another event");
        }
    }
    let all = started.elapsed();
    println!(
        "cluster: {EVENTS} posts from {THREADS} threads over kept-alive connections to 3 instances: \
         ids 1..={EVENTS} with no gap or duplicate; posted in {:.2} s ({:.0} posts/s), \
         all three streams complete and in order after {:.2} s",
        posting.as_secs_f64(),
        EVENTS as f64 / posting.as_secs_f64(),
        all.as_secs_f64()
    );
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn a_stream_resumes_on_another_instance() {
    let cluster = Cluster::start("resume", &[]);
    let mut posters: Vec<Poster> = (0..3).map(|i| Poster::new(cluster.addr(i))).collect();
    let mut post = |n: u64| posters[n as usize % 3].trigger(&format!("event {n}"));
    let mut on_a = open_stream(&cluster.instances[0].url("/events"), None);
    for n in 1..=10 {
        assert_eq!(post(n), n);
    }
    for n in 1..=4 {
        assert_eq!(next_broadcast(&mut on_a).id, n);
    }
    // The id of the last event *read*. (Not `on_a.last_event_id()`: the
    // connection has parsed all ten events that arrived together, and
    // its id is 10 already.)
    let last = "4";
    drop(on_a);
    for n in 11..=15 {
        assert_eq!(post(n), n);
    }
    // On B, with Last-Event-ID 4: exactly 5 to 15, then live.
    let mut on_b = open_stream(&cluster.instances[1].url("/events"), Some(last));
    for n in 5..=15 {
        let got = next_broadcast(&mut on_b);
        assert_eq!((got.id, got.message()), (n, format!("event {n}").as_str()));
    }
    assert_eq!(post(16), 16);
    let live = next_broadcast(&mut on_b);
    assert_eq!((live.id, live.message()), (16, "event 16"));
    println!("cluster: read 1-4 on A, resumed on B with Last-Event-ID 4: got 5-15 replayed, then 16 live");
}

// ---------------------------------------------------------------------
// Through nginx: the sse-client program, and an instance that dies.

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn the_sse_client_program_through_nginx() {
    let cluster = Cluster::with_nginx("sse-client", &[], "nginx.conf");
    let nginx = cluster.nginx().addr;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-client"))
        .args([&format!("http://{nginx}/events"), "--count", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sse-client");
    let log: Log = Default::default();
    let (lines, printed) = mpsc::channel();
    let stdout = collect_lines(
        child.stdout.take().unwrap(),
        "out",
        log.clone(),
        Some(lines),
    );
    let stderr = collect_lines(child.stderr.take().unwrap(), "err", log.clone(), None);
    // Its first two lines (welcome, initial data) say it is subscribed.
    for _ in 0..2 {
        if printed.recv_timeout(Duration::from_secs(10)).is_err() {
            kill_child(&mut child);
            panic!("sse-client printed no opening:\n{}", log_text(&log));
        }
    }
    for n in 1..=3 {
        trigger(nginx, &format!("through nginx {n}"));
    }
    let status = wait_exit(&mut child, Duration::from_secs(15));
    if status.is_none() {
        kill_child(&mut child);
    }
    // Both readers finish the pipes before the log is read: the program
    // has exited, but its last lines may still be on their way.
    let _ = stdout.join();
    let _ = stderr.join();
    let output = log_text(&log);
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{output}");
    let events: Vec<&str> = output.lines().filter(|l| l.starts_with("out: ")).collect();
    assert!(events[0].contains("[welcome]"), "{output}");
    assert!(events[1].contains("[initial data]"), "{output}");
    for n in 1..=3 {
        let expected = format!("out: #{n} [notification] through nginx {n} at ");
        assert!(events[n + 1].starts_with(&expected), "{output}");
    }
    println!("cluster: sse-client through nginx printed:\n{output}");
}

/// What the reconnecting client's thread reports.
enum Seen {
    Event(Broadcast),
    Notice(String),
    Failed(String),
}

/// A `ReconnectingClient` on `url` in a thread, reporting each event and
/// each notice (connected, dropped, waiting). It stops after `count`
/// events, or when it gives up.
fn reconnecting_reader(url: String, count: usize) -> mpsc::Receiver<Seen> {
    let (sender, seen) = mpsc::channel();
    thread::spawn(move || {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max_attempts: 10,
            jitter: false,
        };
        let mut client = ReconnectingClient::new(&url, backoff).expect("a URL");
        let notices = sender.clone();
        client.on_notice = Box::new(move |notice| {
            let _ = notices.send(Seen::Notice(notice.to_string()));
        });
        for _ in 0..count {
            let report = match client.next_event() {
                Ok(event) => Seen::Event(Broadcast {
                    id: event.last_event_id.parse().unwrap_or(0),
                    kind: event_type(&event),
                    data: json::parse(event.data.as_bytes()).unwrap_or(Json::Null),
                }),
                Err(e) => Seen::Failed(e.to_string()),
            };
            let failed = matches!(report, Seen::Failed(_));
            if sender.send(report).is_err() || failed {
                return;
            }
        }
    });
    seen
}

/// The next broadcast the reader reports (notices are collected in
/// `notices`; the opening of each connection is skipped).
fn next_seen(seen: &mpsc::Receiver<Seen>, notices: &mut Vec<String>) -> Broadcast {
    for _ in 0..100 {
        match seen.recv_timeout(Duration::from_secs(15)) {
            Ok(Seen::Event(b)) if b.kind == "welcome" || b.kind == "initial_data" => {}
            Ok(Seen::Event(broadcast)) => return broadcast,
            Ok(Seen::Notice(notice)) => notices.push(notice),
            Ok(Seen::Failed(e)) => panic!("the client gave up: {e}; {notices:?}"),
            Err(e) => panic!("no event within 15 s ({e}); notices: {notices:?}"),
        }
    }
    panic!("100 reports and no event: {notices:?}");
}

/// The instance that serves the one SSE stream of the cluster, once its
/// `/stats` counts it (within 5 s). Killed instances are not asked.
fn instance_with_a_stream(cluster: &Cluster) -> usize {
    let mut with = Vec::new();
    let found = eventually(Duration::from_secs(5), || {
        let running = (0..3).filter(|&i| cluster.instances[i].is_running());
        let counts: Vec<(usize, u64)> = running
            .map(|i| (i, stat(cluster.addr(i), "sse_connections")))
            .collect();
        with = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(i, _)| *i)
            .collect();
        counts.iter().map(|(_, n)| n).sum::<u64>() == 1
    });
    assert!(found, "not one stream in the cluster: on {with:?}");
    with[0]
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn a_stream_through_nginx_outlives_its_instance() {
    // A short retry: so that the client comes back within a second.
    let mut cluster = Cluster::with_nginx("kill", &["--retry-ms", "100"], "nginx.conf");
    let seen = reconnecting_reader(cluster.nginx().url("/events"), 40);
    let mut notices = Vec::new();
    // Wait for the opening: the client is connected (through nginx).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !notices.iter().any(|n: &String| n.starts_with("connected")) {
        assert!(Instant::now() < deadline, "not connected: {notices:?}");
        if let Ok(Seen::Notice(n)) = seen.recv_timeout(Duration::from_millis(100)) {
            notices.push(n);
        }
    }
    let victim = instance_with_a_stream(&cluster);
    let survivor = cluster.addr((victim + 1) % 3);
    for n in 1..=5 {
        trigger(survivor, &format!("before {n}"));
        assert_eq!(next_seen(&seen, &mut notices).id, n);
    }
    cluster.instances[victim].kill();
    let killed = Instant::now();
    // These through nginx: it tries the dead instance in its turn, finds
    // the port closed, and passes the post to the next one.
    let nginx = cluster.nginx().addr;
    for n in 6..=10 {
        assert_eq!(trigger(nginx, &format!("after {n}")), n);
    }
    let mut ids = Vec::new();
    for _ in 6..=10 {
        let got = next_seen(&seen, &mut notices);
        assert_ne!(got.kind, "reset", "{}", got.data);
        ids.push(got.id);
    }
    check_sequence("the stream after the kill", &ids, 6, 10);
    let back = killed.elapsed();
    let now_on = instance_with_a_stream(&cluster);
    assert_ne!(now_on, victim);
    println!(
        "cluster: instance {} killed under a stream through nginx; the client was on {} \
         within {} with ids 6-10 and nothing lost. Its notices: {notices:?}\n\
         cluster: nginx's error log:\n{}",
        cluster.instances[victim].name,
        cluster.instances[now_on].name,
        ms(back),
        cluster.nginx().error_log().trim_end()
    );
}

// ---------------------------------------------------------------------
// When Redis goes away, and when it comes back.

/// Streams on A and B and a chat on C, which have all received events
/// 1 to 3.
struct Watchers {
    streams: Vec<SseConnection>,
    chat: WsClient,
}

fn watch_three_events(cluster: &Cluster) -> Watchers {
    let mut streams: Vec<SseConnection> = (0..2)
        .map(|i| open_stream(&cluster.instances[i].url("/events"), None))
        .collect();
    let mut chat = open_chat(cluster.addr(2));
    for n in 1..=3u64 {
        assert_eq!(
            trigger(cluster.addr(n as usize % 3), &format!("before {n}")),
            n
        );
    }
    for stream in &mut streams {
        let ids: Vec<u64> = (0..3).map(|_| next_broadcast(stream).id).collect();
        assert_eq!(ids, [1, 2, 3]);
    }
    for n in 1..=3 {
        assert_eq!(next_text(&mut chat).message(), format!("before {n}"));
    }
    Watchers { streams, chat }
}

/// Posts until one is accepted (`503` means "not yet"): its id, and how
/// many posts were refused first. At most `limit`, one try per 100 ms.
fn post_until_accepted(addr: SocketAddr, message: &str, limit: Duration) -> (u64, usize) {
    let body = format!("{{\"message\":\"{message}\"}}");
    let tries = (limit.as_millis() / 100) as usize + 1;
    for refused in 0..tries {
        let response = post_json(addr, "/trigger-event", &body);
        match response.status {
            200 => {
                let id = response.json().get("id").and_then(Json::as_f64);
                return (id.expect("an id") as u64, refused);
            }
            503 => thread::sleep(Duration::from_millis(100)),
            other => panic!("{other}: {}", response.text()),
        }
    }
    panic!("every post refused for {limit:?}");
}

/// For `quiet` the streams get nothing, and stay open: a read times out
/// (or finds a keep-alive comment) rather than finding the end.
fn assert_quiet_and_open(streams: &mut [SseConnection], quiet: Duration) {
    for stream in streams.iter_mut() {
        stream.set_read_timeout(Some(quiet)).unwrap();
        for _ in 0..10 {
            match stream.next_item() {
                Ok(Item::Comment(_)) => continue,
                Ok(Item::Event(event)) => panic!("an event while Redis is down: {event:?}"),
                Err(realtime_by_hand::client::ClientError::Io(_)) => break,
                Err(e) => panic!("the stream ended while Redis was down: {e}"),
            }
        }
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
}

/// The refusals while Redis is down: every instance's trigger, and a chat.
fn assert_refused_while_down(cluster: &Cluster, watchers: &mut Watchers) -> (String, String) {
    let broker = format!("redis://127.0.0.1:{}", cluster.redis.port);
    let mut answer = String::new();
    for instance in &cluster.instances {
        let response = post_json(instance.addr, "/trigger-event", r#"{"message":"lost"}"#);
        answer = format!(
            "{} with Retry-After: {:?}: {}",
            response.status,
            response.header("retry-after"),
            response.text()
        );
        assert_eq!(response.status, 503, "{}: {answer}", instance.name);
        assert!(response.header("retry-after").is_some(), "{answer}");
        let error = response
            .json()
            .get("error")
            .and_then(Json::as_str)
            .map(str::to_string);
        assert!(error.is_some_and(|e| e.contains(&broker)), "{answer}");
    }
    send_chat(&mut watchers.chat, "lost too");
    let reply = next_text(&mut watchers.chat);
    assert_eq!(reply.kind, "error", "{}", reply.data);
    (answer, reply.data.to_string())
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn while_redis_is_down_posts_get_503_and_connections_stay_open() {
    let mut cluster = Cluster::start("down", &[]);
    let mut watchers = watch_three_events(&cluster);
    let broker = format!("redis://127.0.0.1:{}", cluster.redis.port);
    let log_before = cluster.instances[0].log.lock().unwrap().len();
    cluster.redis.kill();
    let (answer, chat_reply) = assert_refused_while_down(&cluster, &mut watchers);
    for instance in &cluster.instances {
        let down = eventually(Duration::from_secs(5), || {
            broker_connected(instance.addr) == Some(false)
        });
        assert!(down, "{}: {}", instance.name, broker_stats(instance.addr));
    }
    assert_quiet_and_open(&mut watchers.streams, Duration::from_secs(2));
    let attempts: Vec<String> = cluster.instances[0].log.lock().unwrap()[log_before..]
        .iter()
        .filter(|line| line.contains(&broker))
        .cloned()
        .collect();
    assert!(
        attempts.len() >= 2,
        "the log should show the retries: {attempts:?}\n{}",
        cluster.logs()
    );

    // Redis comes back, empty (it was killed, nothing was saved): every
    // subscriber is told the ids start over, then gets the new events.
    cluster.redis.restart();
    let back = Instant::now();
    for stream in &mut watchers.streams {
        let reset = next_broadcast(stream);
        assert_eq!(reset.kind, "reset", "{}", reset.data);
    }
    assert_eq!(next_text(&mut watchers.chat).kind, "reset");
    let (id, refused) = post_until_accepted(cluster.addr(1), "back", Duration::from_secs(20));
    for stream in &mut watchers.streams {
        let got = next_broadcast(stream);
        assert_eq!((got.id, got.message()), (id, "back"));
    }
    assert_eq!(next_text(&mut watchers.chat).message(), "back");
    let reconnects = broker_stats(cluster.addr(0)).get("reconnects").cloned();
    println!(
        "cluster: Redis killed. Every POST /trigger-event answered {answer}\n\
         cluster: a chat message got {chat_reply}\n\
         cluster: the streams and the chat stayed open; instance a logged, while Redis was down:\n  {}\n\
         cluster: Redis restarted (empty): resets on every stream and the chat, then id {id} \
         accepted {} after the restart ({refused} posts refused first); reconnects: {reconnects:?}",
        attempts.join("\n  "),
        ms(back.elapsed()),
    );
}

/// Checks the reset each subscriber gets when Redis lost its data: on a
/// stream, an event whose id is its `newestId`; on the chat, the same
/// JSON as a text message. Returns `newestId`.
fn expect_resets(watchers: &mut Watchers) -> u64 {
    let mut resets = Vec::new();
    for stream in &mut watchers.streams {
        let reset = next_broadcast(stream);
        assert_eq!(reset.kind, "reset", "{}", reset.data);
        let newest = reset.data.get("newestId").and_then(Json::as_f64);
        assert_eq!(newest, Some(reset.id as f64), "{}", reset.data);
        assert!(!reset.message().is_empty(), "{}", reset.data);
        resets.push(reset);
    }
    let on_chat = next_text(&mut watchers.chat);
    assert_eq!(on_chat.kind, "reset", "{}", on_chat.data);
    assert_eq!(
        on_chat.data, resets[0].data,
        "the chat's reset is the stream's"
    );
    assert_eq!(
        resets[0].data, resets[1].data,
        "one reset on both instances"
    );
    println!(
        "cluster: the reset, as event id {}: {}",
        resets[0].id, resets[0].data
    );
    resets[0].id
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn redis_restarted_without_its_data_resets_every_subscriber() {
    let mut cluster = Cluster::start("lost", &[]);
    let mut watchers = watch_three_events(&cluster);
    let epoch = broker_stats(cluster.addr(0)).get("epoch").cloned();
    cluster.redis.shutdown(false); // SHUTDOWN NOSAVE: the data is gone
    cluster.redis.restart();
    let newest = expect_resets(&mut watchers);
    // The new sequence, on every subscriber, from the reset's id on.
    let (id, _) = post_until_accepted(cluster.addr(2), "new 1", Duration::from_secs(20));
    assert_eq!(id, newest + 1);
    for stream in &mut watchers.streams {
        assert_eq!(next_broadcast(stream).id, id);
    }
    assert_eq!(next_text(&mut watchers.chat).message(), "new 1");
    assert_ne!(broker_stats(cluster.addr(0)).get("epoch").cloned(), epoch);
    // A client that comes back with an id of the old sequence (3, newer
    // than anything now) is told too.
    let url = cluster.instances[2].url("/events");
    let mut late = open_stream(&url, Some("3"));
    let reset = next_broadcast(&mut late);
    assert_eq!(reset.kind, "reset", "{}", reset.data);
    println!(
        "cluster: Redis lost its data: after the reset, the new sequence went on at id {id}; \
         a client resuming from id 3 then got: {}",
        reset.data
    );
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn redis_restarted_with_its_data_continues_the_sequence() {
    let mut cluster = Cluster::start("kept", &[]);
    let mut watchers = watch_three_events(&cluster);
    let epoch = broker_stats(cluster.addr(0)).get("epoch").cloned();
    cluster.redis.shutdown(true); // SHUTDOWN SAVE: dump.rdb in the directory
    cluster.redis.restart(); // the same --dir: it loads dump.rdb
    let back = Instant::now();
    let (id, refused) = post_until_accepted(cluster.addr(1), "after", Duration::from_secs(20));
    assert_eq!(id, 4, "the next id of the same sequence");
    for stream in &mut watchers.streams {
        let got = next_broadcast(stream);
        assert_eq!((got.id, got.kind.as_str()), (4, "notification"), "no reset");
    }
    let on_chat = next_text(&mut watchers.chat);
    assert_eq!(
        (on_chat.kind.as_str(), on_chat.message()),
        ("notification", "after")
    );
    assert_eq!(broker_stats(cluster.addr(0)).get("epoch").cloned(), epoch);
    println!(
        "cluster: Redis restarted with its data: id 4 accepted {} after the restart \
         ({refused} posts refused first), no reset, the same epoch",
        ms(back.elapsed())
    );
}

/// Makes each instance hold `n` idle publishing connections: `n` posts
/// to it at once, from `n` threads, each on a connection of its own.
fn fill_publisher_pools(cluster: &Cluster, n: usize) {
    for instance in &cluster.instances {
        let addr = instance.addr;
        let posters: Vec<_> = (0..n)
            .map(|t| thread::spawn(move || trigger(addr, &format!("warm {t}"))))
            .collect();
        for poster in posters {
            poster.join().expect("a post");
        }
    }
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn once_redis_is_back_and_connected_no_post_is_refused() {
    let mut cluster = Cluster::start("back", &[]);
    fill_publisher_pools(&cluster, 4);
    cluster.redis.shutdown(true);
    cluster.redis.restart();
    // Each instance's reader finds Redis again, and /stats says so.
    for instance in &cluster.instances {
        let connected = eventually(Duration::from_secs(15), || {
            broker_connected(instance.addr) == Some(true)
        });
        assert!(
            connected,
            "{}: {}",
            instance.name,
            broker_stats(instance.addr)
        );
    }
    // From then on, every post must be accepted.
    let mut refused = Vec::new();
    for instance in &cluster.instances {
        for n in 0..6 {
            let body = format!("{{\"message\":\"back {n}\"}}");
            let response = post_json(instance.addr, "/trigger-event", &body);
            if response.status != 200 {
                refused.push(format!(
                    "{} post {n}: {} {}",
                    instance.name,
                    response.status,
                    response.text()
                ));
            }
        }
    }
    println!(
        "cluster: after Redis came back (SHUTDOWN SAVE, restart) and every instance said \
         connected, {} of 18 posts were refused",
        refused.len()
    );
    assert!(
        refused.is_empty(),
        "posts refused after the broker was back and /stats said connected (each instance \
         held 4 idle publishing connections from before the restart):\n{}",
        refused.join("\n")
    );
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn redis_restarted_from_an_older_snapshot_does_not_reuse_ids_silently() {
    let mut cluster = Cluster::start("snapshot", &[]);
    let mut watchers = watch_three_events(&cluster);
    // A snapshot at id 3, then three more events it does not hold.
    assert_eq!(
        cluster.redis.command(&[b"SAVE"]).unwrap().as_str(),
        Some("OK")
    );
    for n in 4..=6 {
        assert_eq!(trigger(cluster.addr(0), &format!("lost {n}")), n);
    }
    for stream in &mut watchers.streams {
        let ids: Vec<u64> = (0..3).map(|_| next_broadcast(stream).id).collect();
        assert_eq!(ids, [4, 5, 6]);
    }
    for _ in 4..=6 {
        next_text(&mut watchers.chat);
    }
    // A crash (nothing saved since), and a restart from the snapshot:
    // the same epoch, but the log's last id is 3 again.
    cluster.redis.kill();
    cluster.redis.restart();
    let accepted: Vec<u64> = (1..=4)
        .map(|n| {
            post_until_accepted(
                cluster.addr(1),
                &format!("new {n}"),
                Duration::from_secs(20),
            )
            .0
        })
        .collect();
    // The streams saw 4, 5 and 6 already. They must get the four new
    // events all the same: under ids they have not seen, or after a
    // reset that says the ids went back.
    for (stream, name) in watchers.streams.iter_mut().zip(["a", "b"]) {
        let got = read_for(stream, Duration::from_secs(3));
        let shown: Vec<String> = got
            .iter()
            .map(|b| format!("{} {} {:?}", b.id, b.kind, b.message()))
            .collect();
        println!(
            "cluster: Redis restarted from a snapshot taken at id 3 (after 6): the posts got ids \
             {accepted:?}; the stream on {name} then got {shown:?}"
        );
        for n in 1..=4 {
            let message = format!("new {n}");
            assert!(
                got.iter().any(|b| b.message() == message),
                "{message:?} never reached {name}: {shown:?}"
            );
        }
        let reset = got.iter().position(|b| b.kind == "reset");
        for b in &got[..reset.unwrap_or(got.len())] {
            assert!(
                b.id > 6,
                "{name}: id {} a second time, without a reset: {}",
                b.id,
                b.data
            );
        }
    }
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn an_event_published_before_the_readers_are_back_still_reaches_every_stream() {
    let mut cluster = Cluster::start("race", &[]);
    let mut watchers = watch_three_events(&cluster);
    // Redis down long enough for the readers' back-off to grow to
    // seconds, then back, empty. At once, before any reader is back, an
    // event goes into the new log, as an instance whose reader was
    // quicker would publish it.
    cluster.redis.kill();
    thread::sleep(Duration::from_secs(4));
    cluster.redis.restart();
    let mut log = realtime_by_hand::redis::Log::open(&cluster.broker()).expect("the log");
    let data = r#"{"type":"notification","message":"first of the new log","timestamp":"-"}"#;
    let id = log.publish(None, data).expect("publish");
    assert_eq!(id, 1);
    for (stream, name) in watchers.streams.iter_mut().zip(["a", "b"]) {
        let reset = next_broadcast(stream);
        assert_eq!(reset.kind, "reset", "{}", reset.data);
        let after = read_for(stream, Duration::from_secs(1));
        let shown: Vec<String> = after
            .iter()
            .map(|b| format!("{} {:?}", b.id, b.message()))
            .collect();
        println!(
            "cluster: event 1 was in the new log before the readers came back; \
             {name}'s stream got the reset {} then {shown:?}",
            reset.data
        );
        let got_it = after.iter().any(|b| b.message() == "first of the new log");
        let told = reset.id == 0;
        assert!(
            got_it || told,
            "{name}: the reset says the newest is {} (so the client resumes after it), \
             yet event 1 was never sent: {shown:?}",
            reset.id
        );
    }
}

/// Every broadcast a stream gets until it has been quiet for `quiet`
/// (at most 100).
fn read_for(stream: &mut SseConnection, quiet: Duration) -> Vec<Broadcast> {
    stream.set_read_timeout(Some(quiet)).unwrap();
    let mut got = Vec::new();
    while got.len() < 100 {
        match stream.next_event() {
            Ok(event) => got.push(Broadcast {
                id: event.last_event_id.parse().unwrap_or(0),
                kind: event_type(&event),
                data: json::parse(event.data.as_bytes()).unwrap_or(Json::Null),
            }),
            Err(_) => break,
        }
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    got
}

// ---------------------------------------------------------------------
// Starting without Redis.

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn an_unreachable_broker_stops_the_start() {
    let port = free_port(); // nothing listens there
    let url = format!("redis://127.0.0.1:{port}/nobody");
    let started = Instant::now();
    let exited = match Instance::start("alone", &instance_args(&url, &[])) {
        Ok(instance) => panic!("it started, on {}", instance.addr),
        Err(exited) => exited,
    };
    let code = exited.status.and_then(|status| status.code());
    assert_eq!(code, Some(1), "{}", exited.output);
    let expected = format!("err: error: cannot reach the broker redis://127.0.0.1:{port}");
    assert!(exited.output.contains(&expected), "{}", exited.output);
    println!(
        "cluster: --broker on a closed port: exit status 1 after {}, saying:\n{}",
        ms(started.elapsed()),
        exited.output
    );
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn with_broker_optional_it_starts_and_connects_later() {
    let dir = TempDir::new("optional");
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/late");
    let args = instance_args(&url, &["--broker-optional"]);
    let instance = Instance::start("late", &args)
        .unwrap_or_else(|e| panic!("it did not start ({:?}):\n{}", e.status, e.output));
    assert_eq!(broker_connected(instance.addr), Some(false));
    let refused = post_json(instance.addr, "/trigger-event", r#"{"message":"early"}"#);
    assert_eq!(refused.status, 503, "{}", refused.text());
    let stats_before = broker_stats(instance.addr);
    // Redis appears on that port: the instance finds it by itself.
    let _redis = Redis::start_on(port, &dir.path);
    let appeared = Instant::now();
    let connected = eventually(Duration::from_secs(15), || {
        broker_connected(instance.addr) == Some(true)
    });
    assert!(connected, "{}", broker_stats(instance.addr));
    let found = appeared.elapsed();
    assert_eq!(trigger(instance.addr, "late"), 1);
    println!(
        "cluster: --broker-optional with no Redis: started; /stats said {stats_before}; \
         Redis started later was found within {}",
        ms(found)
    );
}

// ---------------------------------------------------------------------
// The proxy: nginx.conf, and nginx's defaults.

/// Posts `count` small events to `post_to`, `gap` apart, and measures how
/// long each took to reach a stream opened on `stream_url`.
fn small_event_delays(
    stream_url: &str,
    post_to: SocketAddr,
    count: usize,
    gap: Duration,
) -> Vec<Duration> {
    let arrivals = timed_stream(open_stream(stream_url, None), count);
    let mut poster = Poster::new(post_to);
    let mut delays = Vec::new();
    for n in 0..count {
        let message = format!("small {n}");
        let sent = Instant::now();
        poster.trigger(&message);
        let (at, got) = arrivals
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{message:?} did not arrive within 10 s"));
        assert_eq!(got.message(), message);
        delays.push(at - sent);
        thread::sleep(gap);
    }
    delays
}

/// The head of a `GET /events` through `addr`, as the client sees it.
fn stream_head(addr: SocketAddr) -> String {
    let pieces = raw_reader(addr, "/events");
    let mut timeline = Timeline::default();
    for _ in 0..50 {
        if timeline.head_end().is_some() || !timeline.take(&pieces, Duration::from_secs(5)) {
            break;
        }
    }
    let end = timeline.head_end().expect("a response head within 5 s");
    String::from_utf8_lossy(&timeline.bytes[..end])
        .trim_end()
        .to_string()
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn through_nginx_conf_the_chat_works_and_events_arrive_at_once() {
    let cluster = Cluster::with_nginx("proxy", &[], "nginx.conf");
    let nginx = cluster.nginx().addr;
    // Two chat clients through nginx, which sends them to two instances.
    let mut ann = open_chat(nginx);
    let mut bob = open_chat(nginx);
    let chats: Vec<u64> = (0..3)
        .map(|i| stat(cluster.addr(i), "ws_connections"))
        .collect();
    send_chat(&mut ann, "hello through nginx");
    for client in [&mut ann, &mut bob] {
        let got = next_text(client);
        assert_eq!(
            (got.kind.as_str(), got.message()),
            ("chat", "hello through nginx")
        );
    }
    // The stream: nginx has used the server's X-Accel-Buffering (and does
    // not pass it on), and speaks chunked HTTP/1.1 to the client.
    let head = stream_head(nginx);
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("x-accel-buffering"),
        "{head}"
    );
    let delays = small_event_delays(
        &format!("http://{nginx}/events"),
        cluster.addr(0),
        20,
        Duration::from_millis(50),
    );
    let f = figures(&delays);
    assert!(f.max < Duration::from_millis(500), "{f:?}");
    println!(
        "cluster: nginx.conf: a chat through nginx reached both clients (chat connections per instance: {chats:?})\n\
         cluster: nginx.conf: the stream's head as the client gets it:\n{head}\n\
         cluster: nginx.conf: 20 small events, 50 ms apart, arrived in median {}, max {}",
        ms(f.median),
        ms(f.max)
    );
}

/// A WebSocket handshake, raw, through `addr` to `path`: the status line,
/// and the body's first line.
fn raw_handshake(addr: SocketAddr, path: &str) -> HttpResponse {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    raw_request(addr, request.as_bytes())
}

/// What nginx's defaults do to the WebSocket handshake; returns a summary.
fn websocket_through_defaults(addr: SocketAddr) -> String {
    let on_ws = raw_handshake(addr, "/ws");
    assert_eq!(on_ws.status, 400, "{}", on_ws.text());
    assert_eq!(
        on_ws.text().trim_end(),
        "WebSocket handshake refused: WebSocket needs HTTP/1.1"
    );
    let on_root = raw_handshake(addr, "/");
    assert_eq!(on_root.status, 200);
    assert_eq!(
        on_root.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let client = WsClient::connect(&format!("ws://{addr}/ws"))
        .err()
        .expect("no WebSocket");
    format!(
        "GET /ws with Upgrade: {} {:?}; GET / with Upgrade: {} (the demo page, {} bytes, not the chat); \
         our WsClient says: {client}",
        on_ws.status,
        on_ws.text().trim_end(),
        on_root.status,
        on_root.body.len()
    )
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn nginx_defaults_refuse_the_websocket_but_honour_x_accel_buffering() {
    let cluster = Cluster::with_nginx("defaults", &[], "nginx-defaults.conf");
    let nginx = cluster.nginx().addr;
    let websocket = websocket_through_defaults(nginx);
    let head = stream_head(nginx);
    let delays = small_event_delays(
        &format!("http://{nginx}/events"),
        cluster.addr(0),
        20,
        Duration::from_millis(50),
    );
    let f = figures(&delays);
    assert!(f.max < Duration::from_millis(500), "{f:?}");
    println!(
        "cluster: nginx defaults, WebSocket: {websocket}\n\
         cluster: nginx defaults, the stream's head:\n{head}\n\
         cluster: nginx defaults (X-Accel-Buffering: no honoured): 20 small events arrived in median {}, max {}",
        ms(f.median),
        ms(f.max)
    );
}

/// One event of a stream read raw: id, `type`, message, and when its last
/// byte reached the client.
struct Arrived {
    id: u64,
    kind: String,
    message: String,
    at: Instant,
}

/// Takes a raw chunked event stream apart: the sizes of its chunks, and
/// every event with the moment it arrived. The parser is fed one byte at
/// a time, so the byte that completes an event is known.
fn events_with_arrivals(timeline: &Timeline) -> (Vec<usize>, Vec<Arrived>) {
    let body = timeline.head_end().expect("a response head");
    let chunks = dechunk(&timeline.bytes, body);
    let mut parser = realtime_by_hand::client::sse::EventStreamParser::new();
    let mut events = Vec::new();
    for (i, byte) in chunks.data.iter().enumerate() {
        for item in parser.feed(std::slice::from_ref(byte)) {
            if let Item::Event(event) = item {
                let data = json::parse(event.data.as_bytes()).unwrap_or(Json::Null);
                let text = |key| {
                    data.get(key)
                        .and_then(Json::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                events.push(Arrived {
                    id: event.last_event_id.parse().unwrap_or(0),
                    kind: text("type"),
                    message: text("message"),
                    at: timeline.arrival(chunks.raw_index[i]),
                });
            }
        }
    }
    (chunks.chunk_sizes, events)
}

/// Posts `message` and notes when.
fn post_noted(poster: &mut Poster, posted: &mut HashMap<u64, Instant>, message: &str) {
    let id = poster.trigger(message);
    posted.insert(id, Instant::now());
}

/// The response head an instance sends nginx-defaults.conf's HTTP/1.0
/// request for `/events`, in bytes: it sits in nginx's first buffer too.
fn upstream_head_len(instance: SocketAddr) -> usize {
    let mut stream = connect(instance);
    stream
        .write_all(b"GET /events HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        let n = stream.read(&mut byte).expect("read the head");
        assert_eq!(n, 1, "the stream ended inside its head");
        head.push(byte[0]);
    }
    head.len()
}

/// What the buffering test saw, and when.
struct BufferedRun {
    chunks: Vec<usize>,
    events: Vec<Arrived>,
    posted: HashMap<u64, Instant>,
    opened: Instant,
    first_bytes: Instant,
    late_posted: Instant,
    killed: Instant,
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn nginx_ignoring_x_accel_buffering_holds_events_until_a_buffer_fills() {
    let mut cluster = Cluster::with_nginx("buffered", &[], "nginx-defaults.conf");
    let pieces = raw_reader(cluster.nginx().addr_ignoring, "/events");
    // Nothing comes back to say the stream is open (that is the point),
    // so the instances are asked.
    let victim = instance_with_a_stream(&cluster);
    let head_len = upstream_head_len(cluster.addr(victim));
    let mut timeline = Timeline::default();
    let mut poster = Poster::new(cluster.addr(0));
    let mut posted = HashMap::new();
    let opened = Instant::now();
    // 1. Five small events, 200 ms apart, then 2 s more: nothing comes
    //    through, not even the response head.
    for n in 1..=5 {
        post_noted(&mut poster, &mut posted, &format!("early {n}"));
        thread::sleep(Duration::from_millis(200));
    }
    assert!(!timeline.take(&pieces, Duration::from_secs(2)), "not held");
    // 2. More events, one at a time, until something comes through.
    let mut fillers = 0;
    while !timeline.take(&pieces, Duration::from_millis(20)) {
        assert!(fillers < 300, "300 more events and still nothing");
        fillers += 1;
        post_noted(&mut poster, &mut posted, &format!("filler {fillers}"));
    }
    timeline.take(&pieces, Duration::from_millis(200));
    let first_bytes = timeline.reads[0].0;
    // 3. Three more: held again, for as long as the stream lasts.
    for n in 1..=3 {
        post_noted(&mut poster, &mut posted, &format!("late {n}"));
    }
    let late_posted = Instant::now();
    assert!(
        !timeline.take(&pieces, Duration::from_millis(1500)),
        "not held"
    );
    // 4. The stream ends (its instance is stopped): nginx lets go.
    let killed = Instant::now(); // (taken first: nginx may flush before kill() returns)
    cluster.instances[victim].kill();
    for _ in 0..50 {
        if !timeline.take(&pieces, Duration::from_secs(2)) {
            break;
        }
    }
    let (chunks, events) = events_with_arrivals(&timeline);
    let run = BufferedRun {
        chunks,
        events,
        posted,
        opened,
        first_bytes,
        late_posted,
        killed,
    };
    print_buffered(&run, head_len);
    check_buffered(&run, head_len);
}

/// The broadcasts of the run, without the stream's opening.
fn broadcasts(run: &BufferedRun) -> Vec<&Arrived> {
    let opening = ["welcome", "initial_data"];
    let kept = run.events.iter();
    kept.filter(|e| !opening.contains(&e.kind.as_str()))
        .collect()
}

/// Every event came, once and in order, but only when a buffer filled or
/// the stream ended.
fn check_buffered(run: &BufferedRun, head_len: usize) {
    let broadcasts = broadcasts(run);
    let ids: Vec<u64> = broadcasts.iter().map(|e| e.id).collect();
    check_sequence("the buffered stream", &ids, 1, run.posted.len() as u64);
    // nginx's buffers are 4096 bytes (one memory page). The first holds
    // the instance's response head as well, so its chunk is shorter by
    // that; every later one but the last (sent when the stream ended)
    // is a full buffer.
    let chunks = &run.chunks;
    assert!(chunks.len() >= 2, "{chunks:?}");
    assert_eq!(chunks[0] + head_len, 4096, "{chunks:?}, head {head_len}");
    let middle = &chunks[1..chunks.len() - 1];
    assert!(middle.iter().all(|&size| size == 4096), "{chunks:?}");
    for event in broadcasts {
        let delay = event.at - run.posted[&event.id];
        if event.message.starts_with("early") {
            assert!(delay >= Duration::from_secs(2), "{}", ms(delay));
        }
        if event.message.starts_with("late") {
            assert!(event.at >= run.killed, "{} before the end", event.message);
            assert!(event.at - run.killed < Duration::from_secs(1));
            assert!(event.at - run.late_posted >= Duration::from_millis(1500));
        }
    }
}

/// The run as a table: the early and late events, and the fillers on
/// either side of the first flush.
fn print_buffered(run: &BufferedRun, head_len: usize) {
    let broadcasts = broadcasts(run);
    let in_first = broadcasts
        .iter()
        .filter(|e| e.at <= run.first_bytes)
        .count();
    let seconds = |at: Instant| (at - run.opened).as_secs_f64();
    let mut lines = Vec::new();
    for (i, event) in broadcasts.iter().enumerate() {
        let next_is_later = broadcasts.get(i + 1).is_some_and(|n| n.at > event.at);
        let previous_was_earlier = i > 0 && broadcasts[i - 1].at < event.at;
        let boundary = next_is_later || previous_was_earlier;
        if event.message.starts_with("filler") && !boundary {
            continue;
        }
        let sent = run.posted[&event.id];
        lines.push(format!(
            "  id {:3}  {:10}  posted at {:6.3} s  arrived at {:6.3} s  held {}",
            event.id,
            event.message,
            seconds(sent),
            seconds(event.at),
            ms(event.at - sent)
        ));
    }
    println!(
        "cluster: nginx with proxy_ignore_headers X-Accel-Buffering: the response head and the \
         first events reached the client {:.3} s after the stream opened, once {in_first} events \
         were out; the body came in chunks of {:?} bytes (the first buffer of 4096 also held the \
         instance's {head_len}-byte head), the last when the stream ended, {} after its instance \
         was killed. The events (fillers only where a flush fell):\n{}",
        seconds(run.first_bytes),
        run.chunks,
        ms(broadcasts.last().map_or(run.killed, |e| e.at) - run.killed),
        lines.join("\n")
    );
}

// ---------------------------------------------------------------------
// Latency: direct, through nginx, across instances.

/// Events per measurement, and events sent first to warm up (connections
/// made, caches filled) and not counted.
const SAMPLES: usize = 300;
const WARM_UP: usize = 20;

/// One event at a time: posted to `post_to`, timed until it reaches a
/// stream on `read_from`.
fn sse_delays(post_to: SocketAddr, read_from: SocketAddr) -> Vec<Duration> {
    let stream = open_stream(&format!("http://{read_from}/events"), None);
    let arrivals = timed_stream(stream, SAMPLES + WARM_UP);
    let mut poster = Poster::new(post_to);
    let mut delays = Vec::new();
    for n in 0..SAMPLES + WARM_UP {
        let message = format!("latency {n}");
        let sent = Instant::now();
        poster.trigger(&message);
        let (at, got) = arrivals
            .recv_timeout(Duration::from_secs(10))
            .expect("the event within 10 s");
        assert_eq!(got.message(), message);
        if n >= WARM_UP {
            delays.push(at - sent);
        }
    }
    delays
}

/// One chat message at a time: sent on `send_on`, timed until it reaches
/// another chat client on `receive_on`. The sender's own copy is read
/// (and dropped) by a thread, as the server sends it one too.
fn chat_delays(send_on: SocketAddr, receive_on: SocketAddr) -> Vec<Duration> {
    let sender = open_chat(send_on);
    let receiver = open_chat(receive_on);
    let outgoing = sender.sender();
    let _own_copies = timed_chat(sender, SAMPLES + WARM_UP);
    let arrivals = timed_chat(receiver, SAMPLES + WARM_UP);
    let mut delays = Vec::new();
    for n in 0..SAMPLES + WARM_UP {
        let message = format!("latency {n}");
        let text = format!("{{\"type\":\"chat\",\"message\":\"{message}\",\"username\":\"t\"}}");
        let sent = Instant::now();
        outgoing.send_text(&text).expect("send a chat message");
        let (at, got) = arrivals
            .recv_timeout(Duration::from_secs(10))
            .expect("the message within 10 s");
        assert_eq!(got.message(), message);
        if n >= WARM_UP {
            delays.push(at - sent);
        }
    }
    delays
}

#[test]
#[ignore = "needs redis-server and nginx (tests/cluster/run.sh)"]
fn delivery_latency_direct_through_nginx_and_across_instances() {
    let cluster = Cluster::with_nginx("latency", &[], "nginx.conf");
    // Beside the cluster, one instance without a broker: the in-process
    // hub, for comparison.
    let alone_args = ["--host", "127.0.0.1", "--port", "0", "--tick-secs", "0"].map(String::from);
    let alone = Instance::start("alone", &alone_args).expect("a lone instance");
    let (a, b, nginx) = (cluster.addr(0), cluster.addr(1), cluster.nginx().addr);
    let paths = [
        (
            "one instance, no broker (in-process hub)",
            alone.addr,
            alone.addr,
        ),
        ("one instance, through Redis (post to A, read on A)", a, a),
        ("across instances (post to A, read on B)", a, b),
        ("through nginx, both ends (any instance)", nginx, nginx),
    ];
    let mut table = vec![
        "| path | SSE median | SSE p99 | chat median | chat p99 |".to_string(),
        "| --- | ---: | ---: | ---: | ---: |".to_string(),
    ];
    for (label, from, to) in paths {
        let sse = figures(&sse_delays(from, to));
        let chat = figures(&chat_delays(from, to));
        table.push(format!(
            "| {label} | {} | {} | {} | {} |",
            ms(sse.median),
            ms(sse.p99),
            ms(chat.median),
            ms(chat.p99)
        ));
    }
    println!(
        "cluster: delivery latency, {SAMPLES} events one at a time per path (after {WARM_UP} not counted), \
         from the start of the POST (SSE) or the chat send (WebSocket) to the event's arrival \
         at another client:\n{}",
        table.join("\n")
    );
}
