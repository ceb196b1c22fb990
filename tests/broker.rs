//! `--broker`: several servers sharing one event log in Redis.
//!
//! Two kinds of test, as in `tests/redis.rs`:
//! - with no Redis at all (a closed port): what a server does when its
//!   broker cannot be reached; these run with every `cargo test`;
//! - against a real Redis at `REDIS_URL`, `#[ignore]`d: two servers in this
//!   process, on one prefix of their own, as two instances of a cluster.
//!   `tests/cluster/redis.sh` starts a private redis-server and runs them;
//!   `tests/cluster/run.sh` runs whole processes behind nginx.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use common::*;
use realtime_by_hand::client::ws::Received;
use realtime_by_hand::config::Config;
use realtime_by_hand::json::{self, Json};
use realtime_by_hand::random::random_u64;
use realtime_by_hand::server::{RunningServer, Server};

/// A loopback port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn with_broker(url: &str, optional: bool) -> Config {
    Config {
        broker: Some(url.to_string()),
        broker_optional: optional,
        ..test_config()
    }
}

#[test]
fn an_unreachable_broker_stops_the_start_with_a_message_naming_it() {
    let url = format!("redis://127.0.0.1:{}/t", closed_port());
    let error = Server::bind(with_broker(&url, false))
        .err()
        .expect("a server whose broker is not there must not start");
    let text = error.to_string();
    let address = url.trim_end_matches("/t");
    assert!(
        text.contains(&format!("cannot reach the broker {address}")),
        "{text}"
    );
    assert!(text.contains("--broker-optional"), "{text}");
}

#[test]
fn with_broker_optional_it_serves_and_refuses_to_publish_until_redis_is_there() {
    let url = format!("redis://127.0.0.1:{}/t", closed_port());
    let server = start(with_broker(&url, true));
    let broker = stats(server.addr).get("broker").cloned().unwrap();
    assert_eq!(broker.get("connected"), Some(&Json::Bool(false)));
    assert!(broker.get("problem").and_then(Json::as_str).is_some());

    // A stream opens and stays open; the trigger says why it cannot send.
    let mut stream = open_events(server.addr, None);
    assert_eq!(event_type(&stream.next_event().unwrap()), "welcome");
    let answer = post_json(server.addr, "/trigger-event", r#"{"message":"hi"}"#);
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("1"));
    let error = answer
        .json()
        .get("error")
        .and_then(Json::as_str)
        .map(String::from);
    assert!(
        error.as_deref().is_some_and(|e| e.contains("unreachable")),
        "{error:?}"
    );

    // A chat message gets an error reply, and the connection stays open.
    let mut chat = open_ws(server.addr, "/ws");
    let _welcome = chat.receive().unwrap();
    chat.send_text(r#"{"type":"chat","message":"hi"}"#).unwrap();
    let Received::Text(reply) = chat.receive().unwrap() else {
        panic!("expected a text reply");
    };
    let reply = json::parse(reply.as_bytes()).unwrap();
    assert_eq!(reply.get("type").and_then(Json::as_str), Some("error"));
    assert!(reply
        .get("message")
        .and_then(Json::as_str)
        .is_some_and(|m| m.contains("unreachable")));
    chat.send_text(r#"{"type":"chat","message":"still here?"}"#)
        .unwrap();
    assert!(matches!(chat.receive().unwrap(), Received::Text(_)));
    assert_eq!(stat(server.addr, "sse_connections"), 1);
}

// ---------------------------------------------------------------------
// Against a real Redis, at $REDIS_URL.

/// A prefix no other test (or earlier run) uses.
fn cluster_url() -> String {
    let base = std::env::var("REDIS_URL").unwrap_or_else(|_| {
        panic!("set REDIS_URL=redis://127.0.0.1:PORT (tests/cluster/redis.sh does)")
    });
    format!(
        "{}/rbh-broker-test-{:08x}",
        base.trim_end_matches('/'),
        random_u64() as u32
    )
}

fn instances(url: &str, n: usize) -> Vec<RunningServer> {
    (0..n).map(|_| start(with_broker(url, false))).collect()
}

fn message_of(event: &realtime_by_hand::client::sse::SseEvent) -> String {
    json::parse(event.data.as_bytes())
        .ok()
        .and_then(|v| v.get("message").and_then(Json::as_str).map(String::from))
        .unwrap_or_default()
}

/// The next event that is not the opening's welcome or initial data.
fn next_broadcast(
    stream: &mut realtime_by_hand::client::sse::SseConnection,
) -> realtime_by_hand::client::sse::SseEvent {
    loop {
        let event = stream.next_event().unwrap();
        if !matches!(event_type(&event).as_str(), "welcome" | "initial_data") {
            return event;
        }
    }
}

#[test]
#[ignore = "needs Redis: REDIS_URL=redis://127.0.0.1:PORT, or tests/cluster/redis.sh"]
fn an_event_posted_to_one_instance_reaches_the_others_sse_and_chat() {
    let url = cluster_url();
    let servers = instances(&url, 2);
    let (a, b) = (servers[0].addr, servers[1].addr);
    let mut stream_b = open_events(b, None);
    let mut chat_b = open_ws(b, "/ws");
    let _welcome = chat_b.receive().unwrap();
    let mut chat_a = open_ws(a, "/ws");
    let _welcome = chat_a.receive().unwrap();

    let id = trigger(a, "posted to A");
    assert_eq!(id, 1, "the cluster's first id");
    let event = next_broadcast(&mut stream_b);
    assert_eq!(
        (event.last_event_id.as_str(), message_of(&event).as_str()),
        ("1", "posted to A")
    );
    let Received::Text(text) = chat_b.receive().unwrap() else {
        panic!("expected the broadcast")
    };
    assert!(text.contains("posted to A"), "{text}");

    // A chat message on A: one more id, seen on B's stream.
    chat_a
        .send_text(r#"{"type":"chat","message":"chat on A"}"#)
        .unwrap();
    let event = next_broadcast(&mut stream_b);
    assert_eq!(
        (event.last_event_id.as_str(), message_of(&event).as_str()),
        ("2", "chat on A")
    );
    for server in [a, b] {
        assert!(eventually(Duration::from_secs(5), || stat(
            server,
            "events_sent"
        ) == 2));
    }
}

#[test]
#[ignore = "needs Redis: REDIS_URL=redis://127.0.0.1:PORT, or tests/cluster/redis.sh"]
fn ids_are_one_sequence_under_concurrent_posts_to_every_instance() {
    let url = cluster_url();
    let servers = instances(&url, 3);
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let mut readers: Vec<_> = addrs.iter().map(|&a| open_events(a, None)).collect();
    const PER_POSTER: usize = 100;
    let posters: Vec<_> = (0..6)
        .map(|i| {
            let addr = addrs[i % addrs.len()];
            thread::spawn(move || {
                (0..PER_POSTER)
                    .map(|n| trigger(addr, &format!("p{i}-{n}")))
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut handed_out: Vec<u64> = posters
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    handed_out.sort_unstable();
    let total = 6 * PER_POSTER as u64;
    assert_eq!(
        handed_out,
        (1..=total).collect::<Vec<_>>(),
        "no id twice, none skipped"
    );
    for reader in &mut readers {
        let seen: Vec<u64> = (0..total)
            .map(|_| next_broadcast(reader).last_event_id.parse().unwrap())
            .collect();
        assert_eq!(
            seen,
            (1..=total).collect::<Vec<_>>(),
            "every event once, in order"
        );
    }
}

#[test]
#[ignore = "needs Redis: REDIS_URL=redis://127.0.0.1:PORT, or tests/cluster/redis.sh"]
fn a_stream_dropped_from_one_instance_resumes_on_another() {
    let url = cluster_url();
    let servers = instances(&url, 2);
    let (a, b) = (servers[0].addr, servers[1].addr);
    for n in 1..=3 {
        trigger(a, &format!("early {n}"));
    }
    let mut on_a = open_events(a, Some("1"));
    assert_eq!(next_broadcast(&mut on_a).last_event_id, "2");
    assert_eq!(next_broadcast(&mut on_a).last_event_id, "3");
    drop(on_a);
    trigger(a, "missed 4");
    trigger(b, "missed 5");
    // B is a fresh instance for this client: its history came from Redis.
    let mut on_b = open_events(b, Some("3"));
    assert_eq!(message_of(&next_broadcast(&mut on_b)), "missed 4");
    assert_eq!(message_of(&next_broadcast(&mut on_b)), "missed 5");
    trigger(a, "live 6");
    let live = next_broadcast(&mut on_b);
    assert_eq!(
        (live.last_event_id.as_str(), message_of(&live).as_str()),
        ("6", "live 6")
    );
}

#[test]
#[ignore = "needs Redis: REDIS_URL=redis://127.0.0.1:PORT, or tests/cluster/redis.sh"]
fn a_log_that_starts_over_resets_live_streams_and_chats() {
    let url = cluster_url();
    let servers = instances(&url, 1);
    let a = servers[0].addr;
    for n in 1..=3 {
        trigger(a, &format!("before {n}"));
    }
    let mut stream = open_events(a, None);
    let mut chat = open_ws(a, "/ws");
    let _welcome = chat.receive().unwrap();
    // What a Redis restarted without its data looks like to the log: its
    // three keys gone (deleted here, so other tests' keys stay).
    let prefix = url.rsplit('/').next().unwrap();
    let mut redis = realtime_by_hand::redis::Connection::open(&url).unwrap();
    for key in ["last-id", "events", "epoch"] {
        let name = format!("{prefix}:log:{key}");
        redis.command(&[b"DEL", name.as_bytes()]).unwrap();
    }
    let reset = next_broadcast(&mut stream);
    assert_eq!(event_type(&reset), "reset");
    assert_eq!(
        reset.last_event_id, "0",
        "the reset carries the new sequence's place"
    );
    let Received::Text(text) = chat.receive().unwrap() else {
        panic!("expected the reset")
    };
    assert!(text.contains(r#""type":"reset""#), "{text}");
    // The new sequence starts at 1, on the same stream.
    assert_eq!(trigger(a, "after"), 1);
    let next = next_broadcast(&mut stream);
    assert_eq!(
        (next.last_event_id.as_str(), message_of(&next).as_str()),
        ("1", "after")
    );
}

#[test]
#[ignore = "needs Redis: REDIS_URL=redis://127.0.0.1:PORT, or tests/cluster/redis.sh"]
fn each_instance_numbers_its_connections_apart_from_the_others() {
    let url = cluster_url();
    let servers = instances(&url, 2);
    let mut client_ids = Vec::new();
    for server in &servers {
        let broker = stats(server.addr).get("broker").cloned().unwrap();
        let instance = broker.get("instance").and_then(Json::as_f64).unwrap() as u64;
        let mut stream = open_events(server.addr, None);
        let welcome = json::parse(stream.next_event().unwrap().data.as_bytes()).unwrap();
        let client_id = welcome.get("clientId").and_then(Json::as_f64).unwrap() as u64;
        assert_eq!(
            client_id / 1_000_000,
            instance,
            "{client_id} on instance {instance}"
        );
        client_ids.push(client_id);
    }
    assert_ne!(client_ids[0], client_ids[1]);
}

#[test]
#[ignore = "needs Redis: REDIS_URL=redis://127.0.0.1:PORT, or tests/cluster/redis.sh"]
fn every_instance_ticks_into_the_one_log_and_the_ids_stay_consecutive() {
    let url = cluster_url();
    // Each instance ticks on its own thread, into the shared log.
    let ticking = Config {
        tick: Duration::from_millis(200),
        ..with_broker(&url, false)
    };
    let servers: Vec<RunningServer> = (0..2).map(|_| start(ticking.clone())).collect();
    let mut stream = open_events(servers[0].addr, None);
    let mut ids = Vec::new();
    let mut counted = Vec::new();
    while ids.len() < 10 {
        let event = next_broadcast(&mut stream);
        assert_eq!(event_type(&event), "periodic_update", "{}", event.data);
        ids.push(event.last_event_id.parse::<u64>().unwrap());
        let data = json::parse(event.data.as_bytes()).unwrap();
        counted.push(data.get("connections").and_then(Json::as_f64).unwrap() as u64);
    }
    let first = ids[0];
    assert_eq!(ids, (first..first + 10).collect::<Vec<_>>(), "one sequence");
    // Each instance counts its own subscribers: the one with the stream
    // says 1, the other 0, so both ticked into this stream.
    assert!(counted.contains(&1) && counted.contains(&0), "{counted:?}");
}

#[test]
#[ignore = "needs Redis: REDIS_URL=redis://127.0.0.1:PORT, or tests/cluster/redis.sh"]
fn after_redis_lost_its_data_a_new_instance_does_not_take_a_running_ones_number() {
    let url = cluster_url();
    let mut servers = instances(&url, 2);
    let number = |server: &RunningServer| {
        let broker = stats(server.addr).get("broker").cloned().unwrap();
        broker.get("instance").and_then(Json::as_f64).unwrap() as u64
    };
    let running: Vec<u64> = servers.iter().map(number).collect();
    let mut streams: Vec<_> = servers.iter().map(|s| open_events(s.addr, None)).collect();
    // Redis loses everything under this prefix, the count of instances too.
    let prefix = url.rsplit('/').next().unwrap();
    let mut redis = realtime_by_hand::redis::Connection::open(&url).unwrap();
    for key in ["log:last-id", "log:events", "log:epoch", "instances"] {
        let name = format!("{prefix}:{key}");
        redis.command(&[b"DEL", name.as_bytes()]).unwrap();
    }
    // Both running instances notice (their streams get the reset) ...
    for stream in &mut streams {
        assert_eq!(event_type(&next_broadcast(stream)), "reset");
    }
    // ... and one that starts now gets a number neither of them has.
    servers.push(start(with_broker(&url, false)));
    let newcomer = number(&servers[2]);
    assert!(
        !running.contains(&newcomer),
        "the new instance got {newcomer}, already held: {running:?}"
    );
}

#[test]
#[ignore = "needs Redis: REDIS_URL=redis://127.0.0.1:PORT, or tests/cluster/redis.sh"]
fn an_instance_that_starts_late_loads_the_whole_history_a_page_at_a_time() {
    let url = cluster_url();
    // With events of up to 8 MiB allowed, a reply of the log may hold only
    // seven of them: the history comes in pages of that many (the first at
    // start, the rest by the reader), and all of it must get there.
    let large = Config {
        max_body: 8 << 20,
        ..with_broker(&url, false)
    };
    let first = start(large.clone());
    for n in 1..=20 {
        trigger(first.addr, &format!("event {n}"));
    }
    let late = start(large);
    let mut stream = open_events(late.addr, Some("0"));
    let ids: Vec<u64> = (0..20)
        .map(|_| next_broadcast(&mut stream).last_event_id.parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=20).collect::<Vec<_>>(),
        "the late instance's history"
    );
}
