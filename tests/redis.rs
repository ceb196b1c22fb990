//! The Redis client and the cluster's event log, over real sockets.
//!
//! Two kinds of test:
//! - against a fake server in a thread on 127.0.0.1, which sends exactly
//!   the bytes a test wants (garbage, silence, half a reply); these run
//!   with every `cargo test`;
//! - against a real Redis, `#[ignore]`d so that `cargo test` passes where
//!   there is none. They read the server from `REDIS_URL`;
//!   `tests/cluster/redis.sh` starts a private redis-server and runs them:
//!
//!   REDIS_URL=redis://127.0.0.1:6390 cargo test --test redis -- --ignored
//!
//! Each real-Redis test uses keys under a prefix of its own, so they can
//! run side by side; the one that calls FLUSHALL takes a lock that makes
//! it run alone.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{RwLock, RwLockReadGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use realtime_by_hand::random::random_u64;
use realtime_by_hand::redis::{
    Connection, Limits, Log, LogConfig, LogEntry, Problem, RedisError, RedisUrl, Reply, Timeouts,
    Trim,
};

// ---------------------------------------------------------------------
// Against a fake server.

/// A server on a free loopback port that accepts `connections`
/// connections, one after the other, and hands each to `script`.
fn fake_server<F>(connections: usize, script: F) -> (RedisUrl, JoinHandle<()>)
where
    F: Fn(usize, TcpStream) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        for n in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            script(n, stream);
        }
    });
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}/fake")).unwrap();
    (url, handle)
}

/// Reads from `stream` until exactly `expected` has arrived.
fn expect_bytes(stream: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

fn quick() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        read: Duration::from_millis(300),
        write: Duration::from_secs(2),
    }
}

fn connect(url: &RedisUrl) -> Connection {
    Connection::connect(url, quick(), Limits::default()).unwrap()
}

#[test]
fn no_redis_there_is_an_error_that_names_the_url() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let error = Log::open(&url).unwrap_err();
    assert!(matches!(error, RedisError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("could not connect to {url}: ")),
        "{message}"
    );
    assert!(
        message.ends_with("is redis-server running and listening there?"),
        "{message}"
    );
}

#[test]
fn a_bad_url_is_refused_before_any_connection() {
    let error = Connection::open("localhost:6379").unwrap_err();
    assert!(matches!(error, RedisError::BadUrl { .. }), "{error:?}");
    assert!(error.to_string().contains("does not start with redis://"));
}

#[test]
fn a_pipeline_is_written_whole_then_its_replies_are_read_in_order() {
    let (url, server) = fake_server(1, |_, mut stream| {
        // All three commands arrive before the server answers any.
        expect_bytes(
            &mut stream,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv\n\r\n\
              *2\r\n$4\r\nINCR\r\n$1\r\nk\r\n\
              *2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        );
        // The replies, one byte per write.
        let replies = b"+OK\r\n-ERR value is not an integer or out of range\r\n$2\r\nv\n\r\n";
        for byte in replies {
            stream.write_all(&[*byte]).unwrap();
        }
    });
    let mut connection = connect(&url);
    let replies = connection
        .pipeline(&[
            &[b"SET" as &[u8], b"k", b"v\n"][..],
            &[b"INCR", b"k"],
            &[b"GET", b"k"],
        ])
        .unwrap();
    assert_eq!(
        replies,
        vec![
            Reply::Simple("OK".into()),
            Reply::Error("ERR value is not an integer or out of range".into()),
            Reply::Bulk(b"v\n".to_vec()),
        ]
    );
    server.join().unwrap();
}

#[test]
fn an_error_reply_is_an_error_with_its_text_and_the_connection_goes_on() {
    let (url, server) = fake_server(1, |_, mut stream| {
        expect_bytes(&mut stream, b"*1\r\n$3\r\nFOO\r\n");
        stream
            .write_all(b"-ERR unknown command 'FOO', with args beginning with: \r\n")
            .unwrap();
        expect_bytes(&mut stream, b"*1\r\n$4\r\nPING\r\n");
        stream.write_all(b"+PONG\r\n").unwrap();
    });
    let mut connection = connect(&url);
    let error = connection.command(&[b"FOO"]).unwrap_err();
    let RedisError::Server { command, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(command, "FOO");
    assert_eq!(
        message,
        "ERR unknown command 'FOO', with args beginning with: "
    );
    assert!(!connection.is_broken());
    assert_eq!(
        connection.command(&[b"PING"]).unwrap(),
        Reply::Simple("PONG".into())
    );
    server.join().unwrap();
}

#[test]
fn a_silent_server_is_a_timeout_and_the_connection_is_then_broken() {
    let (url, server) = fake_server(1, |_, mut stream| {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink); // until the client hangs up
    });
    let mut connection = connect(&url);
    let started = Instant::now();
    let error = connection.command(&[b"PING"]).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, RedisError::Timeout { .. }), "{error:?}");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{} did not answer within 300ms while reading a reply",
            url.address()
        )
    );
    let again = connection.command(&[b"PING"]).unwrap_err();
    assert!(matches!(again, RedisError::Broken { .. }), "{again:?}");
    assert!(again.to_string().contains("did not answer within 300ms"));
    drop(connection);
    server.join().unwrap();
}

#[test]
fn a_trickling_server_cannot_outlast_the_deadline() {
    let (url, server) = fake_server(1, |_, mut stream| {
        let mut command = [0; 14];
        stream.read_exact(&mut command).unwrap();
        // A simple string that never ends, one byte every 50 ms: each read
        // is quick, but the reply as a whole is not.
        let _ = stream.write_all(b"+");
        for _ in 0..40 {
            if stream.write_all(b"x").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let mut connection = connect(&url);
    let started = Instant::now();
    let error = connection.command(&[b"PING"]).unwrap_err();
    assert!(matches!(error, RedisError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "{error}");
    drop(connection);
    server.join().unwrap();
}

#[test]
fn a_server_that_is_not_redis_is_a_protocol_error_naming_the_byte() {
    let (url, server) = fake_server(1, |_, mut stream| {
        let mut command = [0; 14];
        stream.read_exact(&mut command).unwrap();
        stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .unwrap();
    });
    let mut connection = connect(&url);
    let error = connection.command(&[b"PING"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{} sent something that is not a RESP2 reply: byte 0 of the replies is 0x48 'H', \
             where a RESP2 type byte (+ - : $ *) was expected; is that port a Redis server?",
            url.address()
        )
    );
    server.join().unwrap();
}

#[test]
fn a_huge_announced_reply_is_refused_before_it_is_read() {
    let (url, server) = fake_server(1, |_, mut stream| {
        let mut command = [0; 14];
        stream.read_exact(&mut command).unwrap();
        stream.write_all(b"$999999999999\r\n").unwrap();
    });
    let mut connection = connect(&url);
    let error = connection.command(&[b"PING"]).unwrap_err();
    let RedisError::Protocol {
        error: protocol, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(protocol.at, 0);
    assert!(matches!(
        protocol.problem,
        Problem::BulkTooLong {
            len: 999_999_999_999,
            ..
        }
    ));
    assert!(error.to_string().contains("(max_bulk_len)"), "{error}");
    server.join().unwrap();
}

#[test]
fn a_server_that_hangs_up_mid_reply() {
    let (url, server) = fake_server(1, |_, mut stream| {
        let mut command = [0; 14];
        stream.read_exact(&mut command).unwrap();
        stream.write_all(b"$10\r\nabc").unwrap();
    });
    let mut connection = connect(&url);
    let error = connection.command(&[b"PING"]).unwrap_err();
    assert!(
        matches!(
            error,
            RedisError::Closed {
                mid_reply: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .ends_with("closed the connection in the middle of a reply"));
    server.join().unwrap();
}

#[test]
fn a_log_connects_again_after_its_connection_broke() {
    let get = b"*2\r\n$3\r\nGET\r\n$16\r\nfake:log:last-id\r\n";
    let (url, server) = fake_server(2, move |n, mut stream| {
        if n == 0 {
            // The first connection (made by Log::connect) dies at the
            // first command.
            expect_bytes(&mut stream, get);
        } else {
            expect_bytes(&mut stream, get);
            stream.write_all(b"$1\r\n7\r\n").unwrap();
        }
    });
    let config = LogConfig {
        timeouts: quick(),
        ..LogConfig::default()
    };
    let mut log = Log::connect(&url, config).unwrap();
    let error = log.last_id().unwrap_err();
    assert!(matches!(error, RedisError::Closed { .. }), "{error:?}");
    assert_eq!(log.last_id().unwrap(), 7);
    server.join().unwrap();
}

// ---------------------------------------------------------------------
// Against a real Redis, at $REDIS_URL.

/// Taken for reading by every real-Redis test, and for writing by those
/// that change the whole server (FLUSHALL, SCRIPT FLUSH).
static WHOLE_SERVER: RwLock<()> = RwLock::new(());

fn share_server() -> RwLockReadGuard<'static, ()> {
    WHOLE_SERVER.read().unwrap_or_else(|e| e.into_inner())
}

/// The server from `REDIS_URL`, with a key prefix for this test alone.
fn redis_url(test: &str) -> RedisUrl {
    let text = std::env::var("REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "set REDIS_URL=redis://127.0.0.1:PORT to run the tests that need Redis \
             (tests/cluster/redis.sh starts one and does)"
        )
    });
    let mut url = RedisUrl::parse(&text).unwrap();
    url.prefix = format!("rbh-test:{test}:{:08x}", random_u64() as u32);
    url
}

fn log_with(url: &RedisUrl, history: u64, trim: Trim) -> Log {
    let config = LogConfig {
        history,
        trim,
        ..LogConfig::default()
    };
    Log::connect(url, config).unwrap()
}

fn raw(url: &RedisUrl) -> Connection {
    Connection::connect(url, Timeouts::default(), Limits::default()).unwrap()
}

fn ids(entries: &[LogEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.id).collect()
}

#[test]
#[ignore = "needs Redis at $REDIS_URL (tests/cluster/redis.sh)"]
fn commands_and_pipelines_against_redis() {
    let _shared = share_server();
    let url = redis_url("commands");
    let key = format!("{}:k", url.prefix);
    let key = key.as_bytes();
    let mut redis = raw(&url);
    let value = b"binary \r\n\x00 safe";
    assert_eq!(
        redis.command(&[b"SET", key, value]).unwrap(),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        redis.command(&[b"GET", key]).unwrap(),
        Reply::Bulk(value.to_vec())
    );
    let replies = redis
        .pipeline(&[
            &[b"DEL" as &[u8], key][..],
            &[b"INCR", key],
            &[b"INCR", key],
            &[b"HGET", key, b"field"],
            &[b"GET", b"rbh-test:no-such-key"],
        ])
        .unwrap();
    assert_eq!(replies[..3], [1, 1, 2].map(Reply::Integer));
    assert!(
        matches!(&replies[3], Reply::Error(e) if e.starts_with("WRONGTYPE")),
        "{}",
        replies[3]
    );
    assert_eq!(replies[4], Reply::NullBulk);
    let error = redis.command(&[b"NO-SUCH-COMMAND"]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Redis refused NO-SUCH-COMMAND: ERR unknown command"),
        "{error}"
    );
    assert_eq!(redis.command(&[b"DEL", key]).unwrap(), Reply::Integer(1));
}

#[test]
#[ignore = "needs Redis at $REDIS_URL (tests/cluster/redis.sh)"]
fn publish_ids_grow_by_one_across_two_threads() {
    let _shared = share_server();
    let url = redis_url("publish");
    const EACH: u64 = 2_000;
    let publishers: Vec<_> = (0..2)
        .map(|t| {
            let url = url.clone();
            thread::spawn(move || {
                let mut log = log_with(&url, 10_000, Trim::Exact);
                (0..EACH)
                    .map(|i| log.publish(Some("load"), &format!("{t}:{i}")).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let got: Vec<Vec<u64>> = publishers.into_iter().map(|p| p.join().unwrap()).collect();
    for ids in &got {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "a thread's ids went back"
        );
    }
    let all: HashSet<u64> = got.iter().flatten().copied().collect();
    assert_eq!(all.len() as u64, 2 * EACH, "an id was handed out twice");
    assert_eq!(all, (1..=2 * EACH).collect(), "a gap in the ids");
    let mut log = log_with(&url, 10_000, Trim::Exact);
    assert_eq!(log.last_id().unwrap(), 2 * EACH);
    // The stream holds them in id order, each with the data of the publish
    // that got that id.
    let (entries, oldest) = log.range_after(0, 10_000).unwrap();
    assert_eq!(ids(&entries), (1..=2 * EACH).collect::<Vec<_>>());
    assert_eq!(oldest, Some(1));
    for (t, ids) in got.iter().enumerate() {
        for (i, id) in ids.iter().enumerate() {
            let entry = &entries[*id as usize - 1];
            assert_eq!(entry.data, format!("{t}:{i}"));
            assert_eq!(entry.name.as_deref(), Some("load"));
        }
    }
}

#[test]
#[ignore = "needs Redis at $REDIS_URL (tests/cluster/redis.sh)"]
fn read_after_blocks_until_an_event_is_published() {
    let _shared = share_server();
    let url = redis_url("read-after");
    let mut log = log_with(&url, 100, Trim::Exact);
    log.publish(None, "before").unwrap();
    // Without BLOCK: what is there, at once.
    let now = log.read_after(0, Duration::ZERO).unwrap();
    assert_eq!(ids(&now), [1]);
    assert!(log.read_after(1, Duration::ZERO).unwrap().is_empty());
    // Nothing new: the wait runs out, and the answer is empty.
    let started = Instant::now();
    assert!(log
        .read_after(1, Duration::from_millis(200))
        .unwrap()
        .is_empty());
    assert!(started.elapsed() >= Duration::from_millis(190));
    // A reader waiting in another thread gets the event once it is out.
    let reader_url = url.clone();
    let reader = thread::spawn(move || {
        let mut reader = log_with(&reader_url, 100, Trim::Exact);
        let started = Instant::now();
        let entries = reader.read_after(1, Duration::from_secs(5)).unwrap();
        (entries, started.elapsed())
    });
    thread::sleep(Duration::from_millis(300));
    assert_eq!(log.publish(Some("tick"), "after").unwrap(), 2);
    let (entries, waited) = reader.join().unwrap();
    assert_eq!(
        entries,
        [LogEntry {
            id: 2,
            name: Some("tick".into()),
            data: "after".into()
        }]
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[test]
#[ignore = "needs Redis at $REDIS_URL (tests/cluster/redis.sh)"]
fn range_after_serves_a_resume() {
    let _shared = share_server();
    let url = redis_url("range-after");
    let mut log = log_with(&url, 100, Trim::Exact);
    assert_eq!(log.range_after(0, 10).unwrap(), (vec![], None));
    assert_eq!(log.last_id().unwrap(), 0);
    let texts = ["plain", "", "two\nlines", "ünïcödé ✓", "{\"json\":true}"];
    for (i, text) in texts.iter().cycle().take(10).enumerate() {
        let name = (i % 2 == 0).then_some("named");
        assert_eq!(log.publish(name, text).unwrap(), i as u64 + 1);
    }
    let (entries, oldest) = log.range_after(4, 3).unwrap();
    assert_eq!(oldest, Some(1));
    assert_eq!(
        entries,
        [
            LogEntry {
                id: 5,
                name: Some("named".into()),
                data: "{\"json\":true}".into()
            },
            LogEntry {
                id: 6,
                name: None,
                data: "plain".into()
            },
            LogEntry {
                id: 7,
                name: Some("named".into()),
                data: String::new()
            },
        ]
    );
    assert_eq!(ids(&log.range_after(7, 100).unwrap().0), [8, 9, 10]);
    assert_eq!(log.range_after(10, 100).unwrap(), (vec![], Some(1)));
    assert_eq!(log.range_after(0, 0).unwrap(), (vec![], Some(1)));
    assert_eq!(log.range_after(u64::MAX, 5).unwrap(), (vec![], Some(1)));
}

#[test]
#[ignore = "needs Redis at $REDIS_URL (tests/cluster/redis.sh)"]
fn the_stream_is_trimmed_to_the_history_length() {
    let _shared = share_server();
    let url = redis_url("trim");
    let mut exact = log_with(&url, 5, Trim::Exact);
    for _ in 0..12 {
        exact.publish(None, "x").unwrap();
    }
    let (entries, oldest) = exact.range_after(0, 100).unwrap();
    assert_eq!(ids(&entries), [8, 9, 10, 11, 12]);
    assert_eq!(oldest, Some(8));
    // A resume from before the oldest kept id can tell events were lost.
    let (entries, oldest) = exact.range_after(3, 100).unwrap();
    assert!(oldest.unwrap() > 3 + 1 && entries[0].id == 8);
    // Approximate trimming keeps at least the history, and trims in blocks.
    let url = redis_url("trim-approximate");
    let mut approximate = log_with(&url, 10, Trim::Approximate);
    for _ in 0..500 {
        approximate.publish(None, "y").unwrap();
    }
    let events = approximate.keys().events.clone();
    let len = raw(&url).command(&[b"XLEN", events.as_bytes()]).unwrap();
    let len = len.as_integer().unwrap();
    assert!((10..500).contains(&len), "{len} entries kept");
    let (entries, _) = approximate.range_after(490, 100).unwrap();
    assert_eq!(ids(&entries), (491..=500).collect::<Vec<_>>());
}

#[test]
#[ignore = "needs Redis at $REDIS_URL (tests/cluster/redis.sh)"]
fn the_epoch_changes_when_redis_loses_its_data() {
    let _alone = WHOLE_SERVER.write().unwrap_or_else(|e| e.into_inner());
    let url = redis_url("epoch");
    let mut log = log_with(&url, 100, Trim::Exact);
    let mut other = log_with(&url, 100, Trim::Exact);
    let first = log.epoch().unwrap();
    assert_eq!(first.len(), 32);
    assert_eq!(log.epoch().unwrap(), first, "the epoch is stable");
    assert_eq!(other.epoch().unwrap(), first, "and the same for everyone");
    assert_eq!(log.publish(None, "a").unwrap(), 1);
    assert_eq!(log.publish(None, "b").unwrap(), 2);
    assert_eq!(log.epoch().unwrap(), first);
    // Redis loses everything: the ids start over, under a new epoch.
    let flushed = raw(&url).command(&[b"FLUSHALL"]).unwrap();
    assert_eq!(flushed, Reply::Simple("OK".into()));
    let second = other.epoch().unwrap();
    assert_ne!(second, first);
    assert_eq!(log.epoch().unwrap(), second);
    assert_eq!(log.publish(None, "c").unwrap(), 1);
    // A publish is enough to start the next epoch: the script sets it.
    raw(&url).command(&[b"FLUSHALL"]).unwrap();
    assert_eq!(log.publish(None, "d").unwrap(), 1);
    let epoch_key = log.keys().epoch.clone();
    let set_by_publish = raw(&url).command(&[b"GET", epoch_key.as_bytes()]).unwrap();
    let third = log.epoch().unwrap();
    assert_eq!(set_by_publish.as_str(), Some(third.as_str()));
    assert!(third != first && third != second);
}

#[test]
#[ignore = "needs Redis at $REDIS_URL (tests/cluster/redis.sh)"]
fn publish_falls_back_to_eval_when_redis_forgot_the_script() {
    // Alone: another test's publish would put the script back in the cache.
    let _alone = WHOLE_SERVER.write().unwrap_or_else(|e| e.into_inner());
    let url = redis_url("noscript");
    let mut log = log_with(&url, 100, Trim::Exact);
    let mut redis = raw(&url);
    let sha = log.script_sha().to_string();
    let exists = |redis: &mut Connection| {
        let reply = redis
            .command(&[b"SCRIPT", b"EXISTS", sha.as_bytes()])
            .unwrap();
        reply.as_array().unwrap()[0].clone()
    };
    redis.command(&[b"SCRIPT", b"FLUSH"]).unwrap();
    assert_eq!(exists(&mut redis), Reply::Integer(0));
    assert_eq!(log.publish(None, "first").unwrap(), 1);
    // EVAL cached it, under the SHA-1 this side computed.
    assert_eq!(exists(&mut redis), Reply::Integer(1));
    assert_eq!(log.publish(None, "second").unwrap(), 2);
    let loaded = redis
        .command(&[
            b"SCRIPT",
            b"LOAD",
            realtime_by_hand::redis::log::PUBLISH_SCRIPT.as_bytes(),
        ])
        .unwrap();
    assert_eq!(loaded.as_str(), Some(sha.as_str()));
}
