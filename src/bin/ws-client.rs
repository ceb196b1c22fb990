//! `ws-client [URL] [--username NAME]`: a WebSocket chat client for the
//! terminal. Each line typed is sent as a chat message; everything that
//! arrives is printed; end of input (Ctrl-D) closes cleanly with 1000.
//!
//! `--misbehave KIND` sends one deliberately broken frame instead and
//! prints how the server answered: the "break it yourself" exercises.
//!
//!     cargo run --bin ws-client -- ws://127.0.0.1:3000/ws --username ann

use std::io::BufRead;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use realtime_by_hand::client::describe_message;
use realtime_by_hand::client::ws::{Received, WsClient};
use realtime_by_hand::inspect::to_hex;
use realtime_by_hand::json;
use realtime_by_hand::websocket::frame::{self, OpCode};
use realtime_by_hand::websocket::message::{CloseCode, Event};

const USAGE: &str = "usage: ws-client [URL] [--username NAME] [--origin ORIGIN] [--misbehave KIND]
  URL                the chat endpoint [ws://127.0.0.1:3000/ws]
  --username NAME    the name your messages carry [anonymous]
  --origin ORIGIN    send this Origin header, as a browser would
  --misbehave KIND   send one broken frame and print the server's answer; KIND is one of
                     unmasked, reserved-bit, bad-opcode, big-control, fragmented-control,
                     invalid-utf8, bad-close-code, length-top-bit, continuation, too-big";

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
    let mut misbehave: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let needs_value = matches!(arg.as_str(), "--username" | "--origin" | "--misbehave");
        let value = if needs_value { args.next() } else { None };
        match (arg.as_str(), value) {
            ("--username", Some(v)) => username = v,
            ("--origin", Some(v)) => origin = Some(v),
            ("--misbehave", Some(v)) if broken_frame(&v).is_some() => misbehave = Some(v),
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
    match misbehave {
        Some(kind) => misbehave_once(&mut client, &kind),
        None => chat(client, &username),
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
