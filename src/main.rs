//! `cargo run`: reads the configuration and starts the server.

use std::io::Write;
use std::process::ExitCode;

use realtime_by_hand::config::{self, Config, ConfigError};
use realtime_by_hand::redis::RedisUrl;
use realtime_by_hand::server::Server;

fn main() -> ExitCode {
    let env_port = std::env::var("PORT").ok();
    let config = match Config::from_args(std::env::args().skip(1), env_port.as_deref()) {
        Ok(config) => config,
        Err(ConfigError::HelpRequested) => {
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("error: {error}\n{}", config::USAGE);
            return ExitCode::from(2);
        }
    };
    // A malformed broker URL is a bad flag (status 2); an unreachable
    // broker is a failure to start (status 1, below).
    if let Some(Err(error)) = config.broker.as_deref().map(RedisUrl::parse) {
        eprintln!("error: --broker: {error}\n{}", config::USAGE);
        return ExitCode::from(2);
    }
    let server = match Server::bind(config.clone()) {
        Ok(server) => server,
        // The error says what failed (the address, or the public
        // directory) and why: "cannot listen on 127.0.0.1:3000: Address
        // already in use (os error 98)".
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match server.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Like the Node original: say where to look. (Printed even with --quiet:
    // with --port 0 it is the only way to learn the port.) A closed stdout
    // (`| head -1`) must not stop the server, so write errors are ignored.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Server listening on http://{addr}/");
    let _ = writeln!(out, "  demo page:   http://{addr}/");
    let _ = writeln!(
        out,
        "  SSE stream:  http://{addr}/events   (try: curl -N http://{addr}/events)"
    );
    let _ = writeln!(
        out,
        "  WebSocket:   ws://{addr}/ws   (echo: ws://{addr}/echo)"
    );
    let _ = writeln!(out, "  trigger:     curl -X POST -H 'Content-Type: application/json' -d '{{\"message\":\"hello\"}}' http://{addr}/trigger-event");
    let _ = writeln!(
        out,
        "  limits:      {} connections at most, {} of messages and bodies in flight; --help lists every option",
        config.max_connections,
        size(config.max_buffered_bytes)
    );
    if let Some(broker) = &server.app().broker {
        let _ = writeln!(
            out,
            "  broker:      {} (keys {}:*): events are shared with every instance on it; this is instance {}",
            broker.url.address(),
            broker.url.prefix,
            broker.instance
        );
    }
    let _ = out.flush();
    drop(out);
    server.run();
    ExitCode::SUCCESS
}

/// A size as a person reads it: whole MiB when it is that large.
fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}
