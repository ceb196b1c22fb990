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
use realtime_by_hand::client::sse::{Backoff, ReconnectingClient, SseEvent};

const USAGE: &str =
    "usage: sse-client [URL] [--max-attempts N] [--base-delay-secs S] [--no-jitter] [--count N]
  URL                   the event stream [http://127.0.0.1:3000/events]
  --max-attempts N      failed reconnections in a row before giving up [5]
  --base-delay-secs S   first reconnection delay, doubled on each failure [1]
                        (a 'retry:' from the server replaces it)
  --no-jitter           wait exactly the computed delay (no random spread)
  --count N             exit after N events (for scripts and tests)";

/// The flags that take a value.
const VALUE_FLAGS: [&str; 3] = ["--max-attempts", "--base-delay-secs", "--count"];

/// What the command line asks for.
struct Options {
    url: String,
    backoff: Backoff,
    /// Exit after this many events.
    count: Option<u64>,
}

/// What the command line amounts to: options to run with, or an exit now.
enum Parsed {
    Run(Options),
    Exit(ExitCode),
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Parsed::Run(options) => options,
        Parsed::Exit(code) => return code,
    };
    let mut client = match ReconnectingClient::new(&options.url, options.backoff) {
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
                println!("{}", describe_event(&event, &previous_id));
                previous_id = event.last_event_id;
                received += 1;
                if options.count == Some(received) {
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

/// One line for an event: its id where it changes (which is where the
/// server sent one: an id carries over to the events after it), its type
/// when it is not the default, then the message.
fn describe_event(event: &SseEvent, previous_id: &str) -> String {
    let id = if event.last_event_id == previous_id {
        String::new()
    } else {
        format!("#{} ", event.last_event_id)
    };
    let name = if event.event_type == "message" {
        String::new()
    } else {
        format!("<{}> ", event.event_type)
    };
    format!("{id}{name}{}", describe_message(&event.data))
}

/// Reads the flags; a bad one exits with 2 and the usage.
fn parse_args(mut args: impl Iterator<Item = String>) -> Parsed {
    let mut options = Options {
        url: "http://127.0.0.1:3000/events".to_string(),
        backoff: Backoff::default(),
        count: None,
    };
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return Parsed::Exit(ExitCode::SUCCESS);
            }
            "--no-jitter" => {
                options.backoff.jitter = false;
                Ok(())
            }
            other if !other.starts_with('-') => {
                options.url = other.to_string();
                Ok(())
            }
            flag => match args.next() {
                Some(value) => apply(&mut options, flag, &value),
                None if VALUE_FLAGS.contains(&flag) => {
                    Err(format!("option '{flag}' needs a value"))
                }
                None => Err(format!("unknown option '{flag}'")),
            },
        };
        if let Err(message) = parsed {
            eprintln!("error: {message}\n{USAGE}");
            return Parsed::Exit(ExitCode::from(2));
        }
    }
    Parsed::Run(options)
}

/// Sets what one flag with a value says.
fn apply(options: &mut Options, flag: &str, value: &str) -> Result<(), String> {
    let invalid = || format!("invalid {flag} {value:?}");
    match flag {
        "--max-attempts" => options.backoff.max_attempts = value.parse().map_err(|_| invalid())?,
        "--base-delay-secs" => match value.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => options.backoff.base = Duration::from_secs_f64(s),
            _ => return Err(invalid()),
        },
        "--count" => options.count = Some(value.parse().map_err(|_| invalid())?),
        other => return Err(format!("unknown option '{other}'")),
    }
    Ok(())
}
