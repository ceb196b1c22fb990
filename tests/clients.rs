//! The Rust clients against the real server: the `sse-client` and
//! `ws-client` programs (run as processes, as a user would) and the
//! reconnecting library they share.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use realtime_by_hand::client::sse::{Backoff, ReconnectingClient};

/// A child process that is killed when the test ends, however it ends.
struct Program(Child);

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's standard output, as they come.
fn lines_of(stdout: ChildStdout) -> Receiver<String> {
    let (sender, receiver) = channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits for a line containing `needle`; returns every line seen until then.
fn wait_for(lines: &Receiver<String>, needle: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line containing {needle:?} within {limit:?}; saw {seen:#?}");
}

fn sse_client(args: &[&str]) -> (Program, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-client"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sse-client");
    let lines = lines_of(child.stdout.take().unwrap());
    (Program(child), lines)
}

/// A server whose streams end after about a second and whose browsers are
/// told to come back after 50 ms: every few events, the client is dropped.
fn dropping_server() -> RunningServer {
    start(Config {
        max_stream: Duration::from_millis(1000),
        retry_ms: 50,
        ..test_config()
    })
}

// The article's client promise: the server drops the stream, the client
// reconnects with Last-Event-ID, and not one event is lost or repeated.
#[test]
fn sse_client_program_resumes_after_drops_without_losing_an_event() {
    let server = dropping_server();
    let url = format!("{}/events", server.url());
    let (_program, lines) = sse_client(&[&url, "--base-delay-secs", "0.05"]);
    wait_for(&lines, "[welcome]", Duration::from_secs(10));
    // 30 events over about 3 s: the stream is cut two or three times meanwhile.
    let ids: Vec<u64> = (0..30)
        .map(|i| {
            thread::sleep(Duration::from_millis(100));
            trigger(server.addr, &format!("event-{i}"))
        })
        .collect();
    let seen = wait_for(&lines, "event-29", Duration::from_secs(15));
    let received: Vec<String> = seen
        .iter()
        .filter(|l| l.contains("[notification]"))
        .map(|l| {
            l.split("] ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<String> = (0..30).map(|i| format!("event-{i}")).collect();
    assert_eq!(received, expected, "every event once, in order");
    let welcomes = seen.iter().filter(|l| l.contains("[welcome]")).count();
    assert!(
        welcomes >= 2,
        "the stream should have been dropped and resumed at least once ({welcomes} welcomes)"
    );
    assert_eq!(ids.windows(2).filter(|w| w[1] != w[0] + 1).count(), 0);
}

// The same through the library, checking the ids themselves: consecutive,
// no gap and no duplicate across reconnections.
#[test]
fn reconnecting_client_sees_consecutive_ids_across_drops() {
    let server = dropping_server();
    let backoff = Backoff {
        base: Duration::from_millis(50),
        max_attempts: 5,
        jitter: true,
    };
    let mut client = ReconnectingClient::new(&format!("{}/events", server.url()), backoff).unwrap();
    let first = client.next_event().unwrap();
    assert_eq!(event_type(&first), "welcome");
    let addr = server.addr;
    let poster = thread::spawn(move || {
        for i in 0..25 {
            thread::sleep(Duration::from_millis(100));
            trigger(addr, &format!("n{i}"));
        }
    });
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.len() < 25 && Instant::now() < deadline {
        let event = client.next_event().unwrap();
        if event_type(&event) == "notification" {
            ids.push(event.last_event_id.parse::<u64>().unwrap());
        }
    }
    poster.join().unwrap();
    assert_eq!(ids, (1..=25).collect::<Vec<u64>>());
    assert!(
        client.connects >= 2,
        "expected at least one reconnection, got {} connects",
        client.connects
    );
}

// With nothing listening, the client tries the configured number of times
// (waiting 50 ms, 100 ms, …) and then gives up with a clear message.
#[test]
fn sse_client_gives_up_after_max_attempts() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_sse-client"))
        .args([
            &format!("http://127.0.0.1:{port}/events"),
            "--max-attempts",
            "3",
            "--base-delay-secs",
            "0.05",
            "--no-jitter",
        ])
        .output()
        .expect("run sse-client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("gave up after 3"), "{stderr}");
    assert_eq!(stderr.matches("reconnecting in").count(), 3, "{stderr}");
    // 50 + 100 + 200 ms of waiting, at least.
    assert!(started.elapsed() >= Duration::from_millis(350));
}

#[test]
fn sse_client_rejects_bad_arguments() {
    for args in [
        &["--max-attempts"][..],
        &["--count", "x"],
        &["--bogus"],
        &["https://x/events"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_sse-client"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("usage"),
            "{args:?}"
        );
    }
}

// ws-client chats with a second client through the server: its typed line
// reaches the other client, the other client's message is printed, and end
// of input closes the connection cleanly with 1000.
#[test]
fn ws_client_program_chats_with_a_second_client() {
    let server = start_default();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ws-client"))
        .args([&format!("ws://{}/ws", server.addr), "--username", "ann"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ws-client");
    let lines = lines_of(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let program = Program(child);
    wait_for(&lines, "[welcome]", Duration::from_secs(10));

    let mut bob = open_ws(server.addr, "/ws");
    assert!(matches!(bob.receive().unwrap(), Received::Text(t) if t.contains("welcome")));
    writeln!(stdin, "hello from the terminal").unwrap();
    let chat = match bob.receive().unwrap() {
        Received::Text(text) => json::parse(text.as_bytes()).unwrap(),
        other => panic!("expected ann's chat, got {other:?}"),
    };
    assert_eq!(chat.get("username").and_then(Json::as_str), Some("ann"));
    assert_eq!(
        chat.get("message").and_then(Json::as_str),
        Some("hello from the terminal")
    );

    bob.send_text(r#"{"type":"chat","message":"hi ann","username":"bob"}"#)
        .unwrap();
    wait_for(&lines, "[chat] bob: hi ann", Duration::from_secs(10));

    drop(stdin); // end of input
    let mut program = program;
    let child = &mut program.0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ws-client did not exit after end of input"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("closed with 1000"), "{stderr}");
}

// Each "break it yourself" exercise gets the close code the RFC asks for.
#[test]
fn ws_client_misbehaviours_get_their_close_codes() {
    let server = start(Config {
        max_message: 1 << 20,
        ..test_config()
    });
    let cases = [
        ("unmasked", 1002),
        ("reserved-bit", 1002),
        ("bad-opcode", 1002),
        ("big-control", 1002),
        ("fragmented-control", 1002),
        ("invalid-utf8", 1007),
        ("bad-close-code", 1002),
        ("length-top-bit", 1002),
        ("continuation", 1002),
        ("too-big", 1009),
    ];
    for (kind, code) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_ws-client"))
            .args([&format!("ws://{}/ws", server.addr), "--misbehave", kind])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{kind}: {stdout}");
        assert!(
            stdout.contains(&format!("server answered: close {code} ")),
            "{kind}: {stdout}"
        );
    }
    // The server closes each one once the client has gone too.
    assert!(
        eventually(Duration::from_secs(5), || stat(
            server.addr,
            "ws_connections"
        ) == 0),
        "every misbehaving connection was closed"
    );
}
