//! Command-line flags, the `PORT` environment variable, and `--help`.
//!
//! Every limit the server enforces lives here with its default, so one
//! screen of `--help` tells a reader everything that can be tuned. Parsing
//! is a plain loop over the arguments: no argument-parsing crate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Stack size for connection threads. The default (2 MiB) is sized for
/// arbitrary programs; a connection thread needs a small fraction of it, and
/// thousands of idle SSE streams should not reserve gigabytes of address
/// space. The JSON reader's nesting limit keeps recursion bounded.
pub const CONNECTION_STACK: usize = 256 * 1024;

/// Everything the server can be told. [`Config::default`] is what a plain
/// `cargo run` uses; tests start from it and change fields directly.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// The directory static files are served from.
    pub public_dir: PathBuf,
    /// How often `periodic_update` goes out; zero turns it off.
    pub tick: Duration,
    /// How long an SSE stream may be quiet before a `: keep-alive` comment.
    pub keepalive: Duration,
    /// The `retry:` value sent to SSE clients, in milliseconds.
    pub retry_ms: u64,
    /// How many broadcast events are kept for `Last-Event-ID` resume.
    pub history: usize,
    /// How many events may wait for one slow subscriber before it is dropped.
    pub queue: usize,
    /// Open connections past which new ones get `503`.
    pub max_connections: usize,
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    /// Largest request body (`POST /trigger-event`).
    pub max_body: usize,
    /// Largest WebSocket frame or reassembled message on `/echo`.
    pub max_message: usize,
    /// Largest chat message (the whole JSON text) on `/` and `/ws`.
    pub max_chat_bytes: usize,
    /// Bytes of partly received messages and request bodies that all
    /// connections together may hold.
    pub max_buffered_bytes: usize,
    /// A WebSocket message that has started must be complete within this.
    pub message_timeout: Duration,
    /// Deadline for a whole request head (or body) once it has started.
    pub head_timeout: Duration,
    /// How long a persistent connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long one write may block on a client that does not read.
    pub write_timeout: Duration,
    /// End each SSE stream after about this long (zero: never).
    pub max_stream: Duration,
    /// Silence on a WebSocket after which the server sends a ping.
    pub ping_interval: Duration,
    /// How long to wait for any answer to that ping.
    pub pong_timeout: Duration,
    /// How long to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
    /// Names answered besides loopback ones and `host` (`*`: any); see
    /// `app::policy`.
    pub allowed_hosts: Vec<String>,
    /// Origins allowed besides the defaults (none, `null`, loopback, the
    /// server's own) on the WebSocket upgrade and the trigger (`*`: any).
    pub allowed_origins: Vec<String>,
    /// Whether `GET /inspect` reports frames.
    pub inspect: bool,
    /// `redis://HOST:PORT[/PREFIX]`: share one event log with other
    /// instances through Redis (`app::broker`); `None`, the in-process hub.
    pub broker: Option<String>,
    /// Start even when the broker cannot be reached (and keep trying).
    pub broker_optional: bool,
    /// No log lines.
    pub quiet: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            host: "127.0.0.1".to_string(),
            port: 3000,
            public_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/public")),
            tick: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            retry_ms: 3000,
            history: 1000,
            queue: 256,
            max_connections: default_max_connections(),
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body: 64 * 1024,
            max_message: 16 * 1024 * 1024,
            max_chat_bytes: 64 * 1024,
            max_buffered_bytes: default_max_buffered_bytes(),
            message_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_stream: Duration::ZERO,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            inspect: true,
            quiet: false,
            broker: None,
            broker_optional: false,
        }
    }
}

/// What went wrong on the command line; `main` prints it with the usage
/// line and exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    UnknownFlag(String),
    /// A word that is not an option (this program takes no plain arguments).
    UnexpectedArgument(String),
    MissingValue(String),
    BadValue {
        flag: String,
        value: String,
        expected: &'static str,
    },
    /// `--help`: not an error, but it also stops before the server starts.
    HelpRequested,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown option '{flag}'"),
            ConfigError::UnexpectedArgument(arg) => {
                write!(
                    f,
                    "unexpected argument '{arg}' (all settings are --options)"
                )
            }
            ConfigError::MissingValue(flag) => write!(f, "option '{flag}' needs a value"),
            ConfigError::BadValue {
                flag,
                value,
                expected,
            } => {
                write!(
                    f,
                    "invalid value '{value}' for '{flag}': expected {expected}"
                )
            }
            ConfigError::HelpRequested => write!(f, "help requested"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Flags that take a value.
const VALUE_FLAGS: [&str; 27] = [
    "--host",
    "--port",
    "--public",
    "--tick-secs",
    "--keepalive-secs",
    "--retry-ms",
    "--history",
    "--queue",
    "--max-connections",
    "--max-head",
    "--max-headers",
    "--max-uri",
    "--max-body",
    "--max-message",
    "--max-chat-bytes",
    "--max-buffered-bytes",
    "--message-timeout-secs",
    "--head-timeout-secs",
    "--idle-timeout-secs",
    "--write-timeout-secs",
    "--max-stream-secs",
    "--ping-secs",
    "--pong-timeout-secs",
    "--close-timeout-secs",
    "--allowed-host",
    "--allowed-origin",
    "--broker",
];

/// Flags that stand alone.
const SWITCHES: [&str; 5] = [
    "--no-inspect",
    "--quiet",
    "--broker-optional",
    "--help",
    "-h",
];

pub const USAGE: &str =
    "usage: realtime-by-hand [--host ADDR] [--port N] [options]   (--help lists them all)";

/// The `--help` text, with the defaults this machine would use.
pub fn help() -> String {
    let d = Config::default();
    let secs = |t: Duration| format!("{}", t.as_secs_f64());
    format!(
        "realtime-by-hand: Server-Sent Events and WebSocket, by hand over std::net

{USAGE}

Options (defaults in brackets):
  --host ADDR                address to listen on [{host}]
  --port N                   port; 0 picks a free one [{port}, or $PORT]
  --public DIR               directory of static files [{public}]
  --tick-secs S              periodic_update interval, 0 = off [{tick}]
  --keepalive-secs S         quiet time before an SSE ': keep-alive' comment [{keepalive}]
  --retry-ms MS              the SSE 'retry:' reconnection delay [{retry}]
  --history N                broadcast events kept for Last-Event-ID resume [{history}]
  --queue N                  events a subscriber may fall behind before it is dropped [{queue}]
  --max-connections N        connection slots (a chat takes two) before new ones get 503 [{conns}, from this machine's limits]
  --max-head BYTES           request line + headers [{head}]
  --max-headers N            header fields per request [{headers}]
  --max-uri BYTES            request target length [{uri}]
  --max-body BYTES           request body [{body}]
  --max-message BYTES        WebSocket frame or message on /echo [{message}]
  --max-chat-bytes BYTES     chat message on / and /ws, checked before it is read [{chat}]
  --max-buffered-bytes BYTES partly received messages and bodies, all connections together
                             [{buffered}, a quarter of this machine's memory]
  --message-timeout-secs S   a WebSocket message must be complete this long after it starts [{message_timeout}]
  --head-timeout-secs S      deadline for a request head or body [{head_timeout}]
  --idle-timeout-secs S      wait for the next request on a kept-alive connection [{idle}]
  --write-timeout-secs S     a write to a client that does not read [{write}]
  --max-stream-secs S        end each SSE stream after 80-100% of S, 0 = never [{stream}]
  --ping-secs S              WebSocket silence before the server pings [{ping}]
  --pong-timeout-secs S      wait for an answer to that ping [{pong}]
  --close-timeout-secs S     wait for the peer's close frame [{close}]
  --allowed-host NAME        also answer requests for Host NAME (repeatable; '*' = any)
                             [localhost, 127.0.0.0/8, [::1] and the --host address]
  --allowed-origin ORIGIN    also accept pages from ORIGIN on the WebSocket and the
                             trigger (repeatable; '*' = any) [no Origin, null, loopback, own]
  --broker redis://HOST:PORT[/PREFIX]
                             share ids, history and chat with other instances through
                             Redis (key names start with PREFIX) [none: in-process hub]
  --broker-optional          start even if the broker is unreachable, and keep trying
  --no-inspect               turn off the /inspect frame stream
  --quiet                    no log lines
  --help                     this text
",
        host = d.host,
        port = d.port,
        public = d.public_dir.display(),
        tick = secs(d.tick),
        keepalive = secs(d.keepalive),
        retry = d.retry_ms,
        history = d.history,
        queue = d.queue,
        conns = d.max_connections,
        head = d.max_head_bytes,
        headers = d.max_headers,
        uri = d.max_uri_bytes,
        body = d.max_body,
        message = d.max_message,
        chat = d.max_chat_bytes,
        buffered = d.max_buffered_bytes,
        message_timeout = secs(d.message_timeout),
        head_timeout = secs(d.head_timeout),
        idle = secs(d.idle_timeout),
        write = secs(d.write_timeout),
        stream = secs(d.max_stream),
        ping = secs(d.ping_interval),
        pong = secs(d.pong_timeout),
        close = secs(d.close_timeout),
    )
}

impl Config {
    /// Reads the arguments (without the program name) and the value of the
    /// `PORT` environment variable, as the Node original did. A `--port`
    /// flag wins over `PORT`.
    pub fn from_args<I, S>(args: I, env_port: Option<&str>) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut config = Config::default();
        let mut port_flag = false;
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let (flag, value) = next_flag(arg, &mut args)?;
            port_flag |= flag == "--port";
            config.apply(&flag, &value)?;
        }
        // PORT, as in the Node original, when no --port was given. An empty
        // PORT counts as unset.
        match env_port {
            Some(port) if !port_flag && !port.is_empty() => {
                config.port = parse_number("PORT", port, "a port number from 0 to 65535")?;
            }
            _ => {}
        }
        Ok(config)
    }

    /// Sets what one flag says (`value` is empty for a switch).
    fn apply(&mut self, flag: &str, value: &str) -> Result<(), ConfigError> {
        let (f, v) = (flag, value);
        match f {
            "--host" => self.host = parse_host(f, v)?,
            "--port" => self.port = parse_number(f, v, "a port number from 0 to 65535")?,
            "--public" if Path::new(v).is_dir() => self.public_dir = PathBuf::from(v),
            "--public" => return Err(bad(f, v, "an existing directory")),
            "--tick-secs" => self.tick = parse_secs(f, v)?,
            "--keepalive-secs" => self.keepalive = parse_positive_secs(f, v)?,
            "--retry-ms" => self.retry_ms = parse_number(f, v, "milliseconds")?,
            "--history" => self.history = parse_number(f, v, "a count")?,
            "--queue" => self.queue = parse_at_least_one(f, v)?,
            "--max-connections" => self.max_connections = parse_at_least_one(f, v)?,
            "--max-head" => self.max_head_bytes = parse_at_least_one(f, v)?,
            "--max-headers" => self.max_headers = parse_number(f, v, "a count")?,
            "--max-uri" => self.max_uri_bytes = parse_at_least_one(f, v)?,
            "--max-body" => self.max_body = parse_number(f, v, "a size in bytes")?,
            "--max-message" => self.max_message = parse_number(f, v, "a size in bytes")?,
            "--max-chat-bytes" => self.max_chat_bytes = parse_number(f, v, "a size in bytes")?,
            "--max-buffered-bytes" => self.max_buffered_bytes = parse_at_least_one(f, v)?,
            "--message-timeout-secs" => self.message_timeout = parse_positive_secs(f, v)?,
            "--head-timeout-secs" => self.head_timeout = parse_positive_secs(f, v)?,
            "--idle-timeout-secs" => self.idle_timeout = parse_positive_secs(f, v)?,
            "--write-timeout-secs" => self.write_timeout = parse_positive_secs(f, v)?,
            "--max-stream-secs" => self.max_stream = parse_secs(f, v)?,
            "--ping-secs" => self.ping_interval = parse_positive_secs(f, v)?,
            "--pong-timeout-secs" => self.pong_timeout = parse_positive_secs(f, v)?,
            "--close-timeout-secs" => self.close_timeout = parse_positive_secs(f, v)?,
            "--allowed-host" => self.allowed_hosts.push(parse_allowed_host(f, v)?),
            "--allowed-origin" => self.allowed_origins.push(parse_origin(f, v)?),
            "--broker" if v.starts_with("redis://") => self.broker = Some(v.to_string()),
            "--broker" => return Err(bad(f, v, "a URL redis://HOST:PORT[/PREFIX]")),
            "--broker-optional" => self.broker_optional = true,
            "--no-inspect" => self.inspect = false,
            "--quiet" => self.quiet = true,
            "--help" | "-h" => return Err(ConfigError::HelpRequested),
            // Not reached: the test below gives every listed flag a value.
            _ => return Err(ConfigError::UnknownFlag(f.to_string())),
        }
        Ok(())
    }
}

/// Splits off the next flag and its value: both "--port 8080" and
/// "--port=8080" are accepted; a switch has an empty value.
fn next_flag(
    arg: String,
    rest: &mut impl Iterator<Item = String>,
) -> Result<(String, String), ConfigError> {
    let (flag, inline_value) = match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (arg.clone(), None),
    };
    if SWITCHES.contains(&flag.as_str()) {
        return match inline_value {
            Some(_) => Err(ConfigError::UnknownFlag(arg)),
            None => Ok((flag, String::new())),
        };
    }
    if !VALUE_FLAGS.contains(&flag.as_str()) {
        return Err(if flag.starts_with('-') {
            ConfigError::UnknownFlag(flag)
        } else {
            ConfigError::UnexpectedArgument(arg)
        });
    }
    match inline_value.or_else(|| rest.next()) {
        Some(value) => Ok((flag, value)),
        None => Err(ConfigError::MissingValue(flag)),
    }
}

fn bad(flag: &str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::BadValue {
        flag: flag.to_string(),
        value: value.to_string(),
        expected,
    }
}

fn parse_number<T: std::str::FromStr>(
    flag: &str,
    value: &str,
    expected: &'static str,
) -> Result<T, ConfigError> {
    value.parse().map_err(|_| bad(flag, value, expected))
}

fn parse_at_least_one(flag: &str, value: &str) -> Result<usize, ConfigError> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(bad(flag, value, "a whole number of at least 1")),
    }
}

/// Seconds, fractions allowed ("0.5"), zero allowed (it means "off").
fn parse_secs(flag: &str, value: &str) -> Result<Duration, ConfigError> {
    match value.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(bad(flag, value, "a number of seconds, such as 10 or 0.5")),
    }
}

fn parse_positive_secs(flag: &str, value: &str) -> Result<Duration, ConfigError> {
    match parse_secs(flag, value) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(bad(flag, value, "a number of seconds greater than zero")),
    }
}

fn parse_host(flag: &str, value: &str) -> Result<String, ConfigError> {
    let is_ip = value.parse::<std::net::IpAddr>().is_ok();
    if is_ip || value == "localhost" {
        Ok(value.to_string())
    } else {
        Err(bad(flag, value, "an IP address such as 127.0.0.1 or ::1"))
    }
}

/// A name for `--allowed-host`: `*`, or a host without a port (the port
/// is never compared), such as `demo.test`, `192.168.1.5` or `::1`.
fn parse_allowed_host(flag: &str, value: &str) -> Result<String, ConfigError> {
    let is_ipv6 = value
        .trim_matches(['[', ']'])
        .parse::<std::net::Ipv6Addr>()
        .is_ok();
    let plain = !value.is_empty() && !value.contains([':', '/', '@', ' ']);
    if value == "*" || is_ipv6 || plain {
        Ok(value.to_string())
    } else {
        Err(bad(
            flag,
            value,
            "a host name or address without a port, or '*'",
        ))
    }
}

/// An origin for `--allowed-origin`: `*`, or `scheme://host[:port]`, as a
/// browser sends it (a trailing `/` is dropped).
fn parse_origin(flag: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.strip_suffix('/').unwrap_or(value);
    match value.split_once("://") {
        _ if value == "*" => Ok(value.to_string()),
        Some((scheme, host)) if !scheme.is_empty() && !host.is_empty() && !host.contains('/') => {
            Ok(value.to_string())
        }
        _ => Err(bad(
            flag,
            value,
            "an origin such as https://app.example:8443, or '*'",
        )),
    }
}

/// The connection cap this machine can afford.
///
/// What a connection costs is what the kernel counts: file descriptors and
/// threads, and each thread's memory maps (about four measured here: the
/// stack and its guard page, the signal stack and its guard page; five
/// counted to be safe). An HTTP connection, an SSE stream and an echo
/// WebSocket each take one descriptor and one thread; a chat WebSocket
/// takes a second thread for its writer, and so counts twice against the
/// cap (see `App::slots_in_use`). A process that runs out of either does
/// not fail gracefully: `accept` errors with EMFILE, or the kernel refuses
/// to map a new thread's stack and the spawn fails (or, in some runtimes,
/// the process aborts). So the server reads the limits with plain file
/// reads and refuses politely (503) well before the kernel would refuse it.
/// ("Max processes" counts a user's threads; root is exempt, but the number
/// still makes a sensible ceiling.)
pub fn default_max_connections() -> usize {
    const FALLBACK: usize = 1024;
    let open_files = read_limit("/proc/self/limits", "Max open files");
    let processes = read_limit("/proc/self/limits", "Max processes");
    let map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    const RESERVED_FILES: usize = 64; // stdio, the listener, public/ files, slack
    const FILES_PER_SLOT: usize = 1; // the socket
    const MAPS_PER_SLOT: usize = 5; // one thread
    const RESERVED_MAPS: usize = 1000; // the binary, libraries, the heap
    let mut cap = usize::MAX;
    if let Some(files) = open_files {
        cap = cap.min(files.saturating_sub(RESERVED_FILES) / FILES_PER_SLOT);
    }
    if let Some(maps) = map_count {
        cap = cap.min(maps.saturating_sub(RESERVED_MAPS) / MAPS_PER_SLOT);
    }
    if let Some(threads) = processes {
        cap = cap.min(threads);
    }
    if cap == usize::MAX {
        FALLBACK
    } else {
        // Keep a margin: other threads (the ticker, refusals) need room too.
        (cap * 9 / 10).max(1)
    }
}

/// The default budget for bytes in flight: a quarter of the machine's
/// memory (`MemTotal` in `/proc/meminfo`), or 1 GiB where that cannot be
/// read. A quarter leaves the rest for what the server keeps on purpose
/// (the history, the connections' buffers) and for everything else the
/// machine runs.
pub fn default_max_buffered_bytes() -> usize {
    const FALLBACK: usize = 1 << 30;
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<usize>().ok()
        });
    total_kib.map_or(FALLBACK, |kib| kib.saturating_mul(1024) / 4)
}

/// Reads the soft limit from a line of `/proc/self/limits`, such as
/// `Max open files            20000                20000                files`.
fn read_limit(file: &str, name: &str) -> Option<usize> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    let soft = line[name.len()..].split_whitespace().next()?;
    soft.parse().ok() // "unlimited" gives None: no limit from this line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(args.iter().copied(), None)
    }

    #[test]
    fn defaults_match_the_interface() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 3000));
        assert_eq!(c.tick, Duration::from_secs(10));
        assert_eq!(c.keepalive, Duration::from_secs(15));
        assert_eq!(c.history, 1000);
        assert_eq!(c.max_body, 65_536);
        assert_eq!(c.max_message, 16 * 1024 * 1024);
        assert!(c.max_connections >= 1);
        assert!(c.public_dir.join("index.html").is_file());
    }

    #[test]
    fn flags_and_port_variable() {
        let c = Config::from_args(
            [
                "--host",
                "::1",
                "--tick-secs=0.5",
                "--quiet",
                "--max-body",
                "10",
            ],
            Some("8080"),
        )
        .unwrap();
        assert_eq!(c.host, "::1");
        assert_eq!(c.port, 8080);
        assert_eq!(c.tick, Duration::from_millis(500));
        assert!(c.quiet);
        assert_eq!(c.max_body, 10);
        let c = Config::from_args(["--port", "0"], Some("8080")).unwrap();
        assert_eq!(c.port, 0, "--port wins over PORT");
        let c = Config::from_args(["--port", "0"], Some("not a port")).unwrap();
        assert_eq!(c.port, 0, "PORT is not even read when --port is given");
        assert_eq!(
            Config::from_args(Vec::<String>::new(), Some(""))
                .unwrap()
                .port,
            3000
        );
        let c = parse(&[
            "--allowed-origin",
            "http://a.test/",
            "--allowed-origin",
            "http://b.test",
            "--no-inspect",
        ])
        .unwrap();
        assert_eq!(c.allowed_origins, ["http://a.test", "http://b.test"]);
        assert!(!c.inspect);
        let c = parse(&[
            "--allowed-host",
            "demo.test",
            "--allowed-host=::1",
            "--allowed-host",
            "*",
            "--allowed-origin",
            "*",
        ])
        .unwrap();
        assert_eq!(c.allowed_hosts, ["demo.test", "::1", "*"]);
        assert_eq!(c.allowed_origins, ["*"]);
        assert!(parse(&[]).unwrap().allowed_hosts.is_empty());
    }

    #[test]
    fn bad_input_names_what_was_wrong() {
        assert_eq!(
            parse(&["--prot", "1"]).unwrap_err().to_string(),
            "unknown option '--prot'"
        );
        assert_eq!(
            parse(&["--port"]).unwrap_err().to_string(),
            "option '--port' needs a value"
        );
        assert_eq!(
            parse(&["--port", "70000"]).unwrap_err().to_string(),
            "invalid value '70000' for '--port': expected a port number from 0 to 65535"
        );
        assert!(parse(&["--host", "example.com"]).is_err());
        assert!(parse(&["--tick-secs", "-1"]).is_err());
        assert!(parse(&["--head-timeout-secs", "0"]).is_err());
        assert!(parse(&["--max-connections", "0"]).is_err());
        assert!(parse(&["--quiet=yes"]).is_err());
        assert!(parse(&["--allowed-host", "demo.test:3000"]).is_err());
        assert!(parse(&["--allowed-host", ""]).is_err());
        assert!(parse(&["--allowed-origin", "localhost:3000"]).is_err());
        assert!(parse(&["--allowed-origin", "http://a.test/path"]).is_err());
        assert!(Config::from_args(Vec::<String>::new(), Some("http")).is_err());
        assert_eq!(parse(&["--help"]).unwrap_err(), ConfigError::HelpRequested);
        // An unknown option is named as such wherever it stands.
        assert_eq!(
            parse(&["--bogus"]).unwrap_err().to_string(),
            "unknown option '--bogus'"
        );
        assert_eq!(
            parse(&["--quiet", "--bogus"]).unwrap_err(),
            ConfigError::UnknownFlag("--bogus".into())
        );
        assert_eq!(
            parse(&["3000"]).unwrap_err(),
            ConfigError::UnexpectedArgument("3000".into())
        );
        assert_eq!(
            parse(&["--public", "/no/such/dir"])
                .unwrap_err()
                .to_string(),
            "invalid value '/no/such/dir' for '--public': expected an existing directory"
        );
    }

    #[test]
    fn every_known_flag_is_handled() {
        // Each flag gets a plausible value and must be accepted.
        for flag in VALUE_FLAGS {
            let value = match flag {
                "--host" => "127.0.0.1",
                "--public" => env!("CARGO_MANIFEST_DIR"),
                "--allowed-origin" => "http://a.test",
                "--allowed-host" => "demo.test",
                "--broker" => "redis://127.0.0.1:6379/demo",
                _ => "1",
            };
            assert!(parse(&[flag, value]).is_ok(), "{flag}");
        }
        for flag in SWITCHES {
            let parsed = parse(&[flag]);
            assert!(
                parsed.is_ok() || parsed.unwrap_err() == ConfigError::HelpRequested,
                "{flag}"
            );
        }
    }

    #[test]
    fn help_lists_every_flag_the_parser_knows() {
        let text = help();
        let source = include_str!("config.rs")
            .split("#[cfg(test)]")
            .next()
            .unwrap();
        let flags = source
            .split('"')
            .filter(|s| s.starts_with("--") && !s.contains([' ', '=']));
        for flag in flags {
            assert!(text.contains(flag), "--help does not mention {flag}");
        }
    }

    #[test]
    fn reads_a_limits_line() {
        assert!(read_limit("/proc/self/limits", "Max open files").is_some());
        assert_eq!(read_limit("/nonexistent", "Max open files"), None);
    }
}
