//! `cargo run --release --bin bench -- SCENARIO [options]`: the server
//! measured against what raw TCP over loopback does on the same machine,
//! in the same run, printed as one table (or JSON with `--json`).
//! `--help` lists the scenarios, options and targets.
//!
//! | module | what |
//! | --- | --- |
//! | `options` | the command line and the sizes of each scenario |
//! | `report` | figures, min/median/max over the reps, ratios, targets; table, JSON, progress |
//! | `procs` | child processes (the helpers), `taskset`, `/proc` |
//! | `target` | the server under test: in this process, a child, or `--url`; an HTTP client |
//! | `tcp` | the raw TCP baselines: ping-pong and echo, and the drivers that time them |
//! | `echo` | `ws-echo` and `ws-bulk` |
//! | `readers` | subscribers: a socket and a thread each, 10,000 at a time |
//! | `fanout` | the raw, SSE and WebSocket fan-outs |
//! | `hold` | idle connections: memory and threads per connection, the cap |
//! | `overhead` | bytes on the wire per message, counted by relays |
//! | `cluster` | three instances, Redis and nginx: the cost of each hop |
//! | `outside` | redis-server and nginx: found, started, always stopped |
//!
//! `--pin`: the server (and every baseline's server side: the TCP echo and
//! the fan-out writer) runs as a child process under `taskset -c 0`, and
//! the bench pins itself, load and all, to core 1 with `taskset -a -p`
//! before it starts any thread. Child processes rather than pinning the
//! server's threads inside this process, because the server starts a
//! thread per connection and only a process boundary keeps them all on
//! their side without chasing each new thread.

mod cluster;
mod echo;
mod fanout;
mod hold;
mod options;
mod outside;
mod overhead;
mod procs;
mod readers;
mod report;
mod target;
mod tcp;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Mutex;

use realtime_by_hand::config::Config;
use realtime_by_hand::json::Json;

use options::{Options, OptionsError, Scenario, Sizes};
use report::{Progress, Results};
use target::Setup;

/// What every part of a run shares.
pub struct Ctx {
    pub opts: Options,
    pub sizes: Sizes,
    pub progress: Progress,
    /// The connection cap the server computes for itself on this machine.
    pub default_cap: usize,
    /// The cores this process could use before any pinning.
    pub cores: usize,
    /// Whether `--pin` took effect.
    pub pinned: bool,
    notes: Mutex<Vec<String>>,
    costs: Mutex<BTreeMap<(String, usize), Vec<fanout::RunCost>>>,
}

impl Ctx {
    /// Whether server sides run in this process (not with --pin, --child).
    pub fn server_side_in_process(&self) -> bool {
        !self.opts.pin && !self.opts.child
    }

    /// The core for helper processes: 0 with --pin.
    pub fn helper_core(&self) -> Option<usize> {
        self.pinned.then_some(0)
    }

    pub fn note(&self, text: String) {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text);
    }

    /// What one fan-out run cost besides the figures: packets the network
    /// stack dropped and resent, and the load's CPU time per arrival.
    pub fn run_cost(&self, name: &str, n: usize, cost: fanout::RunCost) {
        let mut costs = self.costs.lock().unwrap_or_else(|e| e.into_inner());
        costs.entry((name.to_string(), n)).or_default().push(cost);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(mode) = args.first().and_then(|a| a.strip_prefix("__")) {
        return procs::run_helper(mode, &args[1..]);
    }
    let default_cap = Config::default().max_connections;
    let opts = match options::parse(&args) {
        Ok(opts) => opts,
        Err(OptionsError::Help) => {
            print!("{}", options::help(default_cap));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n{}", options::USAGE);
            return ExitCode::from(2);
        }
    };
    let mut results = Results::default();
    let cores = procs::cores();
    let pinned = opts.pin && pin(&mut results);
    let ctx = Ctx {
        sizes: Sizes::new(&opts),
        progress: Progress::new(),
        default_cap,
        cores,
        pinned,
        opts,
        notes: Mutex::default(),
        costs: Mutex::default(),
    };
    run(&ctx, &mut results);
    finish_notes(&ctx, &mut results);
    ctx.progress.done();
    print(&ctx, &results);
    ExitCode::SUCCESS
}

/// `--pin`: this process to core 1 (the server's helpers go to core 0).
fn pin(results: &mut Results) -> bool {
    if procs::cores() < 2 {
        results.note("--pin needs two cores; this process may use one, so nothing is pinned");
        return false;
    }
    match procs::pin_self(1) {
        Ok(()) => true,
        Err(e) => {
            results.note(format!("--pin failed ({e}); nothing is pinned"));
            false
        }
    }
}

/// Runs a part `reps` times; a rep that fails is noted, not fatal.
fn repeat(
    ctx: &Ctx,
    results: &mut Results,
    what: &str,
    mut part: impl FnMut(&mut Results) -> Result<(), String>,
) {
    let reps = ctx.opts.reps;
    for rep in 1..=reps {
        ctx.progress.step(&format!("{what}: rep {rep}/{reps}"));
        if let Err(e) = part(results) {
            results.note(format!("{what}, rep {rep}: {e}"));
        }
    }
}

/// Starts a server for a part, or notes why it could not.
fn server_for(
    ctx: &Ctx,
    results: &mut Results,
    what: &str,
    setup: &Setup,
) -> Option<target::Target> {
    match target::start(ctx, setup) {
        Ok(server) => Some(server),
        Err(e) => {
            results.note(format!("{what}: {e}"));
            None
        }
    }
}

fn run(ctx: &Ctx, results: &mut Results) {
    let s = ctx.opts.scenario;
    let fanouts = s.includes(Scenario::SseFanout) || s.includes(Scenario::WsFanout);
    if s.includes(Scenario::Baseline)
        || s.includes(Scenario::WsEcho)
        || s.includes(Scenario::WsBulk)
    {
        match tcp::start_echo(ctx) {
            Ok(echo) => {
                if s.includes(Scenario::Baseline) || s.includes(Scenario::WsEcho) {
                    repeat(ctx, results, "baseline ping-pong", |r| {
                        tcp::pingpong(ctx, &echo, r)
                    });
                }
                if s.includes(Scenario::Baseline) || s.includes(Scenario::WsBulk) {
                    repeat(ctx, results, "baseline echo", |r| tcp::echo(ctx, &echo, r));
                }
            }
            Err(e) => results.note(format!("the TCP echo could not start: {e}")),
        }
    }
    if s.includes(Scenario::Baseline) || fanouts {
        for &n in &ctx.sizes.fanout {
            repeat(ctx, results, &format!("baseline fan-out {n}"), |r| {
                fanout::tcp(ctx, n, r)
            });
        }
    }
    if s.includes(Scenario::WsEcho) {
        if let Some(server) = server_for(ctx, results, "ws-echo", &Setup::default()) {
            repeat(ctx, results, "ws-echo", |r| {
                echo::ws_echo(ctx, server.addr, r)
            });
        }
    }
    if s.includes(Scenario::WsBulk) {
        if let Some(server) = server_for(ctx, results, "ws-bulk", &Setup::default()) {
            repeat(ctx, results, "ws-bulk", |r| {
                echo::ws_bulk(ctx, server.addr, r)
            });
        }
    }
    run_server_parts(ctx, results);
}

fn run_server_parts(ctx: &Ctx, results: &mut Results) {
    let s = ctx.opts.scenario;
    if s.includes(Scenario::SseFanout) {
        for &n in &ctx.sizes.fanout {
            repeat(ctx, results, &format!("sse-fanout {n}"), |r| {
                fanout::sse(ctx, n, r)
            });
        }
    }
    if s.includes(Scenario::WsFanout) {
        for &n in &ctx.sizes.fanout {
            repeat(ctx, results, &format!("ws-fanout {n}"), |r| {
                fanout::ws(ctx, n, r)
            });
        }
    }
    if s.includes(Scenario::Hold) {
        repeat(ctx, results, "hold sse", |r| hold::sse(ctx, r));
        repeat(ctx, results, "hold ws", |r| hold::ws(ctx, r));
    }
    if s.includes(Scenario::Overhead) {
        let setup = Setup {
            max_body: Some(overhead::MAX_BODY),
            ..Setup::default()
        };
        if let Some(server) = server_for(ctx, results, "overhead", &setup) {
            let sizes = ctx.sizes.overhead;
            repeat(ctx, results, "overhead", |r| {
                overhead::run(server.addr, &sizes, r)
            });
        }
    }
    if s.includes(Scenario::Cluster) {
        cluster::run(ctx, results);
    }
}

/// The notes that explain the run: where the server ran, its caps, how
/// each figure was measured. What went wrong during the run comes after.
fn finish_notes(ctx: &Ctx, results: &mut Results) {
    let problems = std::mem::take(&mut results.notes);
    let s = ctx.opts.scenario;
    let reps = ctx.opts.reps;
    results.note(format!(
        "{reps} rep{} of each figure; ratio = median / the baseline's median (for bytes: per byte of message); \
         verdicts judge the median, or the worst rep for counts (lost, held, refused)",
        if reps == 1 { "" } else { "s" }
    ));
    echo_notes(ctx, results);
    if s.includes(Scenario::Baseline)
        || s.includes(Scenario::SseFanout)
        || s.includes(Scenario::WsFanout)
    {
        fanout::notes(ctx, results);
    }
    if s.includes(Scenario::Hold) {
        hold::notes(ctx, results);
    }
    if s.includes(Scenario::Overhead) {
        overhead::notes(ctx, results);
    }
    if s.includes(Scenario::Cluster) {
        cluster::notes(ctx, results);
    }
    if ctx.pinned {
        results.note(if ctx.opts.url.is_some() {
            "--pin: the bench and its load on core 1, the baselines' server sides on core 0; the server at \
             --url runs where it was started (start it under taskset -c 0 to match)"
        } else {
            "--pin: server sides (server, TCP echo, fan-out writer) on core 0, the bench and its load on core 1"
        });
    }
    for note in problems {
        results.note(note);
    }
    for note in ctx
        .notes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        results.note(note);
    }
}

fn echo_notes(ctx: &Ctx, results: &mut Results) {
    let s = ctx.opts.scenario;
    if s.includes(Scenario::WsEcho) || s.includes(Scenario::WsBulk) {
        let placement = target::placement(ctx, &Setup::default());
        results.note(format!("ws-echo, ws-bulk: the server ran {placement}"));
    }
    if (s.includes(Scenario::WsEcho) || s.includes(Scenario::Baseline)) && !ctx.pinned {
        results.note(
            "ping-pong on 1 connection, unpinned: the scheduler puts both ends on one core (about 6 µs a \
             round trip here) or on two (about 15 µs), by chance, for each connection, so that rate and its \
             ratio can swing between reps; --pin always puts them on two",
        );
    }
}

fn print(ctx: &Ctx, results: &Results) {
    let name = ctx.opts.scenario.name();
    if ctx.opts.json {
        let header = vec![
            ("bench".to_string(), Json::String("realtime-by-hand".into())),
            ("scenario".to_string(), Json::String(name.into())),
            ("reps".to_string(), Json::Number(ctx.opts.reps as f64)),
            ("quick".to_string(), Json::Bool(ctx.opts.quick)),
            ("pinned".to_string(), Json::Bool(ctx.pinned)),
            ("cores".to_string(), Json::Number(ctx.cores as f64)),
            (
                "elapsed_secs".to_string(),
                Json::Number(ctx.progress.elapsed_secs()),
            ),
        ];
        print!("{}", report::json(results, header));
    } else {
        let title = format!(
            "realtime-by-hand bench: {name}{}, {} rep{}, {} core{}{}, {:.0} s",
            if ctx.opts.quick { " --quick" } else { "" },
            ctx.opts.reps,
            if ctx.opts.reps == 1 { "" } else { "s" },
            ctx.cores,
            if ctx.cores == 1 { "" } else { "s" },
            if ctx.pinned { ", pinned" } else { "" },
            ctx.progress.elapsed_secs()
        );
        print!("{}", report::table(results, &title));
    }
}
