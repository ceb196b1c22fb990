//! The three fan-outs, measured one way: N subscribers held by the readers
//! (`readers.rs`), then `events` triggers `gap` apart, and for every
//! subscriber and event the time from the trigger to the arrival.
//!
//! - raw TCP: a child process (`__fanout-writer`) holds the N sockets' far
//!   ends; each `go SEQ` line on its stdin makes its one thread write the
//!   event to all N in a loop. The event is the bytes the server would send.
//! - `sse-fanout`: N `GET /events` streams; the trigger is a
//!   `POST /trigger-event` on a persistent connection.
//! - `ws-fanout`: N chat WebSockets on `/ws`, the same POST: the hub sends
//!   every broadcast to both protocols.
//!
//! The clock starts just before the bench writes the trigger (the POST)
//! and stops when a reader's `read` returns the event. For the raw
//! fan-out it starts, as the issue defines it, when the writer's loop
//! starts: the writer says when on the wall clock, the one clock `std`
//! lets two processes share, and the bench moves that onto its own from
//! when it wrote the `go` line. The two differ by the writer's wake-up,
//! and, when its previous loop was still running, by the wait for it:
//! at 10,000 sockets one loop takes about as long as the gap between
//! events, and the queue that builds up is not what a fan-out costs.
//! Every subscriber must get every event: the ones that did not are
//! counted as lost.
//!
//! The server runs as a child process (its 10,000 sockets and ours would
//! not fit in one process's 20,000 files), with `max_connections` raised
//! for SSE to N + 64; chat WebSockets keep the server's own cap, which it
//! computes from what one costs it (two sockets, two threads), so past it
//! they get 503 and are counted as refused.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::options::Scenario;
use crate::procs::Helper;
use crate::procs::{self, NetCounters};
use crate::readers::{self, Kind, Pool, Sub};
use crate::report::{percentile, Results, Spec, Target};
use crate::target::{self, marker, Http, Setup};
use crate::tcp;
use crate::Ctx;

/// How long after the last trigger the readers may still wait for arrivals.
const DRAIN: Duration = Duration::from_secs(20);

/// What a run cost besides its figures.
#[derive(Debug, Clone, Copy)]
pub struct RunCost {
    /// What the machine's network stack dropped and resent meanwhile.
    pub net: NetCounters,
    /// This process's CPU time per arrival, µs; `None` when the run used
    /// too little for the 10 ms clock ticks to tell.
    pub load_us: Option<f64>,
}

/// What the triggers and the readers did in one run.
pub struct Broadcast {
    /// When each trigger went out, and the same on the wall clock.
    pub sent: Vec<Instant>,
    pub sent_wall: Vec<u128>,
    pub subs: Vec<Sub>,
    pub cost: RunCost,
}

/// What one fan-out run saw.
struct Outcome {
    held: usize,
    refused: usize,
    /// Milliseconds, sorted.
    latencies: Vec<f64>,
    lost: u64,
    cost: RunCost,
}

pub fn tcp(ctx: &Ctx, n: usize, results: &mut Results) -> Result<(), String> {
    let mut writer = Helper::spawn(
        &["__fanout-writer".to_string(), n.to_string()],
        ctx.helper_core(),
    )?;
    let addr = writer.expect("listening ", Duration::from_secs(10))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("writer address {addr:?}: {e}"))?;
    let crowd = readers::open_many(
        Kind::Raw,
        addr,
        n,
        &ctx.progress,
        &format!("raw fan-out {n}"),
    );
    if crowd.subs.len() < n {
        return Err(format!(
            "only {} of {n} raw connections opened: {}",
            crowd.subs.len(),
            crowd.first_error.unwrap_or_default()
        ));
    }
    writer.expect("ready", Duration::from_secs(30))?;
    let mut run = broadcast(ctx, crowd.subs, |seq| writer.send(&format!("go {seq}")))?;
    let (mut loops, mut waits) = (Vec::new(), Vec::new());
    for _ in 0..ctx.sizes.events {
        let line = writer.expect("sent ", Duration::from_secs(5))?;
        let (seq, started, micros) =
            parse_sent(&line).ok_or(format!("the writer said {line:?}"))?;
        // The issue times the raw fan-out from the start of the loop: when
        // the previous loop was still running, the wait for it is left out.
        let wait = started.saturating_sub(run.sent_wall[seq]);
        let wait = Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX));
        run.sent[seq] += wait;
        waits.push(wait.as_secs_f64() * 1e3);
        loops.push(micros / 1e3);
    }
    loops.sort_by(f64::total_cmp);
    waits.sort_by(f64::total_cmp);
    let outcome = outcome(run, 0);
    add(ctx, results, Protocol::Raw, n, &outcome);
    let spec = |figure: &str, label: &str| {
        let label = format!("{n} subscribers: {label}");
        Spec::new(
            tcp::GROUP,
            format!("baseline/fanout/{n}/{figure}"),
            label,
            "ms",
        )
    };
    results.add(spec("loop", "the writer's loop"), percentile(&loops, 50.0));
    results.add(
        spec("wait", "from 'go' to the writer's loop"),
        percentile(&waits, 50.0),
    );
    Ok(())
}

/// `sent SEQ START LOOP` from the writer: the event, when its loop started
/// (wall clock, ns) and how long the loop took (µs).
fn parse_sent(line: &str) -> Option<(usize, u128, f64)> {
    let mut words = line.split_whitespace();
    let seq = words.next()?.parse().ok()?;
    let started = words.next()?.parse().ok()?;
    let micros = words.next()?.parse().ok()?;
    Some((seq, started, micros))
}

pub fn sse(ctx: &Ctx, n: usize, results: &mut Results) -> Result<(), String> {
    let outcome = server_fanout(ctx, Kind::Sse, n)?;
    add(ctx, results, Protocol::Sse, n, &outcome);
    Ok(())
}

pub fn ws(ctx: &Ctx, n: usize, results: &mut Results) -> Result<(), String> {
    let outcome = server_fanout(ctx, Kind::Ws, n)?;
    add(ctx, results, Protocol::Ws, n, &outcome);
    Ok(())
}

/// The server's cap for a fan-out of `n` (see the module comment).
pub fn cap(ctx: &Ctx, kind: Kind, n: usize) -> Option<usize> {
    match kind {
        _ if ctx.opts.url.is_some() => None,
        Kind::Sse => Some(ctx.default_cap.max(n + 64)),
        Kind::Ws | Kind::Raw => None,
    }
}

fn server_fanout(ctx: &Ctx, kind: Kind, n: usize) -> Result<Outcome, String> {
    let setup = Setup {
        max_connections: cap(ctx, kind, n),
        child: true,
        ..Setup::default()
    };
    let server = target::start(ctx, &setup)?;
    let what = format!(
        "{} {n}",
        if kind == Kind::Sse {
            "sse-fanout"
        } else {
            "ws-fanout"
        }
    );
    let mut crowd = readers::open_many(kind, server.addr, n, &ctx.progress, &what);
    if crowd.subs.is_empty() {
        return Err(format!(
            "no subscriber could connect ({} refused): {}",
            crowd.refused,
            crowd.first_error.unwrap_or_default()
        ));
    }
    if crowd.failed > 0 {
        ctx.note(format!(
            "{what}: {} connections failed (not 503): {}",
            crowd.failed,
            crowd.first_error.unwrap_or_default()
        ));
    }
    let mut http = open_trigger(server.addr, &mut crowd.subs)?;
    let run = broadcast(ctx, crowd.subs, |seq| http.trigger(&marker(seq)))?;
    Ok(outcome(run, crowd.refused))
}

/// A connection for the triggers. When the subscribers have filled the
/// server to its cap, one of them leaves to make room (and is not counted).
fn open_trigger(addr: SocketAddr, subs: &mut Vec<Sub>) -> Result<Http, String> {
    let mut made_room = false;
    for _ in 0..25 {
        let mut http = Http::connect(addr)?;
        match http.request("GET", "/stats", "") {
            Ok((200, _)) => return Ok(http),
            Ok((503, _)) | Err(_) => {
                if !made_room {
                    subs.pop();
                    made_room = true;
                }
                thread::sleep(Duration::from_millis(200));
            }
            Ok((status, text)) => return Err(format!("GET /stats answered {status}: {text}")),
        }
    }
    Err("the server had no room for the trigger connection".into())
}

/// Starts the readers, sends the triggers on schedule, waits for the
/// arrivals; returns when each trigger went out, and the subscribers.
/// (The cluster scenario measures its set-ups with it too.)
pub fn broadcast(
    ctx: &Ctx,
    subs: Vec<Sub>,
    mut trigger: impl FnMut(usize) -> Result<(), String>,
) -> Result<Broadcast, String> {
    let events = ctx.sizes.events;
    let pool = Pool::start(subs, events)?;
    let (counters, cpu) = (procs::net_counters(), procs::cpu_micros());
    thread::sleep(ctx.sizes.settle);
    let started = Instant::now();
    let (mut sent, mut sent_wall) = (Vec::with_capacity(events), Vec::with_capacity(events));
    for seq in 0..events {
        ctx.progress.detail(&format!(
            "{} subscribers: event {}/{events}",
            pool.held,
            seq + 1
        ));
        sent.push(Instant::now());
        sent_wall.push(procs::wall_nanos());
        if let Err(e) = trigger(seq) {
            pool.finish();
            return Err(e);
        }
        if seq + 1 < events {
            let next = started + ctx.sizes.gap * (seq as u32 + 1);
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
    pool.wait_for(0..events, Instant::now() + DRAIN);
    let subs = pool.finish();
    let arrivals: usize = subs.iter().map(|s| s.arrivals.len()).sum();
    let used = procs::cpu_micros().saturating_sub(cpu);
    let load_us = (used >= 200_000).then(|| used as f64 / arrivals.max(1) as f64);
    let cost = RunCost {
        net: procs::net_counters().since(counters),
        load_us,
    };
    Ok(Broadcast {
        sent,
        sent_wall,
        subs,
        cost,
    })
}

fn outcome(run: Broadcast, refused: usize) -> Outcome {
    let (sent, subs) = (&run.sent, &run.subs);
    let events = sent.len();
    let mut latencies: Vec<f64> = subs
        .iter()
        .flat_map(|sub| sub.arrivals.iter())
        .filter(|(seq, _)| *seq < events)
        .map(|(seq, at)| at.saturating_duration_since(sent[*seq]).as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let want = if events >= 64 {
        u64::MAX
    } else {
        (1u64 << events) - 1
    };
    let got: u64 = subs
        .iter()
        .map(|s| u64::from((s.got & want).count_ones()))
        .sum();
    Outcome {
        held: subs.len(),
        refused,
        lost: (subs.len() * events) as u64 - got,
        latencies,
        cost: run.cost,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Raw,
    Sse,
    Ws,
}

fn add(ctx: &Ctx, results: &mut Results, protocol: Protocol, n: usize, o: &Outcome) {
    let (name, group) = match protocol {
        Protocol::Raw => ("baseline/fanout", tcp::GROUP),
        Protocol::Sse => ("sse-fanout", "sse-fanout: GET /events, POST /trigger-event"),
        Protocol::Ws => (
            "ws-fanout",
            "ws-fanout: chat WebSockets on /ws, POST /trigger-event",
        ),
    };
    let spec = |figure: &str, label: &str, unit| {
        let spec = Spec::new(
            group,
            format!("{name}/{n}/{figure}"),
            format!("{n} subscribers: {label}"),
            unit,
        );
        match protocol {
            Protocol::Raw => spec,
            _ => spec.versus(format!("baseline/fanout/{n}/{figure}")),
        }
    };
    let p99_target = match (protocol, n) {
        (Protocol::Sse, 5_000) => Some(Target::RatioAtMost(3.0)),
        (Protocol::Sse, 10_000) => Some(Target::RatioAtMost(4.0)),
        _ => None,
    };
    results.add(
        spec("p50", "p50 latency", "ms"),
        percentile(&o.latencies, 50.0),
    );
    results.add(
        spec("p99", "p99 latency", "ms").target(p99_target),
        percentile(&o.latencies, 99.0),
    );
    results.add(
        spec("max", "max latency", "ms"),
        percentile(&o.latencies, 100.0),
    );
    let plain = |figure: &str, label: &str, unit| {
        Spec::new(
            group,
            format!("{name}/{n}/{figure}"),
            format!("{n} subscribers: {label}"),
            unit,
        )
    };
    results.add(
        plain("lost", "events lost", "events").target(Some(Target::Zero)),
        o.lost as f64,
    );
    if protocol != Protocol::Raw {
        let held_target = (protocol == Protocol::Sse).then_some(Target::AtLeast(n as f64));
        results.add(
            plain("held", "held", "conns").target(held_target),
            o.held as f64,
        );
    }
    if protocol == Protocol::Ws {
        results.add(plain("refused", "refused (503)", "conns"), o.refused as f64);
    }
    ctx.run_cost(name, n, o.cost);
}

/// How the fan-outs ran: the server, its caps, the clock, what they cost.
pub fn notes(ctx: &Ctx, results: &mut Results) {
    let s = ctx.opts.scenario;
    let servers = s.includes(Scenario::SseFanout) || s.includes(Scenario::WsFanout);
    if servers {
        let child = Setup {
            child: true,
            ..Setup::default()
        };
        let fresh = if ctx.opts.url.is_some() {
            ""
        } else {
            ", a fresh one for each rep"
        };
        results.note(format!(
            "fan-outs: the server ran {}{fresh}",
            target::placement(ctx, &child)
        ));
    }
    let cap = ctx.default_cap;
    if s.includes(Scenario::SseFanout) && ctx.opts.url.is_none() {
        let raised: Vec<String> = ctx
            .sizes
            .fanout
            .iter()
            .filter_map(|&n| {
                self::cap(ctx, Kind::Sse, n)
                    .filter(|&c| c != cap)
                    .map(|c| c.to_string())
            })
            .collect();
        if !raised.is_empty() {
            results.note(format!(
                "sse-fanout: the server's max_connections was raised from its default here ({cap}) to {}",
                raised.join(", ")
            ));
        }
    }
    if s.includes(Scenario::WsFanout) && ctx.opts.url.is_none() {
        results.note(format!(
            "ws-fanout: the server kept its own cap ({cap}: a chat WebSocket costs it 2 sockets and 2 threads); \
             clients past it got 503 (row 'refused'), and when it was full one subscriber left to make room \
             for the trigger connection; latency and losses are over those held"
        ));
    }
    results.note(format!(
        "fan-out latency: from just before the bench writes POST /trigger-event (for the raw fan-out: from \
         the start of the writer's loop, read from the wall clock both processes share) to the return of \
         the read() that brings the event, in the subscriber's own reader thread; {} events {} ms apart \
         per run",
        ctx.sizes.events,
        ctx.sizes.gap.as_millis()
    ));
    cost_notes(ctx, results);
}

/// The load's own cost, and what the network stack dropped, per fan-out.
fn cost_notes(ctx: &Ctx, results: &mut Results) {
    let costs = ctx.costs.lock().unwrap_or_else(|e| e.into_inner());
    let mut load = String::from(
        "the load's CPU time per arrival (a reader thread waking, reading, parsing), µs, median of the reps:",
    );
    let mut net = String::from(
        "packets the loopback dropped / TCP segments retransmitted during each rep, whole machine (a \
         retransmission delays its subscriber by 200 ms or more):",
    );
    // With --pin the load has one core: the most it can read per gap.
    let gap_ms = ctx.sizes.gap.as_secs_f64() * 1e3;
    let mut saturated = Vec::new();
    for ((name, n), runs) in costs.iter() {
        let mut us: Vec<f64> = runs.iter().filter_map(|c| c.load_us).collect();
        us.sort_by(f64::total_cmp);
        if !us.is_empty() {
            let us = percentile(&us, 50.0);
            load.push_str(&format!(" {name} {n}: {us:.1};"));
            let per_event_ms = us * *n as f64 / 1e3;
            if ctx.pinned && per_event_ms > 0.8 * gap_ms {
                saturated.push(format!("{name} {n}: {per_event_ms:.0} ms"));
            }
        }
        let counts: Vec<String> = runs
            .iter()
            .map(|c| format!("{}/{}", c.net.dropped, c.net.retransmitted))
            .collect();
        net.push_str(&format!(" {name} {n}: {};", counts.join(" ")));
    }
    if load.ends_with(';') {
        results.note(load.trim_end_matches(';').to_string());
    }
    results.note(net.trim_end_matches(';').to_string());
    if !saturated.is_empty() {
        results.note(format!(
            "--pin leaves the load one core, and at these sizes reading one event costs it nearly or more \
             than the {gap_ms:.0} ms between events ({} of CPU per event): arrivals queue in the load too, \
             so those latencies are bounded by the bench as much as by what it measures",
            saturated.join(", ")
        ));
    }
}
