//! Child processes, pinning, and what `/proc` says about a process.
//!
//! Why children: one process may open 20,000 files here, and 10,000
//! subscribers cost the server 10,000 sockets and the load 10,000 more, so
//! the two cannot share a process at that size; nor could memory per
//! connection be read from a process that also holds the load. So the
//! fan-outs and `hold` run the server in a child process (and the raw-TCP
//! fan-out's writer too, for the same reason), and `--pin`/`--child` run
//! every server side that way.
//!
//! The child is this same executable started again with a helper mode
//! (`bench __serve …`), not `target/release/realtime-by-hand`: `cargo run
//! --bin bench` builds only this binary, so the server binary could be
//! stale or missing, while the helper is always the code just built. Its
//! server flags are parsed by `Config::from_args`, as the server's are.
//!
//! A helper exits when its stdin closes, so no child outlives the bench,
//! and the bench also kills each one it started (by its handle) when done.
//! The outside programs of the `cluster` scenario (redis-server, nginx)
//! know nothing of that stdin, so each runs under a helper of its own, a
//! guard (`bench __guard PROGRAM ARGS…`, in `outside.rs`), which stops it
//! when its stdin closes: even a bench killed with SIGKILL leaves nothing
//! behind.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use realtime_by_hand::config::{self, Config, ConfigError};
use realtime_by_hand::server::Server;

use crate::tcp;

/// A child process started by the bench, with its stdout read line by
/// line on a thread so that every wait for it has a deadline.
pub struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub pid: u32,
    /// How long, once its stdin is closed, the helper may take to end by
    /// itself before it is killed: nothing for the bench's own helpers,
    /// which exit at once; a few seconds for a guard, which must first
    /// stop the program it guards.
    grace: Duration,
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
            pid: child.id(),
            stdin: child.stdin.take(),
            child,
            lines,
            grace: Duration::ZERO,
        })
    }

    /// The same helper, given `grace` to end by itself when dropped.
    pub fn with_grace(mut self, grace: Duration) -> Helper {
        self.grace = grace;
        self
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

    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the helper's stdin is closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot talk to the helper: {e}"))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a helper mode (`bench __MODE …`) and never returns to the bench.
pub fn run_helper(mode: &str, args: &[String]) -> ExitCode {
    let result = match mode {
        "serve" => serve(args),
        "tcp-echo" => tcp_echo(),
        "fanout-writer" => fanout_writer(args),
        "guard" => crate::outside::guard(args),
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

/// A line to the bench, which reads the helper's stdout.
pub fn say(line: &str) {
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

/// `__fanout-writer N`: accepts N connections, says `ready`, then for each
/// `go SEQ` line writes event SEQ to all of them in one loop, on this one
/// thread, and says `sent SEQ START LOOP`: when the loop started (the
/// wall clock, in ns, which both processes share) and how long it took (µs).
fn fanout_writer(args: &[String]) -> Result<(), String> {
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or("usage: __fanout-writer N")?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    say(&format!(
        "listening {}",
        listener.local_addr().map_err(|e| e.to_string())?
    ));
    let (sender, commands) = channel::<String>();
    thread::spawn(move || {
        for line in io::stdin().lock().lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
        std::process::exit(0);
    });
    let mut sockets: Vec<TcpStream> = Vec::with_capacity(n);
    while sockets.len() < n {
        let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        // A comment line, as an SSE stream opens with its head: the client
        // waits for it, so connections are not made faster than they are
        // accepted (a full accept queue drops the SYN, and the client
        // then waits a second to try again).
        (&stream).write_all(RAW_HELLO).map_err(|e| e.to_string())?;
        sockets.push(stream);
    }
    say(&format!("ready {n}"));
    for command in commands.iter() {
        let Some(seq) = command
            .strip_prefix("go ")
            .and_then(|s| s.trim().parse().ok())
        else {
            continue;
        };
        let event = tcp::fanout_event(seq);
        let (started, wall) = (Instant::now(), wall_nanos());
        for mut socket in &sockets {
            let _ = socket.write_all(&event);
        }
        say(&format!(
            "sent {seq} {wall} {}",
            started.elapsed().as_micros()
        ));
    }
    Ok(())
}

/// The wall clock (`CLOCK_REALTIME`) in ns since 1970: the one clock that
/// `std` lets two processes compare.
pub fn wall_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// What the raw fan-out writer sends first on each connection.
pub const RAW_HELLO: &[u8] = b": hello\n\n";

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

/// What `/proc/PID/status` and `/proc/PID/fd` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStatus {
    pub rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
}

pub fn status(pid: u32) -> Option<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(ProcStatus {
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
        fds,
    })
}

/// Waits until the process's thread and file counts have stood still for
/// 1.2 s, longer than the server takes to notice a stream's client has
/// gone (a second): every connection's thread has started, or ended. At
/// most `limit`; returns its status then.
pub fn settled(pid: u32, limit: Duration) -> Option<ProcStatus> {
    let deadline = Instant::now() + limit;
    let mut last = status(pid)?;
    let mut still_since = Instant::now();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        let now = status(pid)?;
        if (now.threads, now.fds) != (last.threads, last.fds) {
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_millis(1200) {
            return Some(now);
        }
        last = now;
    }
    status(pid)
}

/// The process listening on this TCP port, for `--url`: the socket's
/// inode from `/proc/net/tcp`, then the process holding it.
pub fn listener_pid(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|file| {
            let text = std::fs::read_to_string(file).ok()?;
            text.lines().skip(1).find_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let local_port = cols.get(1)?.rsplit(':').next()?;
                let listening = cols.get(3)? == &"0A";
                (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                    .then(|| cols.get(9).map(|s| s.to_string()))?
            })
        })?;
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == Path::new(&wanted)))
                .then_some(pid)
        })
}

/// CPU time this process has used, user and system, in microseconds
/// (`/proc/self/stat`, in clock ticks of 10 ms).
pub fn cpu_micros() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10_000
}

/// Counters of the whole machine's network stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Packets the input queues dropped (`/proc/net/softnet_stat`, second
    /// column): on loopback, a burst of writes larger than
    /// `net.core.netdev_max_backlog` waiting for the softirq.
    pub dropped: u64,
    /// TCP segments sent again (`RetransSegs` in `/proc/net/snmp`): each
    /// one a wait of 200 ms or more for someone.
    pub retransmitted: u64,
}

impl NetCounters {
    pub fn since(self, earlier: NetCounters) -> NetCounters {
        NetCounters {
            dropped: self.dropped.saturating_sub(earlier.dropped),
            retransmitted: self.retransmitted.saturating_sub(earlier.retransmitted),
        }
    }
}

pub fn net_counters() -> NetCounters {
    let dropped = std::fs::read_to_string("/proc/net/softnet_stat").map_or(0, |text| {
        text.lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
            .sum()
    });
    let retransmitted = std::fs::read_to_string("/proc/net/snmp")
        .ok()
        .and_then(|text| {
            let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
            let (names, values) = (tcp.next()?, tcp.next()?);
            let at = names.split_whitespace().position(|n| n == "RetransSegs")?;
            values.split_whitespace().nth(at)?.parse().ok()
        });
    NetCounters {
        dropped,
        retransmitted: retransmitted.unwrap_or(0),
    }
}
