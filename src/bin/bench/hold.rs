//! `hold`: many idle connections at once, and what they cost the server.
//!
//! The server runs as a child process, so its `/proc/PID/status` is its
//! own: memory per connection is the growth of its resident set (`VmRSS`)
//! from before the connections opened to after, once its thread count has
//! stood still, divided by the connections held; threads and open files
//! per connection likewise. (Kernel socket buffers are not part of a
//! process's resident set, and are not counted.) The load (the readers)
//! lives in the bench's process and costs the server nothing.
//!
//! The broadcasts come from a chat WebSocket, the publisher, opened first:
//! a chat connection is not waiting for a request, so the server cannot
//! close it to make room when it is full, as it may an idle HTTP one. For
//! SSE the cap is set to the streams plus the publisher, so that the
//! clients that come after them meet a full server: they must get 503
//! while every open stream still gets the next broadcast.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use realtime_by_hand::client::ws::{Received, WsClient};

use crate::procs::{self, ProcStatus};
use crate::readers::{self, Crowd, Kind, Opened, Pool};
use crate::report::{Results, Spec, Target};
use crate::target::{self, marker, trigger_body, Http, Setup, Target as Server};
use crate::Ctx;

const GROUP: &str = "hold: idle connections, server memory and threads";

/// How long a broadcast may take to reach every idle connection.
const REACH: Duration = Duration::from_secs(30);

/// The chat connection that publishes the broadcasts.
struct Publisher {
    client: WsClient,
}

impl Publisher {
    fn connect(addr: SocketAddr) -> Result<Publisher, String> {
        let mut client = WsClient::connect(&format!("ws://{addr}/ws"))
            .map_err(|e| format!("the publisher's WebSocket: {e}"))?;
        let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
        match client.receive() {
            Ok(Received::Text(_)) => Ok(Publisher { client }),
            other => Err(format!("the publisher got no welcome: {other:?}")),
        }
    }

    fn publish(&mut self, seq: usize) -> Result<(), String> {
        self.client
            .send_text(&trigger_body(&marker(seq)))
            .map_err(|e| format!("the publisher could not send: {e}"))
    }
}

/// The server's process status, once it has settled.
fn settled(pid: Option<u32>, limit: Duration) -> Option<ProcStatus> {
    pid.and_then(|pid| procs::settled(pid, limit))
}

/// Memory, threads and files per connection, as figures.
fn add_costs(
    results: &mut Results,
    name: &str,
    held: usize,
    costs: (Option<ProcStatus>, Option<ProcStatus>),
    kib_target: f64,
) {
    let (Some(before), Some(after)) = costs else {
        results.note(format!(
            "hold {name}: the server's process is unknown, so its memory is not reported"
        ));
        return;
    };
    let per = |a: u64, b: u64| (a as f64 - b as f64) / held.max(1) as f64;
    let what = if name == "sse" {
        "SSE stream"
    } else {
        "chat WebSocket"
    };
    let spec = |figure: &str, label: String, unit| {
        Spec::new(GROUP, format!("hold/{name}/{figure}"), label, unit)
    };
    results.add(
        spec("kib", format!("server memory per idle {what}"), "KiB")
            .target(Some(Target::AtMost(kib_target))),
        per(after.rss_kib, before.rss_kib),
    );
    results.add(
        spec("threads", format!("server threads per {what}"), "thr"),
        per(after.threads, before.threads),
    );
    results.add(
        spec("fds", format!("server open files per {what}"), "fds"),
        per(after.fds, before.fds),
    );
}

/// The connections opened, and the server's status before and after.
struct Held {
    crowd: Crowd,
    costs: (Option<ProcStatus>, Option<ProcStatus>),
}

/// Opens `n` idle connections of `kind`, measuring the server around it.
fn hold(ctx: &Ctx, server: &Server, kind: Kind, n: usize) -> Held {
    let what = if kind == Kind::Sse {
        "SSE streams"
    } else {
        "chat WebSockets"
    };
    let before = settled(server.pid, Duration::from_secs(10));
    let crowd = readers::open_many(
        kind,
        server.addr,
        n,
        &ctx.progress,
        &format!("hold: {n} {what}"),
    );
    let after = settled(server.pid, Duration::from_secs(30));
    if crowd.refused + crowd.failed > 0 {
        ctx.note(format!(
            "hold: of {n} {what}, {} were refused (503) and {} failed: {}",
            crowd.refused,
            crowd.failed,
            crowd.first_error.clone().unwrap_or_default()
        ));
    }
    Held {
        crowd,
        costs: (before, after),
    }
}

/// Clients that come when the server is full: how many got 503. `None`
/// when it is not full (a `--url` server with a higher cap).
fn past_cap(ctx: &Ctx, addr: SocketAddr, extra: usize) -> Option<usize> {
    let full = Http::connect(addr).and_then(|mut http| http.request("GET", "/stats", ""));
    if let Ok((200, stats)) = full {
        ctx.note(format!("hold: the server was not full after the streams opened, so past-cap was not tried: {stats}"));
        return None;
    }
    ctx.progress
        .detail(&format!("hold: {extra} more SSE clients past the cap"));
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..extra {
        match readers::open(Kind::Sse, addr) {
            Opened::Refused => refused += 1,
            Opened::Sub(sub) => admitted.push(*sub),
            Opened::Failed(_) => {}
        }
    }
    Some(refused)
}

pub fn sse(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let (n, extra) = (ctx.sizes.hold_sse, ctx.sizes.hold_extra);
    let setup = Setup {
        // The streams, and the publisher: a chat WebSocket, which takes two
        // slots (its reader and its writer thread).
        max_connections: ctx.opts.url.is_none().then_some(n + 2),
        child: true,
        ..Setup::default()
    };
    let server = target::start(ctx, &setup)?;
    let mut publisher = Publisher::connect(server.addr)?;
    let Held { crowd, costs } = hold(ctx, &server, Kind::Sse, n);
    let held = crowd.subs.len();
    let pool = Pool::start(crowd.subs, 2)?;
    publisher.publish(0)?;
    pool.wait_for(0..1, Instant::now() + REACH);
    let refused = past_cap(ctx, server.addr, extra);
    publisher.publish(1)?;
    pool.wait_for(1..2, Instant::now() + REACH);
    let reached = pool.count(0).min(pool.count(1));
    pool.finish();
    let spec = |figure: &str, label: String, unit| {
        Spec::new(GROUP, format!("hold/sse/{figure}"), label, unit)
    };
    let label = format!("SSE streams held (of {n})");
    results.add(
        spec("held", label, "conns").target(Some(Target::AtLeast(n as f64))),
        held as f64,
    );
    let label = "SSE streams a broadcast missed (of 2)".to_string();
    let missed = (held - reached.min(held)) as f64;
    results.add(
        spec("missed", label, "conns").target(Some(Target::Zero)),
        missed,
    );
    if let Some(refused) = refused {
        let label = format!("SSE clients past the cap answered 503 (of {extra})");
        let target = Some(Target::AtLeast(extra as f64));
        results.add(
            spec("past-cap", label, "conns").target(target),
            refused as f64,
        );
    }
    add_costs(results, "sse", held, costs, 12.0);
    Ok(())
}

pub fn ws(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let n = ctx.sizes.hold_ws;
    let setup = Setup {
        child: true,
        ..Setup::default()
    };
    let server = target::start(ctx, &setup)?;
    let mut publisher = Publisher::connect(server.addr)?;
    let Held { crowd, costs } = hold(ctx, &server, Kind::Ws, n);
    let held = crowd.subs.len();
    let pool = Pool::start(crowd.subs, 1)?;
    publisher.publish(0)?;
    pool.wait_for(0..1, Instant::now() + REACH);
    let reached = pool.count(0);
    pool.finish();
    let spec = |figure: &str, label: String, unit| {
        Spec::new(GROUP, format!("hold/ws/{figure}"), label, unit)
    };
    let label = format!("chat WebSockets held (of {n})");
    results.add(
        spec("held", label, "conns").target(Some(Target::AtLeast(n as f64))),
        held as f64,
    );
    let label = "chat WebSockets the broadcast missed".to_string();
    let missed = (held - reached.min(held)) as f64;
    results.add(
        spec("missed", label, "conns").target(Some(Target::Zero)),
        missed,
    );
    add_costs(results, "ws", held, costs, 32.0);
    Ok(())
}

/// How `hold` ran: the server, its cap, what memory per connection means.
pub fn notes(ctx: &Ctx, results: &mut Results) {
    if ctx.opts.url.is_some() {
        results.note(
            "hold with --url: the server is not fresh, and memory that earlier connections freed (thread \
             stacks, heap) is used again, so its growth understates what a connection costs; the cap is \
             its own, so past-cap is only tried when the streams fill it",
        );
        return;
    }
    results.note(format!(
        "hold: the server ran in a child process, a fresh one for each rep and protocol; for SSE its \
         max_connections was {} (the streams, and the publisher: a chat WebSocket takes two slots; its \
         default here is {}); memory per \
         connection = growth of the server process's VmRSS / connections held (kernel socket buffers \
         are not part of it)",
        ctx.sizes.hold_sse + 2,
        ctx.default_cap
    ));
}
