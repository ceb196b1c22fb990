//! The programs the `cluster` scenario borrows: redis-server and nginx.
//! Where to find them, how to start each on a free loopback port in a
//! temporary directory, and how to be sure each one stops.
//!
//! Each runs under a guard: this executable again, as `bench __guard
//! PROGRAM ARGS…`, a helper like the others (`procs.rs`). The guard starts
//! the program, says `started PID`, and when its stdin closes (the bench
//! is done, failed, or was killed) it stops the program by its pid:
//! SIGTERM, on which redis-server and nginx shut down cleanly (nginx's
//! master stopping its worker), then SIGKILL if that took too long. `std`
//! can send only SIGKILL (`Child::kill`), so SIGTERM goes through the
//! `kill` command. SIGKILL alone would do for redis-server, but not for
//! nginx: its worker would outlive a master killed that way.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use realtime_by_hand::random::random_u64;

use crate::procs::{say, Helper};

/// How long a program may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long a program may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at a free port: another process may take the one we picked
/// between our look and the program's bind.
const PORT_TRIES: usize = 5;

/// Where the nginx configuration comes from, read when the scenario runs
/// (not compiled in: it is the cluster tests' file, and may change).
const NGINX_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/nginx.conf");

/// The two programs, found.
pub struct Programs {
    pub redis: PathBuf,
    pub nginx: PathBuf,
}

impl Programs {
    /// `$REDIS_SERVER` or `redis-server` on the PATH; `$NGINX`, or `nginx`
    /// on the PATH, or `/usr/sbin/nginx` (Debian puts it there, outside
    /// an ordinary user's PATH). Err says which are missing.
    pub fn find() -> Result<Programs, String> {
        let redis = find_program("REDIS_SERVER", "redis-server", &[]);
        let nginx = find_program("NGINX", "nginx", &["/usr/sbin/nginx"]);
        match (redis, nginx) {
            (Some(redis), Some(nginx)) => Ok(Programs { redis, nginx }),
            (redis, nginx) => {
                let mut missing = Vec::new();
                if redis.is_none() {
                    missing.push("no redis-server (on PATH, or $REDIS_SERVER)");
                }
                if nginx.is_none() {
                    missing.push("no nginx (on PATH, /usr/sbin/nginx, or $NGINX)");
                }
                Err(missing.join(", "))
            }
        }
    }
}

/// The program a variable names (a path, or a name to look up on the
/// PATH), else `name` on the PATH, else the first of `also` that exists.
fn find_program(variable: &str, name: &str, also: &[&str]) -> Option<PathBuf> {
    let on_path = |name: &Path| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    if let Some(value) = std::env::var_os(variable) {
        let given = PathBuf::from(value);
        return if given.components().count() > 1 {
            given.is_file().then_some(given)
        } else {
            on_path(&given)
        };
    }
    on_path(Path::new(name)).or_else(|| also.iter().map(PathBuf::from).find(|p| p.is_file()))
}

/// A directory of this run's own, removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> Result<TempDir, String> {
        let name = format!(
            "rbh-bench-{label}-{}-{:08x}",
            std::process::id(),
            random_u64() as u32
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir { path })
    }

    /// A file in it, as a string for a command line.
    pub fn file(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A loopback port nothing listens on at this moment.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Starts `program ARGS…` under a guard; waits for it to say `started`.
fn guarded(program: &Path, args: &[String], core: Option<usize>) -> Result<Helper, String> {
    let mut line = vec!["__guard".to_string(), program.display().to_string()];
    line.extend(args.iter().cloned());
    // The guard may need STOP_GRACE to stop its program, and a moment more.
    let guard = Helper::spawn(&line, core)?.with_grace(STOP_GRACE + Duration::from_secs(1));
    guard.expect("started ", START_TIMEOUT)?;
    Ok(guard)
}

/// Waits until `ready()` says yes, or the guarded program exits (then
/// `why()` says what went wrong), at most START_TIMEOUT.
fn wait_ready(
    guard: &Helper,
    mut ready: impl FnMut() -> bool,
    why: impl Fn() -> String,
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        // The wait between two looks is the wait for an `exited` line.
        if let Ok(status) = guard.expect("exited ", Duration::from_millis(20)) {
            return Err(format!("it exited ({status}): {}", why()));
        }
    }
    Err(format!("not ready within {START_TIMEOUT:?}: {}", why()))
}

/// The last lines of a log file, for an error message.
fn tail(path: &str) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// A redis-server of the bench's own: loopback only, nothing saved.
pub struct Redis {
    pub port: u16,
    _guard: Helper,
}

impl Redis {
    /// `redis://127.0.0.1:PORT/PREFIX`, as `--broker` takes it.
    pub fn url(&self, prefix: &str) -> String {
        format!("redis://127.0.0.1:{}/{prefix}", self.port)
    }
}

pub fn start_redis(program: &Path, dir: &TempDir, core: Option<usize>) -> Result<Redis, String> {
    let mut last_error = String::new();
    for _ in 0..PORT_TRIES {
        let port = free_port()?;
        let log = dir.file(&format!("redis-{port}.log"));
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            &dir.path.display().to_string(),
            "--logfile",
            &log,
        ]
        .map(String::from);
        let guard = guarded(program, &args, core)?;
        match wait_ready(&guard, || answers_ping(port), || tail(&log)) {
            Ok(()) => {
                return Ok(Redis {
                    port,
                    _guard: guard,
                })
            }
            Err(e) => last_error = e,
        }
    }
    Err(format!("redis-server did not start: {last_error}"))
}

/// Whether a Redis on this port answers `PING` (in RESP, an array of one
/// bulk string) with `+PONG`.
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// nginx in front of three instances.
pub struct Nginx {
    pub addr: SocketAddr,
    _guard: Helper,
}

/// Starts nginx with the cluster's template, its `@` words filled in:
/// `@DIR@`, `@LISTEN@`, and `@PORT_A@` to `@PORT_C@`, the instances'.
/// `files`: how many connections it must hold at once (two per proxied
/// stream), for its open-file limit.
pub fn start_nginx(
    program: &Path,
    dir: &TempDir,
    ports: [u16; 3],
    files: usize,
    core: Option<usize>,
) -> Result<Nginx, String> {
    let template = fs::read_to_string(NGINX_TEMPLATE)
        .map_err(|e| format!("the nginx template {NGINX_TEMPLATE}: {e}"))?;
    let globals = nginx_globals(&template, files)?;
    let (config, log) = (dir.file("nginx.conf"), dir.file("error.log"));
    let mut last_error = String::new();
    for _ in 0..PORT_TRIES {
        let listen = free_port()?;
        let text = template
            .replace("@DIR@", &dir.path.display().to_string())
            .replace("@LISTEN@", &listen.to_string())
            .replace("@PORT_A@", &ports[0].to_string())
            .replace("@PORT_B@", &ports[1].to_string())
            .replace("@PORT_C@", &ports[2].to_string());
        fs::write(&config, text).map_err(|e| format!("{config}: {e}"))?;
        let prefix = dir.path.display().to_string();
        let args = ["-p", &prefix, "-e", &log, "-c", &config, "-g", &globals].map(String::from);
        let guard = guarded(program, &args, core)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], listen));
        let listening = || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        match wait_ready(&guard, listening, || tail(&log)) {
            Ok(()) => {
                return Ok(Nginx {
                    addr,
                    _guard: guard,
                })
            }
            Err(e) => last_error = e,
        }
    }
    Err(format!("nginx did not start: {last_error}"))
}

/// nginx's `-g` directives: `daemon off;` (in the foreground, a child of
/// its guard), and, when this process's limit on open files (which nginx
/// inherits) is below `files`, `worker_rlimit_nofile`, which makes the
/// worker raise its own, up to the hard limit (or past it, as root).
fn nginx_globals(template: &str, files: usize) -> Result<String, String> {
    let mut globals = String::from("daemon off;");
    let (soft, hard) = open_file_limits().unwrap_or((u64::MAX, u64::MAX));
    let need = files as u64 + 64;
    if soft < need && !template.contains("worker_rlimit_nofile") {
        if hard < need && !is_root() {
            return Err(format!(
                "nginx needs {need} open files and the hard limit is {hard} (raise it: ulimit -Hn)"
            ));
        }
        globals.push_str(&format!(" worker_rlimit_nofile {need};"));
    }
    Ok(globals)
}

/// This process's limit on open files, soft and hard (`/proc/self/limits`).
pub fn open_file_limits() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = line["Max open files".len()..].split_whitespace();
    let mut next = || match numbers.next()? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((next()?, next()?))
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// `__guard PROGRAM ARGS…`: runs the program (its stdin and stdout to
/// nowhere: redis-server and nginx are told where to log), says `started
/// PID`, and stops it when this helper's stdin closes. If the program
/// exits first, says `exited STATUS` and ends.
pub fn guard(args: &[String]) -> Result<(), String> {
    let (program, rest) = args.split_first().ok_or("usage: __guard PROGRAM ARGS…")?;
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    say(&format!("started {}", child.id()));
    let (closed, stdin_closed) = channel::<()>();
    thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        let _ = closed.send(());
    });
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            say(&format!("exited {status}"));
            return Ok(());
        }
        match stdin_closed.recv_timeout(Duration::from_millis(50)) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                stop(&mut child);
                return Ok(());
            }
        }
    }
}

/// SIGTERM by pid, then, after STOP_GRACE, SIGKILL for the program and
/// for the processes it had started (nginx's worker), each by its pid.
fn stop(child: &mut Child) {
    let pid = child.id();
    let started = children_of(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    for (pid, name) in started {
        // Only if the pid is still the process it was, not a new one.
        if command_name(pid).as_deref() == Some(name.as_str()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The processes `pid` started, with their names (`/proc/PID/task/PID/children`).
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter_map(|p| Some((p, command_name(p)?)))
        .collect()
}

fn command_name(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim().to_string())
}
