//! `sse-client [URL]`: the article's Node SSE client, in Rust.
//!
//! Connects to an event stream, prints each event by type, and when the
//! stream drops, reconnects with exponential back-off (1 s, 2 s, 4 s, …,
//! with jitter, honouring the server's `retry:`), resuming with
//! `Last-Event-ID` so no event is lost.
//!
//!     cargo run --bin sse-client -- http://127.0.0.1:3000/events

use std::process::ExitCode;
use std::time::Duration;

use realtime_by_hand::client::describe_message;
use realtime_by_hand::client::sse::{Backoff, ReconnectingClient};

const USAGE: &str =
    "usage: sse-client [URL] [--max-attempts N] [--base-delay-secs S] [--no-jitter] [--count N]
  URL                   the event stream [http://127.0.0.1:3000/events]
  --max-attempts N      failed reconnections in a row before giving up [5]
  --base-delay-secs S   first reconnection delay, doubled on each failure [1]
                        (a 'retry:' from the server replaces it)
  --no-jitter           wait exactly the computed delay (no random spread)
  --count N             exit after N events (for scripts and tests)";

fn main() -> ExitCode {
    let mut url = "http://127.0.0.1:3000/events".to_string();
    let mut backoff = Backoff::default();
    let mut count: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("option '{name}' needs a value"))
        };
        let parsed: Result<(), String> = match arg.as_str() {
            "--max-attempts" => value(&arg).and_then(|v| {
                v.parse()
                    .map(|n| backoff.max_attempts = n)
                    .map_err(|_| format!("invalid --max-attempts {v:?}"))
            }),
            "--base-delay-secs" => value(&arg).and_then(|v| match v.parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => {
                    backoff.base = Duration::from_secs_f64(s);
                    Ok(())
                }
                _ => Err(format!("invalid --base-delay-secs {v:?}")),
            }),
            "--count" => value(&arg).and_then(|v| {
                v.parse()
                    .map(|n| count = Some(n))
                    .map_err(|_| format!("invalid --count {v:?}"))
            }),
            "--no-jitter" => {
                backoff.jitter = false;
                Ok(())
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other if !other.starts_with('-') => {
                url = other.to_string();
                Ok(())
            }
            other => Err(format!("unknown option '{other}'")),
        };
        if let Err(message) = parsed {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    }

    let mut client = match ReconnectingClient::new(&url, backoff) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    client.on_notice = Box::new(|notice| eprintln!("sse-client: {notice}"));
    let mut received = 0u64;
    let mut previous_id = String::new();
    loop {
        match client.next_event() {
            Ok(event) => {
                // An id carries over to the events after it; show it only
                // where it changes, which is where the server sent one.
                let id = if event.last_event_id == previous_id {
                    String::new()
                } else {
                    format!("#{} ", event.last_event_id)
                };
                previous_id = event.last_event_id.clone();
                let name = if event.event_type == "message" {
                    String::new()
                } else {
                    format!("<{}> ", event.event_type)
                };
                println!("{id}{name}{}", describe_message(&event.data));
                received += 1;
                if count == Some(received) {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => {
                eprintln!("sse-client: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
