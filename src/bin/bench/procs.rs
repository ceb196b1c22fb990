//! Child processes, pinning, and what `/proc` says about a process.
//!
//! Why children: `--pin` runs every server side (the server, the raw TCP
//! echo) in a process of its own on its own core, and `--child` does so
//! without pinning.
//!
//! The child is this same executable started again with a helper mode
//! (`bench __serve …`), not `target/release/realtime-by-hand`: `cargo run
//! --bin bench` builds only this binary, so the server binary could be
//! stale or missing, while the helper is always the code just built. Its
//! server flags are parsed by `Config::from_args`, as the server's are.
//!
//! A helper exits when its stdin closes, so no child outlives the bench,
//! and the bench also kills each one it started (by its handle) when done.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use realtime_by_hand::config::{self, Config, ConfigError};
use realtime_by_hand::server::Server;

use crate::tcp;

/// A child process started by the bench, with its stdout read line by
/// line on a thread so that every wait for it has a deadline.
pub struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Helper {
    /// Starts `bench ARGS…`, under `taskset -c CORE` when a core is given.
    pub fn spawn(args: &[String], core: Option<usize>) -> Result<Helper, String> {
        let exe = std::env::current_exe().map_err(|e| format!("where is this program? {e}"))?;
        let mut command = match core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start a helper ({}): {e}", args.join(" ")))?;
        let stdout = child.stdout.take().ok_or("the helper has no stdout")?;
        let (sender, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Helper {
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    /// Waits for a line that starts with `prefix`; returns the rest of it.
    pub fn expect(&self, prefix: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_string());
                    }
                }
                Err(_) => return Err(format!("the helper did not say '{prefix}' in time")),
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a helper mode (`bench __MODE …`) and never returns to the bench.
pub fn run_helper(mode: &str, args: &[String]) -> ExitCode {
    let result = match mode {
        "serve" => serve(args),
        "tcp-echo" => tcp_echo(),
        other => Err(format!("unknown helper mode '{other}'")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench helper {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ends this process when its stdin closes (the bench is gone or done).
fn exit_when_stdin_closes() {
    thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `__serve FLAGS…`: the server, configured by the server's own parser.
fn serve(args: &[String]) -> Result<(), String> {
    let config = match Config::from_args(args.iter().cloned(), None) {
        Ok(config) => config,
        Err(ConfigError::HelpRequested) => return Err(config::help()),
        Err(e) => return Err(e.to_string()),
    };
    let server = Server::bind(config).map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    say(&format!("listening {addr}"));
    exit_when_stdin_closes();
    server.run();
    Ok(())
}

/// `__tcp-echo`: the raw TCP echo, for `--pin` and `--child`.
fn tcp_echo() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    say(&format!(
        "listening {}",
        listener.local_addr().map_err(|e| e.to_string())?
    ));
    exit_when_stdin_closes();
    tcp::serve_echo(listener);
    Ok(())
}

/// Pins every thread of this process to `core` (`taskset -a -p`); the
/// threads started later inherit it.
pub fn pin_self(core: usize) -> Result<(), String> {
    let output = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .output()
        .map_err(|e| format!("cannot run taskset (util-linux): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// The cores this process may run on.
pub fn cores() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}
