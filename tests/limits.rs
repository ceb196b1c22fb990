//! The limits that keep a few connections from taking the whole machine:
//! size before parse (`--max-chat-bytes`, the JSON value budget), one
//! budget for bytes in flight (`--max-buffered-bytes`), a deadline for a
//! started message (`--message-timeout-secs`), fair slots at the cap, and
//! each event stored once in the history.
//!
//! Memory is measured on the built server in a child process (its
//! `/proc/PID/status`), since the tests of one file share a process and
//! run in parallel. `SERVER_BIN=path` runs those tests against another
//! build of the server, to compare (an older build fails them).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use realtime_by_hand::websocket::frame::{encode_header, encode_masked_frame, OpCode};
use realtime_by_hand::websocket::message::{CloseFrame, Event};

const MIB: usize = 1 << 20;

// ------------------------------------------------------------ helpers

/// The server binary, running in a child process on a free port.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

impl ChildServer {
    fn start(args: &[&str]) -> ChildServer {
        ChildServer::start_with_env(args, &[])
    }

    /// [`ChildServer::start`], with variables added to its environment.
    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> ChildServer {
        let binary = std::env::var("SERVER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_realtime-by-hand").to_string());
        let mut child = Command::new(binary)
            .args(["--port", "0", "--quiet", "--tick-secs", "0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let mut first = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("Server listening on http://")
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        ChildServer { child, addr }
    }

    /// A line of `/proc/PID/status`, in KiB (`VmRSS`: resident now;
    /// `VmHWM`: the most it has ever been).
    fn memory_kib(&self, field: &str) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ws(addr: SocketAddr, path: &str) -> WsClient {
    let mut client = open_ws(addr, path);
    if path != "/echo" {
        match client.receive().unwrap() {
            Received::Text(text) => assert!(text.contains("welcome"), "{text}"),
            other => panic!("expected the welcome, got {other:?}"),
        }
    }
    client
}

fn close_code(frame: &Option<CloseFrame>) -> Option<u16> {
    frame.as_ref().map(|f| f.code.to_u16())
}

/// The bytes of a masked frame announcing `len` bytes of payload.
fn masked(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    encode_masked_frame(true, opcode, payload, [1, 2, 3, 4])
}

// ------------------------------------------------------------ size before parse

// Why: a chat message is broadcast to everyone and parsed into a tree; its
// size is refused from the frame header, before a byte is buffered.
#[test]
fn a_chat_message_over_max_chat_bytes_closes_with_1009_from_its_header() {
    let server = start(test_config());
    let mut client = ws(server.addr, "/ws");
    let mut header = Vec::new();
    encode_header(
        &mut header,
        true,
        OpCode::Text,
        Some([1, 2, 3, 4]),
        64 * 1024 + 1,
    );
    client.send_raw(&header).unwrap();
    let frame = read_close(&mut client);
    assert_eq!(close_code(&frame), Some(1009));
    let reason = frame.unwrap().reason;
    assert!(reason.contains("--max-chat-bytes"), "{reason}");

    // Fragments that add up past the limit are refused as they add up.
    let mut client = ws(server.addr, "/ws");
    let piece = vec![b' '; 40 * 1024];
    client.send_frame(false, OpCode::Text, &piece).unwrap();
    let _ = client.send_frame(false, OpCode::Continuation, &piece);
    assert_eq!(close_code(&read_close(&mut client)), Some(1009));

    // The echo keeps --max-message: the same size is fine there.
    let mut echo = ws(server.addr, "/echo");
    let text = "e".repeat(64 * 1024 + 1);
    echo.send_text(&text).unwrap();
    assert_eq!(echo.receive().unwrap(), Received::Text(text));
}

// Why: the attack of the issue: chat texts of 15 MiB of `[0,0,0,…]` cost
// each about 255 MiB while they were parsed (every two bytes became a
// 32-byte value). Four of them took +1,017 MiB. Now the chat refuses them
// at the header; and even with the chat limit raised to 16 MiB, the
// parser's value budget stops the tree at 10,000 values.
#[test]
fn fifteen_mib_chat_texts_cost_at_most_a_small_multiple_of_their_size() {
    let text = format!("[{}0]", "0,".repeat((15 * MIB - 3) / 2));
    for (args, bound_mib) in [
        (&[][..], 16),
        (&["--max-chat-bytes", "16777216"][..], 4 * 15 * 3),
    ] {
        let server = ChildServer::start(args);
        let before = server.memory_kib("VmHWM");
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let (addr, text) = (server.addr, text.clone());
                thread::spawn(move || {
                    let mut client = ws(addr, "/ws");
                    // The server may stop reading at the header.
                    let _ = client.send_text(&text);
                    match client.next_event() {
                        Ok(Event::Text(reply)) => reply,
                        Ok(Event::Close(frame)) => format!("close {:?}", close_code(&frame)),
                        other => format!("{other:?}"),
                    }
                })
            })
            .collect();
        let replies: Vec<String> = senders.into_iter().map(|s| s.join().unwrap()).collect();
        let grown_mib = (server.memory_kib("VmHWM") - before) / 1024;
        println!("{args:?}: peak +{grown_mib} MiB for 4 x 15 MiB; replies {replies:?}");
        for reply in &replies {
            let expected = if args.is_empty() {
                "close Some(1009)"
            } else {
                "more than 10000 values"
            };
            assert!(reply.contains(expected), "{args:?}: {reply}");
        }
        assert!(
            grown_mib <= bound_mib,
            "{args:?}: the server's peak grew by {grown_mib} MiB (bound {bound_mib})"
        );
    }
}

// ------------------------------------------------------------ the budget

fn budget_config() -> Config {
    Config {
        max_buffered_bytes: MIB,
        max_body: MIB,
        ..test_config()
    }
}

// Why: one counter bounds what all connections together may hold while it
// arrives. Past it a message closes with 1013 (try again later) and a body
// gets 503; nothing waits, and once memory is given back, all is well.
#[test]
fn the_budget_for_bytes_in_flight_refuses_at_once_and_recovers() {
    let server = start(budget_config());
    let size = 800 * 1024;
    let frame = masked(OpCode::Binary, &vec![7; size]);
    let mut holder = ws(server.addr, "/echo");
    holder.send_raw(&frame[..700 * 1024]).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || server.app.budget.used()
            >= 700 * 1024),
        "the partly received message is counted: {}",
        server.app.budget.used()
    );

    let mut late = ws(server.addr, "/echo");
    let _ = late.send_binary(&vec![1; 600 * 1024]);
    let frame_seen = read_close(&mut late);
    assert_eq!(close_code(&frame_seen), Some(1013));
    assert!(frame_seen.unwrap().reason.contains("--max-buffered-bytes"));

    let body = "x".repeat(400 * 1024);
    let mut post = connect(server.addr);
    let head = format!(
        "POST /trigger-event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    post.write_all(head.as_bytes()).unwrap();
    let response = common::read_response(&mut post);
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(response.text().contains("--max-buffered-bytes"));

    // The holder finishes; its memory goes back; new messages fit again.
    holder.send_raw(&frame[700 * 1024..]).unwrap();
    assert_eq!(holder.receive().unwrap(), Received::Binary(vec![7; size]));
    assert!(eventually(Duration::from_secs(5), || server
        .app
        .budget
        .used()
        == 0));
    let mut again = ws(server.addr, "/echo");
    again.send_binary(&vec![2; 600 * 1024]).unwrap();
    assert_eq!(
        again.receive().unwrap(),
        Received::Binary(vec![2; 600 * 1024])
    );
}

// ------------------------------------------------------------ the message deadline

// Why: any byte shows a peer is alive, so a sender trickling one byte a
// second was never cut off and held its buffer forever. A message that
// has started must now be complete within --message-timeout-secs.
#[test]
fn a_message_trickled_past_the_deadline_closes_with_1008() {
    let server = start(Config {
        message_timeout: Duration::from_secs(1),
        ..test_config()
    });
    for path in ["/echo", "/ws"] {
        let mut client = ws(server.addr, path);
        let frame = masked(OpCode::Text, b"a message that arrives far too slowly");
        let mut writer = client.stream().try_clone().unwrap();
        let started = Instant::now();
        let trickler = thread::spawn(move || {
            for byte in frame {
                if writer.write_all(&[byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        let close = read_close(&mut client);
        let took = started.elapsed();
        assert_eq!(close_code(&close), Some(1008), "{path}");
        assert!(close.unwrap().reason.contains("--message-timeout-secs"));
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{path}: closed after {took:?}"
        );
        trickler.join().unwrap();
    }
    // A quiet connection with no message under way is not affected, and a
    // message with pauses that ends in time is fine.
    let mut quiet = ws(server.addr, "/echo");
    thread::sleep(Duration::from_millis(1500));
    let frame = masked(OpCode::Text, b"in time");
    quiet.send_raw(&frame[..4]).unwrap();
    thread::sleep(Duration::from_millis(500));
    quiet.send_raw(&frame[4..]).unwrap();
    assert_eq!(quiet.receive().unwrap(), Received::Text("in time".into()));
}

/// Opens `count` echo connections that each start a message of `size`
/// bytes, send all of it but the last byte, then trickle nothing more.
/// Returns each connection's close code (within `wait`), and the server's
/// resident memory (MiB over `before`) at the peak and at the end.
fn tricklers(
    server: &ChildServer,
    count: usize,
    size: usize,
    wait: Duration,
) -> (Vec<Option<u16>>, usize, usize) {
    let before = server.memory_kib("VmRSS");
    let frame = masked(OpCode::Binary, &vec![9; size]);
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let (addr, frame) = (server.addr, frame.clone());
            thread::spawn(move || {
                let mut client = ws(addr, "/echo");
                client.set_read_timeout(Some(wait)).unwrap();
                // A refusal (1013) may come while this is still being sent.
                let _ = client.send_raw(&frame[..frame.len() - 1]);
                match client.next_event() {
                    Ok(Event::Close(frame)) => close_code(&frame),
                    _ => None,
                }
            })
        })
        .collect();
    let mut peak = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        peak = peak.max(server.memory_kib("VmRSS"));
        thread::sleep(Duration::from_millis(50));
    }
    let codes = handles.into_iter().map(|h| h.join().unwrap()).collect();
    thread::sleep(Duration::from_millis(200));
    let after = server.memory_kib("VmRSS");
    (
        codes,
        peak.saturating_sub(before) / 1024,
        after.saturating_sub(before) / 1024,
    )
}

// Why: 32 connections that started 16 MiB messages and trickled held
// +684 MiB for as long as they liked. The budget caps what they may hold
// together, and the deadline ends each one; their memory goes back.
#[test]
fn trickling_senders_are_refused_past_the_budget_and_cut_off_at_the_deadline() {
    let server = ChildServer::start(&[
        "--max-buffered-bytes",
        "41943040",
        "--message-timeout-secs",
        "2",
    ]);
    let (codes, peak, after) = tricklers(&server, 12, 8 * MIB, Duration::from_secs(10));
    println!(
        "12 x 8 MiB under a 40 MiB budget: closes {codes:?}, peak +{peak} MiB, then +{after} MiB"
    );
    let refused = codes.iter().filter(|c| **c == Some(1013)).count();
    let timed_out = codes.iter().filter(|c| **c == Some(1008)).count();
    assert_eq!(refused + timed_out, 12, "{codes:?}");
    assert!(
        (7..=8).contains(&refused),
        "{codes:?}: 40 MiB holds 4 or 5 of them"
    );
    // Unbudgeted, the twelve would hold 96 MiB. (What the process keeps
    // after they closed is printed, not asserted: it is the allocator's
    // choice whether freed memory goes back to the system.)
    assert!(peak <= 72, "peak +{peak} MiB");
    let _ = after;
}

/// The attack of the issue, measured: `cargo test --release --test limits
/// -- --ignored --nocapture tricklers_of_16`.
#[test]
#[ignore = "a 35-second measurement; run it by name"]
fn tricklers_of_16_mib_at_the_default_settings() {
    let server = ChildServer::start(&[]);
    let (codes, peak, after) = tricklers(&server, 32, 16 * MIB, Duration::from_secs(35));
    let closed = codes.iter().filter(|c| **c == Some(1008)).count();
    println!(
        "32 x 16 MiB trickled: {closed} closed with 1008 within 35 s; peak +{peak} MiB, then +{after} MiB"
    );
    assert_eq!(closed, 32);
}

// ------------------------------------------------------------ fair slots

/// Opens idle sockets at `per_second` for `duration` while an honest client
/// makes a request every `every`; returns (answered, asked).
fn honest_share_under_idle_flood(
    addr: SocketAddr,
    per_second: u32,
    duration: Duration,
    every: Duration,
) -> (usize, usize) {
    let flood = thread::spawn(move || {
        let mut idle = Vec::new();
        let started = Instant::now();
        let mut opened = 0;
        while started.elapsed() < duration {
            if let Ok(stream) = TcpStream::connect(addr) {
                idle.push(stream);
            }
            opened += 1;
            let next = Duration::from_secs(1) * opened / per_second;
            thread::sleep(next.saturating_sub(started.elapsed()));
        }
        idle.len()
    });
    let started = Instant::now();
    let (mut answered, mut asked) = (0, 0);
    while started.elapsed() < duration {
        asked += 1;
        let request = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if let Ok(mut stream) = TcpStream::connect(addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.write_all(request);
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            if answer.starts_with(b"HTTP/1.1 200") {
                answered += 1;
            }
        }
        thread::sleep(every);
    }
    flood.join().unwrap();
    (answered, asked)
}

// Why: idle sockets used to hold their slots for the whole head timeout:
// at 20 a second against a cap of 200, 1 request in 139 was answered.
// Now the longest-idle socket makes room for each newcomer.
#[test]
fn idle_sockets_arriving_faster_than_the_head_timeout_cannot_starve_the_cap() {
    let server = start(Config {
        max_connections: 20,
        ..test_config()
    });
    let (answered, asked) = honest_share_under_idle_flood(
        server.addr,
        20,
        Duration::from_secs(4),
        Duration::from_millis(50),
    );
    println!("cap 20, 20 idle sockets/s for 4 s: {answered} of {asked} requests answered");
    // Generous, as timed tests must be: the measurement below gives the figure.
    assert!(answered * 2 >= asked, "only {answered} of {asked} answered");
}

/// The target, measured: `cargo test --release --test limits -- --ignored
/// --nocapture fairness`. At 20 a second, idle sockets alone just fill 200
/// slots in the head timeout (10 s); at 40 they would overfill them twice.
#[test]
#[ignore = "a 40-second measurement; run it by name"]
fn fairness_at_200_connections_and_20_or_40_idle_sockets_a_second() {
    for rate in [20, 40] {
        let server = ChildServer::start(&["--max-connections", "200"]);
        let (answered, asked) = honest_share_under_idle_flood(
            server.addr,
            rate,
            Duration::from_secs(20),
            Duration::from_millis(100),
        );
        let share = 100.0 * answered as f64 / asked as f64;
        println!(
            "cap 200, {rate} idle sockets/s for 20 s: {answered} of {asked} answered ({share:.1} %)"
        );
        assert!(share >= 90.0, "{rate}/s: {share:.1} %");
    }
}

// ------------------------------------------------------------ the history

// Why: each event in the history was kept three times (JSON text, SSE
// block, WebSocket frame): 1,000 events of 64 KiB took about 190 MiB for
// 62 MiB of payload. The payload is now kept once.
#[test]
fn a_history_of_1000_events_of_64_kib_costs_little_more_than_its_payload() {
    let server = ChildServer::start(&["--history", "1000"]);
    let message = "m".repeat(65_000);
    let mut body = String::from("{\"message\":");
    json::write_string(&mut body, &message);
    body.push('}');
    let request = format!(
        "POST /trigger-event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = connect(server.addr);
    let post = |stream: &mut TcpStream| {
        stream.write_all(request.as_bytes()).unwrap();
        assert_eq!(common::read_response(stream).status, 200);
    };
    // Warm up: the allocator's arenas and the connection's buffers.
    for _ in 0..20 {
        post(&mut stream);
    }
    let before = server.memory_kib("VmRSS");
    for _ in 0..1000 {
        post(&mut stream);
    }
    let grown = (server.memory_kib("VmRSS") - before) * 1024;
    // Each event's data: the message and its JSON fields.
    let payload = 1000 * (message.len() + 80);
    let ratio = grown as f64 / payload as f64;
    println!(
        "history of 1000 x 64 KiB: +{} MiB resident for {} MiB of payload ({ratio:.2} x)",
        grown / MIB,
        payload / MIB
    );
    assert!(ratio <= 1.5, "{ratio:.2} x the payload");
}

// ------------------------------------------------------------ what a thread costs

/// How many memory maps and threads the child has now.
fn maps_and_threads(server: &ChildServer) -> (usize, usize) {
    let pid = server.child.id();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .count();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    (maps, threads)
}

/// Opens `count` event streams, each read until its opening has come (so
/// its thread has started and written).
fn open_streams(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("initial_data") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the stream ended in its opening");
                seen.extend_from_slice(&buf[..n]);
            }
            stream
        })
        .collect()
}

// Why: the connection cap counts a slot as one thread of five memory maps
// at most (`default_max_connections` in src/config.rs), and the stack size
// decides how much address space ten thousand idle streams reserve
// (lesson 18). Both are measured here, on the built server, between 50 and
// 150 open streams, so that what the first ones set up does not count.
// glibc's malloc arenas belong to the process, not to a thread, and are
// made as threads need them: one arena only, so that they blur nothing.
#[test]
fn a_stream_thread_takes_its_stack_and_at_most_five_maps() {
    let server = ChildServer::start_with_env(&[], &[("MALLOC_ARENA_MAX", "1")]);
    let mut streams = open_streams(server.addr, 50);
    let (maps, threads) = maps_and_threads(&server);
    let size = server.memory_kib("VmSize");
    const MORE: usize = 100;
    streams.extend(open_streams(server.addr, MORE));
    let (maps_now, threads_now) = maps_and_threads(&server);
    let size_now = server.memory_kib("VmSize");
    assert_eq!(threads_now - threads, MORE, "one thread per stream");
    let maps_per_thread = (maps_now - maps) as f64 / MORE as f64;
    let kib_per_thread = (size_now - size) / MORE;
    println!(
        "per stream thread: {maps_per_thread:.2} memory maps, {kib_per_thread} KiB of address space"
    );
    assert!(
        maps_per_thread <= 5.0,
        "{maps_per_thread:.2} maps per thread: the cap counts 5 (MAPS_PER_SLOT)"
    );
    assert!(
        kib_per_thread <= 512,
        "{kib_per_thread} KiB of address space per thread: ten thousand idle streams \
         would reserve {} GiB",
        (kib_per_thread * 10_000) >> 20
    );
    drop(streams);
}
