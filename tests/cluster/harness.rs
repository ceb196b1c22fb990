//! The cluster under test, started for real: a private redis-server,
//! server instances (the `realtime-by-hand` binary) and nginx, each a
//! child process on a free loopback port, in a temporary directory of its
//! own. Everything a test starts is stopped by its pid when the value
//! that started it is dropped, so a failing test leaves nothing running.
//!
//! Every wait here has a deadline, and every loop a bound: a cluster that
//! does not come up fails the test with what its logs said, it does not
//! hang it.
//!
//! Which programs: `$REDIS_SERVER` (default `redis-server`) and `$NGINX`
//! (default `nginx`); `tests/cluster/run.sh` installs both and sets them.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use realtime_by_hand::random::random_u64;
use realtime_by_hand::redis::{Connection, Limits, RedisError, RedisUrl, Reply, Timeouts};

/// How long anything may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a process may take to stop once told to.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------
// Small tools.

/// A directory of its own under the system's temporary directory,
/// removed when dropped, unless the test failed: then it is kept, and its
/// path printed, for a look at the logs in it.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let name = format!(
            "rbh-cluster-{label}-{}-{:08x}",
            std::process::id(),
            random_u64() as u32
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("cluster: kept {} for a look", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A port nothing listens on at this moment. Another process could take
/// it before we do; the starters below notice and try another.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Waits for a child to exit, at most `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Ends a child with SIGKILL, by its pid, and reaps it.
pub fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = wait_exit(child, STOP_TIMEOUT);
}

/// The lines a child writes, as they come: kept in `log` (with a tag for
/// the stream they came on), and each also sent to `lines` if given.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Reads a child's stdout or stderr in a thread until it closes.
pub fn collect_lines<R: Read + Send + 'static>(
    pipe: R,
    tag: &'static str,
    log: Log,
    lines: Option<Sender<String>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        // A bound on the count as well: no child of ours writes a million
        // lines, and one that did must not fill the memory.
        for line in BufReader::new(pipe).lines().take(1_000_000) {
            let Ok(line) = line else { break };
            if let Some(lines) = &lines {
                let _ = lines.send(line.clone());
            }
            log.lock().unwrap().push(format!("{tag}: {line}"));
        }
    })
}

pub fn log_text(log: &Log) -> String {
    log.lock().unwrap().join("\n")
}

// ---------------------------------------------------------------------
// Redis.

/// A redis-server of our own: loopback only, nothing saved unless asked
/// (`--save ''`, no append-only file), its files in `dir`.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port.
    pub fn start(dir: &Path) -> Redis {
        let mut last_error = String::new();
        for _ in 0..5 {
            match Redis::try_start_on(free_port(), dir) {
                Ok(redis) => return redis,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// Starts one on the given port.
    pub fn start_on(port: u16, dir: &Path) -> Redis {
        Redis::try_start_on(port, dir)
            .unwrap_or_else(|e| panic!("redis-server did not start on port {port}: {e}"))
    }

    fn try_start_on(port: u16, dir: &Path) -> Result<Redis, String> {
        let mut redis = Redis {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        redis.spawn().map(|()| redis)
    }

    /// Starts redis-server on `self.port` with `self.dir`, and waits until
    /// it answers PING. With `--dir` unchanged, a restart loads the
    /// `dump.rdb` that a `SHUTDOWN SAVE` left there.
    fn spawn(&mut self) -> Result<(), String> {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let log_file = self.dir.join(format!("redis-{}.log", self.port));
        let port = self.port.to_string();
        let mut child = Command::new(&binary)
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {binary} (set REDIS_SERVER): {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(&log_file).unwrap_or_default();
                return Err(format!("it exited ({status}); its log:\n{log}"));
            }
            if self.command(&[b"PING"]).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        kill_child(&mut child);
        Err(format!("no answer to PING within {START_TIMEOUT:?}"))
    }

    /// `redis://127.0.0.1:PORT/PREFIX`, as `--broker` takes it.
    pub fn url(&self, prefix: &str) -> String {
        format!("redis://127.0.0.1:{}/{prefix}", self.port)
    }

    /// One command on a new connection, with short deadlines.
    pub fn command(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let url = RedisUrl::parse(&self.url("rbh-test")).expect("our own URL");
        let timeouts = Timeouts {
            connect: Duration::from_millis(500),
            read: Duration::from_secs(2),
            write: Duration::from_secs(2),
        };
        Connection::connect(&url, timeouts, Limits::default())?.command(args)
    }

    /// SIGKILL: gone at once, and with it everything it held in memory.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// `SHUTDOWN SAVE` (the data is written to `dump.rdb` in the
    /// directory first) or `SHUTDOWN NOSAVE` (it is lost), then waits for
    /// the process to end. Redis closes the connection instead of
    /// answering, so the command's "error" is the expected outcome.
    pub fn shutdown(&mut self, save: bool) {
        let how: &[u8] = if save { b"SAVE" } else { b"NOSAVE" };
        let _ = self.command(&[b"SHUTDOWN", how]);
        if let Some(mut child) = self.child.take() {
            if wait_exit(&mut child, STOP_TIMEOUT).is_none() {
                kill_child(&mut child);
                panic!("redis-server did not stop on SHUTDOWN");
            }
        }
    }

    /// Starts it again, on the same port and with the same directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a Redis that is stopped");
        if let Err(e) = self.spawn() {
            panic!(
                "redis-server did not start again on port {}: {e}",
                self.port
            );
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------
// Server instances.

/// One running `realtime-by-hand`, started with `--port 0`: its address is
/// read from the line it prints first, `Server listening on http://ADDR/`.
pub struct Instance {
    pub name: String,
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Its stdout (the log lines) and stderr, tagged `out:` and `err:`.
    pub log: Log,
}

/// An instance that ended instead of listening.
#[derive(Debug)]
pub struct Exited {
    pub status: Option<ExitStatus>,
    /// What it wrote, stdout and stderr.
    pub output: String,
}

/// The path of a binary of this crate, built by cargo for the tests.
pub fn server_binary() -> &'static str {
    env!("CARGO_BIN_EXE_realtime-by-hand")
}

impl Instance {
    /// Starts the server with `args` (which should include `--port 0`).
    pub fn start(name: &str, args: &[String]) -> Result<Instance, Exited> {
        let mut child = Command::new(server_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the server binary");
        let log: Log = Arc::default();
        let (lines, first_lines) = mpsc::channel();
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let stderr: ChildStderr = child.stderr.take().expect("piped stderr");
        collect_lines(stdout, "out", log.clone(), Some(lines));
        let stderr_reader = collect_lines(stderr, "err", log.clone(), None);
        match wait_for_address(&first_lines) {
            Ok(addr) => Ok(Instance {
                name: name.to_string(),
                addr,
                child: Some(child),
                log,
            }),
            Err(waited_out) => {
                if waited_out {
                    kill_child(&mut child);
                }
                let status = wait_exit(&mut child, STOP_TIMEOUT);
                if status.is_none() {
                    kill_child(&mut child);
                }
                let _ = stderr_reader.join();
                Err(Exited {
                    status,
                    output: log_text(&log),
                })
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Whether it has not been killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, by its pid: the instance is gone mid-whatever, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    pub fn log_text(&self) -> String {
        log_text(&self.log)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads stdout lines until the listening line. `Err(false)`: stdout
/// closed first (the process is ending); `Err(true)`: it took too long.
fn wait_for_address(lines: &mpsc::Receiver<String>) -> Result<SocketAddr, bool> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let address = line
                    .strip_prefix("Server listening on http://")
                    .and_then(|rest| rest.strip_suffix('/'))
                    .and_then(|addr| addr.parse().ok());
                if let Some(addr) = address {
                    return Ok(addr);
                }
            }
            Err(RecvTimeoutError::Timeout) => return Err(true),
            Err(RecvTimeoutError::Disconnected) => return Err(false),
        }
    }
}

// ---------------------------------------------------------------------
// nginx.

/// nginx in the foreground (`daemon off`), on a configuration made from a
/// template in `tests/cluster/`.
pub struct Nginx {
    /// Where it listens (`@LISTEN@`).
    pub addr: SocketAddr,
    /// The second server of nginx-defaults.conf (`@LISTEN_IGNORE@`).
    pub addr_ignoring: SocketAddr,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Nginx {
    /// Fills in `template` (a file name in tests/cluster/) for these
    /// upstreams (three: @PORT_A@, @PORT_B@, @PORT_C@) and starts nginx,
    /// with up to three tries should a free port be taken meanwhile.
    pub fn start(dir: &Path, template: &str, upstreams: &[SocketAddr; 3]) -> Nginx {
        let dir = dir.join("nginx");
        fs::create_dir_all(&dir).expect("create nginx's directory");
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/cluster")
            .join(template);
        let text = fs::read_to_string(&source).expect("read the nginx template");
        let mut failure = String::new();
        for _ in 0..3 {
            let (listen, ignoring) = (free_port(), free_port());
            let config = text
                .replace("@DIR@", &dir.display().to_string())
                .replace("@LISTEN_IGNORE@", &ignoring.to_string())
                .replace("@LISTEN@", &listen.to_string())
                .replace("@PORT_A@", &upstreams[0].port().to_string())
                .replace("@PORT_B@", &upstreams[1].port().to_string())
                .replace("@PORT_C@", &upstreams[2].port().to_string());
            let conf = dir.join(template);
            fs::write(&conf, config).expect("write nginx's configuration");
            match spawn_nginx(&dir, &conf, listen) {
                Ok(child) => {
                    return Nginx {
                        addr: SocketAddr::from(([127, 0, 0, 1], listen)),
                        addr_ignoring: SocketAddr::from(([127, 0, 0, 1], ignoring)),
                        dir,
                        child: Some(child),
                    }
                }
                Err(e) => failure = e,
            }
        }
        panic!("nginx did not start: {failure}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// nginx's error log: what it said about the instances.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

/// Runs nginx and waits until its port accepts connections.
fn spawn_nginx(dir: &Path, conf: &Path, listen: u16) -> Result<Child, String> {
    let binary = std::env::var("NGINX").unwrap_or_else(|_| "nginx".into());
    let error_log = dir.join("error.log");
    let mut child = Command::new(&binary)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(&error_log)
        .arg("-c")
        .arg(conf)
        .args(["-g", "daemon off;"])
        // nginx reads $NGINX itself, as the list of listening sockets an
        // old master hands to a new one (its binary upgrade); our NGINX,
        // the path of the program, must not reach it.
        .env_remove("NGINX")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {binary} (set NGINX): {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(&error_log).unwrap_or_default();
            return Err(format!("it exited ({status}); its error log:\n{log}"));
        }
        if TcpStream::connect(("127.0.0.1", listen)).is_ok() {
            return Ok(child);
        }
        thread::sleep(Duration::from_millis(20));
    }
    kill_child(&mut child);
    Err(format!("it did not listen within {START_TIMEOUT:?}"))
}

impl Drop for Nginx {
    /// SIGTERM to the master process, by its pid: it stops its workers
    /// and exits. (SIGKILL would leave the workers running, orphaned.)
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            if wait_exit(&mut child, STOP_TIMEOUT).is_none() {
                kill_child(&mut child);
            }
        }
    }
}

// ---------------------------------------------------------------------
// The whole cluster.

/// Redis, three instances sharing a log in it, and nginx if asked for.
/// Fields drop in order: nginx, the instances, Redis, then the directory
/// that held their files.
pub struct Cluster {
    pub nginx: Option<Nginx>,
    pub instances: Vec<Instance>,
    pub redis: Redis,
    /// The key prefix of this cluster's log, unique to this run.
    pub prefix: String,
    pub dir: TempDir,
}

/// What every instance of a test cluster is started with, before the
/// test's own flags: a free port, no ticker (a `periodic_update` would
/// take ids the tests count on), and the shared log.
pub fn instance_args(broker: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--host", "127.0.0.1", "--port", "0", "--tick-secs", "0"]
        .map(String::from)
        .to_vec();
    if std::env::var("HACK").is_err() {
        args.extend(["--broker".to_string(), broker.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

impl Cluster {
    /// Redis and three instances `a`, `b`, `c`, each started with `extra`.
    pub fn start(label: &str, extra: &[&str]) -> Cluster {
        let dir = TempDir::new(label);
        let redis = Redis::start(&dir.path);
        let prefix = format!("cluster-{label}-{:08x}", random_u64() as u32);
        let broker = redis.url(&prefix);
        let instances = ["a", "b", "c"]
            .iter()
            .map(|name| {
                Instance::start(name, &instance_args(&broker, extra)).unwrap_or_else(|e| {
                    panic!(
                        "instance {name} did not start ({:?}):\n{}",
                        e.status, e.output
                    )
                })
            })
            .collect();
        Cluster {
            nginx: None,
            instances,
            redis,
            prefix,
            dir,
        }
    }

    /// The same, with nginx in front on the configuration `template`.
    pub fn with_nginx(label: &str, extra: &[&str], template: &str) -> Cluster {
        let mut cluster = Cluster::start(label, extra);
        let upstreams = [0, 1, 2]
            .map(|i| cluster.instances[if std::env::var("HACK").is_ok() { 0 } else { i }].addr);
        cluster.nginx = Some(Nginx::start(&cluster.dir.path, template, &upstreams));
        cluster
    }

    /// The `--broker` URL the instances were given.
    pub fn broker(&self) -> String {
        self.redis.url(&self.prefix)
    }

    pub fn addr(&self, instance: usize) -> SocketAddr {
        self.instances[instance].addr
    }

    pub fn nginx(&self) -> &Nginx {
        self.nginx.as_ref().expect("a cluster started with nginx")
    }

    /// Every instance's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for instance in &self.instances {
            text.push_str(&format!(
                "--- instance {} ({}):\n{}\n",
                instance.name,
                instance.addr,
                instance.log_text()
            ));
        }
        text
    }
}
