//! `ws-client [URL] [--username NAME]`: a WebSocket chat client for the
//! terminal. Each line typed is sent as a chat message; everything that
//! arrives is printed; end of input (Ctrl-D) closes cleanly with 1000.
//!
//! `--misbehave KIND` sends one deliberately broken frame instead and
//! prints how the server answered: the "break it yourself" exercises.
//!
//! `--echo` sends every message back unchanged until the server closes:
//! the client under test when Autobahn's fuzzing server tests clients
//! (`tests/autobahn/run.sh`). `--print-first` prints the first message and
//! closes: how that script reads the number of cases the server announces.
//!
//!     cargo run --bin ws-client -- ws://127.0.0.1:3000/ws --username ann
//!     cargo run --bin ws-client -- --echo ws://127.0.0.1:9001/runCase?case=1&agent=me

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use realtime_by_hand::client::describe_message;
use realtime_by_hand::client::ws::{Received, WsClient};
use realtime_by_hand::inspect::to_hex;
use realtime_by_hand::json;
use realtime_by_hand::websocket::frame::{self, OpCode};
use realtime_by_hand::websocket::message::{CloseCode, Event};
use realtime_by_hand::websocket::protocol::Message;

const USAGE: &str = "usage: ws-client [URL] [--username NAME] [--origin ORIGIN]
                 [--misbehave KIND | --echo | --print-first]
  URL                the endpoint [ws://127.0.0.1:3000/ws, the chat]
  --username NAME    the name your messages carry [anonymous]
  --origin ORIGIN    send this Origin header, as a browser would
  --misbehave KIND   send one broken frame and print the server's answer; KIND is one of
                     unmasked, reserved-bit, bad-opcode, big-control, fragmented-control,
                     invalid-utf8, bad-close-code, length-top-bit, continuation, too-big
  --echo             send every message back unchanged (text as text, binary as binary)
                     until the server closes; answer its close; print a summary on
                     stderr; exit 0 only after a clean close
  --print-first      print the first message on stdout (text as it is, binary in hex),
                     then close with 1000; exit 1 if the server closes before sending one";

/// What the program does once connected.
enum Mode {
    Chat,
    Misbehave(String),
    Echo,
    PrintFirst,
}

/// The broken frames of `--misbehave`, each breaking one rule of RFC 6455.
const MISBEHAVIOURS: [(&str, &str); 10] = [
    ("unmasked", "a client frame without a mask (§5.1)"),
    (
        "reserved-bit",
        "RSV1 set with no extension negotiated (§5.2)",
    ),
    ("bad-opcode", "the reserved opcode 0x3 (§5.2)"),
    (
        "big-control",
        "a ping with 126 bytes: control frames carry at most 125 (§5.5)",
    ),
    ("fragmented-control", "a ping without FIN (§5.5)"),
    (
        "invalid-utf8",
        "a text frame with the bytes C3 28, not UTF-8 (§8.1)",
    ),
    (
        "bad-close-code",
        "a close frame with code 1005, which may never be sent (§7.4.1)",
    ),
    (
        "length-top-bit",
        "a 64-bit length with its top bit set (§5.2)",
    ),
    (
        "continuation",
        "a continuation frame with no message to continue (§5.4)",
    ),
    (
        "too-big",
        "a header announcing 2^62 bytes, far over the server's limit (§10.4)",
    ),
];

/// The bytes of one broken frame.
fn broken_frame(kind: &str) -> Option<Vec<u8>> {
    let mask = realtime_by_hand::random::random_mask();
    let masked =
        |fin, opcode, payload: &[u8]| frame::encode_masked_frame(fin, opcode, payload, mask);
    Some(match kind {
        "unmasked" => frame::encode_frame(OpCode::Text, b"hello"),
        "reserved-bit" => {
            let mut bytes = masked(true, OpCode::Text, b"hello");
            bytes[0] |= 0x40;
            bytes
        }
        "bad-opcode" => {
            // OpCode has no reserved values: set the four bits by hand.
            let mut bytes = masked(true, OpCode::Text, b"hello");
            bytes[0] = (bytes[0] & 0xF0) | 0x3;
            bytes
        }
        "big-control" => masked(true, OpCode::Ping, &[b'x'; 126]),
        "fragmented-control" => masked(false, OpCode::Ping, b"hello"),
        "invalid-utf8" => masked(true, OpCode::Text, &[0xC3, 0x28]),
        "bad-close-code" => masked(true, OpCode::Close, &1005u16.to_be_bytes()),
        "length-top-bit" => {
            let mut bytes = vec![0x80 | OpCode::Binary as u8, 0x80 | 127];
            bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
            bytes.extend_from_slice(&mask);
            bytes
        }
        "continuation" => masked(true, OpCode::Continuation, b"hello"),
        "too-big" => {
            let mut bytes = Vec::new();
            frame::encode_header(&mut bytes, true, OpCode::Binary, Some(mask), 1 << 62);
            bytes
        }
        _ => return None,
    })
}

fn main() -> ExitCode {
    let mut url = "ws://127.0.0.1:3000/ws".to_string();
    let mut username = "anonymous".to_string();
    let mut origin: Option<String> = None;
    let mut mode = Mode::Chat;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let needs_value = matches!(arg.as_str(), "--username" | "--origin" | "--misbehave");
        let value = if needs_value { args.next() } else { None };
        let chosen = match (arg.as_str(), &value) {
            ("--misbehave", Some(v)) if broken_frame(v).is_some() => {
                Some(Mode::Misbehave(v.clone()))
            }
            ("--echo", None) => Some(Mode::Echo),
            ("--print-first", None) => Some(Mode::PrintFirst),
            _ => None,
        };
        if let Some(chosen) = chosen {
            if !matches!(mode, Mode::Chat) {
                eprintln!("error: choose one of --misbehave, --echo and --print-first\n{USAGE}");
                return ExitCode::from(2);
            }
            mode = chosen;
            continue;
        }
        match (arg.as_str(), value) {
            ("--username", Some(v)) => username = v,
            ("--origin", Some(v)) => origin = Some(v),
            ("--misbehave", Some(v)) => {
                eprintln!("error: unknown --misbehave kind {v:?}\n{USAGE}");
                return ExitCode::from(2);
            }
            ("--help" | "-h", _) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            (other, None) if !needs_value && !other.starts_with('-') => url = other.to_string(),
            (other, _) => {
                eprintln!("error: bad option '{other}'\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }

    let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("Origin", o.as_str())).collect();
    let mut client = match WsClient::connect_with(&url, &headers) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("ws-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("ws-client: connected to {url}");
    match mode {
        Mode::Chat => chat(client, &username),
        Mode::Misbehave(kind) => misbehave_once(&mut client, &kind),
        Mode::Echo => echo(client),
        Mode::PrintFirst => print_first(client),
    }
}

/// Sends every message back as it came, until the server closes. This is
/// the client Autobahn's fuzzing server tests: each case sends something
/// (fragmented, interleaved with pings, invalid on purpose) and checks what
/// comes back. Everything protocol-related (reassembly, UTF-8, answering
/// pings and the close) happens in the library's protocol core; this loop only
/// turns messages around, moving each back without a copy.
fn echo(mut client: WsClient) -> ExitCode {
    let (mut texts, mut binaries) = (0usize, 0usize);
    let echoed = |texts: usize, binaries: usize| {
        let total = texts + binaries;
        let plural = if total == 1 { "" } else { "s" };
        format!("echoed {total} message{plural} ({texts} text, {binaries} binary)")
    };
    loop {
        let sent = match client.receive() {
            Ok(Received::Text(text)) => {
                texts += 1;
                client.send(Message::Text(text))
            }
            Ok(Received::Binary(data)) => {
                binaries += 1;
                client.send(Message::Binary(data))
            }
            Ok(Received::Closed(frame)) => {
                // The protocol core has answered the close already.
                let how = match frame {
                    Some(f) => format!("the server closed with {} {:?}", f.code, f.reason),
                    None => "the server closed without a code".to_string(),
                };
                let ended = wait_for_end(client, Duration::from_secs(2));
                let ended = if ended {
                    ""
                } else {
                    " (it kept the TCP connection open)"
                };
                eprintln!(
                    "ws-client: {}; {how}; close answered{ended}",
                    echoed(texts, binaries)
                );
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("ws-client: {}; then {e}", echoed(texts, binaries));
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = sent {
            eprintln!(
                "ws-client: {}; then could not send: {e}",
                echoed(texts, binaries)
            );
            return ExitCode::FAILURE;
        }
    }
}

/// RFC 6455 §7.1.1: once the close handshake is over, the server should
/// close TCP first, and the client should wait for that instead of cutting
/// the connection itself. Waits at most `limit` for the end of the stream;
/// returns whether it came. (A blocked read cannot be abandoned, so the
/// read happens on a thread the program leaves behind if it times out.)
fn wait_for_end(mut client: WsClient, limit: Duration) -> bool {
    let (done, ended) = mpsc::channel();
    thread::spawn(move || {
        let _ = client.receive();
        let _ = done.send(());
    });
    ended.recv_timeout(limit).is_ok()
}

/// Prints the first message and closes with 1000. `tests/autobahn/run.sh`
/// uses it to ask the fuzzing server how many cases it has
/// (`/getCaseCount` sends the number as one text message and closes). A
/// flag here, rather than a count worked out from the spec, means the
/// number comes from the server that will run the cases, and the only
/// WebSocket client in the run is this one.
fn print_first(mut client: WsClient) -> ExitCode {
    let first = match client.receive() {
        Ok(Received::Text(text)) => text,
        Ok(Received::Binary(data)) => to_hex(&data),
        Ok(Received::Closed(_)) => {
            eprintln!("ws-client: the server closed before sending a message");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("ws-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{first}");
    // The server may have closed right after its message (the fuzzing
    // server does); `close` then finds that close frame waiting.
    match client.close(CloseCode::Normal, "", Duration::from_secs(5)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws-client: the message came, but the close did not: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends each line of standard input as a chat message; prints what arrives.
fn chat(mut client: WsClient, username: &str) -> ExitCode {
    let sender = client.sender();
    let username = username.to_string();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let message = json::object([
                ("type", "chat".into()),
                ("message", line.into()),
                ("username", username.as_str().into()),
            ]);
            if let Err(e) = sender.send_text(&message.to_string()) {
                eprintln!("ws-client: could not send: {e}");
                return;
            }
        }
        // End of input: start the close handshake; the receiving loop
        // prints the server's answer and ends.
        eprintln!("ws-client: end of input, closing with 1000");
        let _ = sender.send_close(Some(CloseCode::Normal), "end of input");
    });
    loop {
        match client.receive() {
            Ok(Received::Text(text)) => println!("{}", describe_message(&text)),
            Ok(Received::Binary(data)) => println!("[binary] {} bytes", data.len()),
            Ok(Received::Closed(frame)) => {
                match frame {
                    Some(f) => eprintln!("ws-client: closed with {} {:?}", f.code, f.reason),
                    None => eprintln!("ws-client: closed (no code)"),
                }
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("ws-client: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Sends one broken frame and reports what the server did about it.
fn misbehave_once(client: &mut WsClient, kind: &str) -> ExitCode {
    let what = MISBEHAVIOURS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("", |(_, w)| *w);
    let bytes = broken_frame(kind).expect("checked when parsing arguments");
    // The chat greets first; read that so the answer below is the server's
    // reaction to our frame. (The echo endpoint says nothing: wait briefly.)
    let _ = client.set_read_timeout(Some(Duration::from_secs(1)));
    if let Ok(Event::Text(welcome)) = client.next_event() {
        println!("server said: {}", describe_message(&welcome));
    }
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    println!("sending {kind}: {what}");
    println!("  bytes: {}", to_hex(&bytes));
    if let Err(e) = client.send_raw(&bytes) {
        println!("could not send: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        match client.next_event() {
            Ok(Event::Close(frame)) => {
                match &frame {
                    Some(frame) => {
                        println!("server answered: close {} {:?}", frame.code, frame.reason)
                    }
                    None => println!("server answered: close without a code"),
                }
                // The protocol core has echoed the code back, finishing
                // the close handshake politely.
                return ExitCode::SUCCESS;
            }
            Ok(other) => println!("server sent: {other:?}"),
            Err(e) => {
                println!("server answered: no close frame ({e})");
                return ExitCode::SUCCESS;
            }
        }
    }
}
