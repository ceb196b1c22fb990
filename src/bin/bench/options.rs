//! The command line, parsed by hand like the server's, and the sizes each
//! scenario runs at (full, or `--quick`).

use std::fmt;
use std::time::Duration;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Baseline,
    WsEcho,
    WsBulk,
    SseFanout,
    WsFanout,
    Hold,
    Overhead,
    Cluster,
    All,
}

impl Scenario {
    const NAMES: [(&'static str, Scenario); 9] = [
        ("baseline", Scenario::Baseline),
        ("ws-echo", Scenario::WsEcho),
        ("ws-bulk", Scenario::WsBulk),
        ("sse-fanout", Scenario::SseFanout),
        ("ws-fanout", Scenario::WsFanout),
        ("hold", Scenario::Hold),
        ("overhead", Scenario::Overhead),
        ("cluster", Scenario::Cluster),
        ("all", Scenario::All),
    ];

    pub fn name(self) -> &'static str {
        Scenario::NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether a run of `self` includes `part`.
    ///
    /// `all` leaves `cluster` out, even where redis-server and nginx are
    /// installed: `all` measures this server alone against raw TCP, needs
    /// nothing but this program, and reports the same figures (the ones
    /// the README and `tests/bench.rs` name) on every machine. A cluster
    /// run borrows two outside programs and adds a minute; it is asked for
    /// by name.
    pub fn includes(self, part: Scenario) -> bool {
        self == part || (self == Scenario::All && part != Scenario::Cluster)
    }
}

/// Everything the command line can say.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    pub reps: usize,
    pub json: bool,
    pub quick: bool,
    pub pin: bool,
    /// Run the server as a child process even where it fits in this one.
    pub child: bool,
    /// A server that is already running (`http://127.0.0.1:PORT`).
    pub url: Option<String>,
    pub subscribers: Option<Vec<usize>>,
    pub events: Option<usize>,
    pub gap: Option<Duration>,
}

#[derive(Debug)]
pub enum OptionsError {
    Help,
    Bad(String),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::Help => f.write_str("help requested"),
            OptionsError::Bad(why) => f.write_str(why),
        }
    }
}

pub const USAGE: &str = "usage: bench SCENARIO [--reps N] [--json] [--quick] [--pin] [--child] \
[--url http://127.0.0.1:PORT] [--subscribers N,N,..] [--events N] [--gap-ms MS]
       (bench --help lists them all)";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Options, OptionsError> {
    let mut options = Options {
        scenario: Scenario::All,
        reps: 3,
        json: false,
        quick: false,
        pin: false,
        child: false,
        url: None,
        subscribers: None,
        events: None,
        gap: None,
    };
    let mut scenario = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| OptionsError::Bad(format!("option '{flag}' needs a value")))
        };
        match flag {
            "--help" | "-h" => return Err(OptionsError::Help),
            "--json" => options.json = true,
            "--quick" => options.quick = true,
            "--pin" => options.pin = true,
            "--child" => options.child = true,
            "--reps" => options.reps = positive(flag, &value()?)?,
            "--events" => options.events = Some(positive(flag, &value()?)?.min(60)),
            "--gap-ms" => {
                options.gap = Some(Duration::from_millis(positive(flag, &value()?)? as u64))
            }
            "--subscribers" => options.subscribers = Some(list(flag, &value()?)?),
            "--url" => options.url = Some(value()?),
            _ if flag.starts_with('-') => {
                return Err(OptionsError::Bad(format!("unknown option '{flag}'")))
            }
            name => match Scenario::NAMES.iter().find(|(n, _)| *n == name) {
                Some(_) if scenario.is_some() => {
                    return Err(OptionsError::Bad(format!("a second scenario '{name}'")))
                }
                Some((_, s)) => scenario = Some(*s),
                None => return Err(OptionsError::Bad(format!("unknown scenario '{name}'"))),
            },
        }
    }
    options.scenario =
        scenario.ok_or_else(|| OptionsError::Bad("name a scenario (or 'all')".into()))?;
    Ok(options)
}

fn positive(flag: &str, value: &str) -> Result<usize, OptionsError> {
    match value.replace('_', "").parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(OptionsError::Bad(format!(
            "invalid value '{value}' for '{flag}': expected a whole number of at least 1"
        ))),
    }
}

fn list(flag: &str, value: &str) -> Result<Vec<usize>, OptionsError> {
    value.split(',').map(|v| positive(flag, v.trim())).collect()
}

/// How big each scenario runs.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Round trips on one connection.
    pub rounds_one: usize,
    pub many_conns: usize,
    /// Round trips on each of `many_conns` connections.
    pub rounds_many: usize,
    /// (message size, how many), the small and the large bulk echo.
    pub bulk: [(usize, usize); 2],
    pub fanout: Vec<usize>,
    pub events: usize,
    pub gap: Duration,
    /// Quiet time after the subscribers connect, before the first event.
    pub settle: Duration,
    pub hold_sse: usize,
    pub hold_ws: usize,
    /// Clients that try to connect past the cap in `hold`.
    pub hold_extra: usize,
    pub overhead: [usize; 3],
    /// Subscribers on each of the cluster's three instances (the single
    /// instance gets three times as many).
    pub cluster: Vec<usize>,
}

/// The size of a ping-pong message, in both scenarios.
pub const PING_BYTES: usize = 32;

impl Sizes {
    pub fn new(options: &Options) -> Sizes {
        const MIB: usize = 1 << 20;
        let mut sizes = if options.quick {
            Sizes {
                rounds_one: 300,
                many_conns: 10,
                rounds_many: 50,
                bulk: [(64 * 1024, 10), (256 * 1024, 4)],
                fanout: vec![10, 20, 50, 100],
                events: 3,
                gap: Duration::from_millis(20),
                settle: Duration::from_millis(50),
                hold_sse: 100,
                hold_ws: 40,
                hold_extra: 5,
                overhead: [16, 1024, 64 * 1024],
                cluster: vec![100],
            }
        } else {
            Sizes {
                rounds_one: 20_000,
                many_conns: 100,
                rounds_many: 1_000,
                bulk: [(MIB, 200), (16 * MIB, 10)],
                fanout: vec![100, 1_000, 5_000, 10_000],
                events: 20,
                gap: Duration::from_millis(100),
                settle: Duration::from_millis(200),
                hold_sse: 10_000,
                hold_ws: 4_000,
                hold_extra: 20,
                overhead: [16, 1024, 64 * 1024],
                cluster: vec![1_000],
            }
        };
        if let Some(list) = &options.subscribers {
            sizes.fanout = list.clone();
            sizes.cluster = list.clone();
        }
        sizes.events = options.events.unwrap_or(sizes.events);
        sizes.gap = options.gap.unwrap_or(sizes.gap);
        sizes
    }
}

/// The `--help` text.
pub fn help(default_cap: usize) -> String {
    format!(
        "bench: the server measured against raw TCP over loopback, in the same run

{USAGE}

Scenarios (each runs the baseline figures it is compared with):
  baseline    raw TCP: ping-pong of {PING_BYTES} B (1 and 100 connections), echo of 1 MiB and
              16 MiB, and a fan-out: one thread writing an SSE-sized event to N sockets
  ws-echo     /echo, {PING_BYTES} B: 1 conn x 20,000 and 100 conns x 1,000 round trips (msg/s, p50, p99)
  ws-bulk     /echo: 1 MiB x 200 and 16 MiB x 10 (MB/s)
  sse-fanout  GET /events x 100, 1,000, 5,000, 10,000; 20 POST /trigger-event 100 ms apart:
              latency from the POST to each arrival (p50/p99/max), events lost
  ws-fanout   the same broadcast to chat WebSockets on /ws
  hold        10,000 idle SSE streams, then 4,000 idle chat WebSockets: server memory and
              threads per connection, a broadcast to all, 503 past the cap
  overhead    bytes on the wire per message, SSE and WebSocket, 16 B / 1 KiB / 64 KiB, both ways
  all         everything above (about three minutes on two cores at --reps 3)
  cluster     not in 'all': the same broadcast to 3 x 1,000 SSE streams, three ways: one
              instance (3,000 direct), three with --broker (Redis; 1,000 direct on each, the
              POST to one), the same three behind nginx (streams and POST through it);
              latency, fan-out completion and the cost of each hop; every stream must get
              every event, with ids one after another. Needs redis-server and nginx (on
              PATH, or $REDIS_SERVER and $NGINX); without them it says so and exits 0

Options:
  --reps N            repetitions of each figure; the table shows min/median/max [3]
  --json              print the results as JSON instead of the table
  --quick             every scenario at a tiny size (seconds: a smoke test)
  --pin               server (and the baselines' server side) as a child process on core 0,
                      the load on core 1 (with taskset from util-linux)
  --child             the server as a child process in every scenario (fan-out and hold
                      always use one)
  --url URL           measure a server that is running (http://127.0.0.1:PORT) instead
  --subscribers LIST  fan-out sizes [100,1000,5000,10000]; for cluster, per instance [1000]
  --events N          events per fan-out run, at most 60 [20]
  --gap-ms MS         time between fan-out events [100]

Targets (column 'target'; verdicts on the median, or on the worst rep for counts):
  sse-fanout 5,000 p99 <= 3x and 10,000 p99 <= 4x the raw fan-out; no event lost anywhere;
  ws-echo 1 conn >= 0.9x and 100 conns >= 0.8x raw TCP ping-pong; ws-bulk 16 MiB >= 0.75x
  raw TCP echo; <= 12 KiB per idle SSE stream, <= 32 KiB per idle chat WebSocket; 10,000 SSE
  streams held and served, 503 past the cap while every open stream keeps working.

The server's own connection cap on this machine is {default_cap}; sse-fanout and hold raise it
(Config::max_connections) to fit their subscribers, as the notes under the table say.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_a_scenario_and_flags() {
        let o = parse(&args(&[
            "sse-fanout",
            "--reps=2",
            "--json",
            "--subscribers",
            "5,10",
        ]))
        .unwrap();
        assert_eq!(o.scenario, Scenario::SseFanout);
        assert_eq!((o.reps, o.json), (2, true));
        assert_eq!(o.subscribers, Some(vec![5, 10]));
        assert!(matches!(parse(&args(&["--help"])), Err(OptionsError::Help)));
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["all", "hold"])).is_err());
        assert!(parse(&args(&["all", "--reps", "0"])).is_err());
        assert!(parse(&args(&["nope"])).is_err());
    }
}
