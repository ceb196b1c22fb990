//! `cluster`: one broadcast to 3 × 1,000 SSE streams, measured three ways
//! in every rep, so that what each hop costs is the difference between
//! two figures taken minutes apart at most, on the same machine:
//!
//! 1. `single`: one instance, no broker, all 3,000 streams on it. The
//!    baseline: the same fan-out as `sse-fanout` at 3,000.
//! 2. `broker`: three instances started with `--broker redis://…` (a
//!    redis-server of the bench's own), 1,000 streams straight to each,
//!    and the POSTs to instance A: a third of the streams are on the
//!    instance that took the POST, two thirds across instances. An event
//!    goes POST → A → Redis (whose script hands out the id) → each
//!    instance's reader, blocked in `XREAD BLOCK` → its hub → its fan-out
//!    thread → its 1,000 sockets.
//! 3. `nginx`: the same three instances behind nginx (the configuration
//!    in `tests/cluster/nginx.conf`). The 3,000 streams connect to nginx,
//!    whose round robin spreads them over the three, and so do the POSTs.
//!    One more hop each way: nginx's one worker reads each event from
//!    each instance's sockets and writes it again, as a chunk, to each
//!    client's.
//!
//! The Redis hop is set-up 2 minus set-up 1, the proxy hop 3 minus 2,
//! taken rep by rep. Latency is measured as in `sse-fanout`
//! (`fanout::broadcast`): from just before the bench writes the POST to
//! the return of the `read()` that brings the event; "fan-out complete"
//! is, for each event, the time until the last stream had it.
//!
//! Each set-up also checks what the cluster promises (lessons/contract.md,
//! "The cluster: --broker"): every stream gets every event (`lost`), under
//! ids that follow one another from the welcome's `id:` on, each once, and
//! the same id for an event on every instance (`id faults`); and nothing
//! else arrives: the instances run with `--tick-secs 0`, so a
//! `periodic_update` (`ticks`) would be a mistake of the set-up.
//!
//! Processes, fresh for every rep: the instances are `bench __serve`, as
//! in the fan-outs; redis-server and nginx are outside programs, found,
//! started and stopped by `outside.rs`. All on free loopback ports, their
//! files in a temporary directory that is removed after.

use realtime_by_hand::json;
use realtime_by_hand::random::random_u64;

use crate::fanout::{self, Broadcast};
use crate::outside::{self, Programs, TempDir};
use crate::readers::{self, Kind, Sub, MAX_EVENTS};
use crate::report::{percentile, Results, Spec, Target};
use crate::target::{self, marker, Http, Setup, Target as Server};
use crate::Ctx;

/// The instances of set-ups 2 and 3, in the order they start.
const NAMES: [&str; 3] = ["A", "B", "C"];

/// The three ways of serving the same streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetUp {
    Single,
    Broker,
    Nginx,
}

impl SetUp {
    /// In the figures' keys: `cluster/1000x3/broker/p99`.
    fn key(self) -> &'static str {
        match self {
            SetUp::Single => "single",
            SetUp::Broker => "broker",
            SetUp::Nginx => "nginx",
        }
    }

    fn group(self, per: usize) -> String {
        let n = 3 * per;
        let what = match self {
            SetUp::Single => format!("1. one instance, no broker, {n} streams on it"),
            SetUp::Broker => format!(
                "2. three instances, --broker (Redis), {per} streams on each, the POST to A"
            ),
            SetUp::Nginx => "3. the same three behind nginx: streams and POSTs through it".into(),
        };
        format!("cluster 3 x {per}: {what}")
    }

    /// The set-up one hop shorter, which this one's ratios compare with.
    fn shorter(self) -> Option<SetUp> {
        match self {
            SetUp::Single => None,
            SetUp::Broker => Some(SetUp::Single),
            SetUp::Nginx => Some(SetUp::Broker),
        }
    }
}

fn key(per: usize, part: &str, figure: &str) -> String {
    format!("cluster/{per}x3/{part}/{figure}")
}

/// Ids that were not as the cluster promises, counted over all streams.
#[derive(Debug, Default, Clone, Copy)]
struct Faults {
    /// Ids passed over: the next id after the last one was not the next.
    skipped: u64,
    /// Events that came again, or with an id not after the last one.
    repeated: u64,
    /// Events whose id differed from the one another stream saw them under.
    mismatched: u64,
}

impl Faults {
    fn total(self) -> u64 {
        self.skipped + self.repeated + self.mismatched
    }
}

/// What one set-up measured in one rep.
#[derive(Debug, Default)]
struct Measured {
    /// Milliseconds from the POST to each arrival, sorted.
    latencies: Vec<f64>,
    /// For each event, milliseconds from its POST until the last stream
    /// had it, sorted.
    completion: Vec<f64>,
    /// The latencies by the instance a stream was opened on (set-up 2;
    /// elsewhere all are under 0), sorted.
    on: [Vec<f64>; 3],
    held: usize,
    lost: u64,
    faults: Faults,
    ticks: usize,
    /// TCP segments the whole machine retransmitted meanwhile.
    retransmitted: u64,
}

/// Runs the scenario, or notes why it cannot.
pub fn run(ctx: &Ctx, results: &mut Results) {
    let programs = match Programs::find() {
        Ok(programs) => programs,
        Err(missing) => {
            results.note(format!(
                "cluster: skipped: needs redis-server and nginx (apt-get install redis-server nginx); \
                 {missing}"
            ));
            return;
        }
    };
    if ctx.opts.url.is_some() {
        results.note("cluster: --url does not apply: the scenario starts its own instances");
    }
    for &per in &ctx.sizes.cluster {
        crate::repeat(ctx, results, &format!("cluster 3 x {per}"), |r| {
            rep(ctx, &programs, per, r)
        });
    }
}

/// One rep: the three set-ups one after the other, then their figures.
fn rep(ctx: &Ctx, programs: &Programs, per: usize, results: &mut Results) -> Result<(), String> {
    let single = single(ctx, per)?;
    // Declared before the cluster, so dropped after it: the processes
    // stop before their directory goes.
    let dir = TempDir::new("cluster")?;
    let cluster = Cluster::start(ctx, programs, &dir, per)?;
    let broker = cluster.direct(ctx, per)?;
    cluster.wait_until_idle(ctx);
    let (nginx, spread) = cluster.through_nginx(ctx, programs, &dir, per)?;
    drop(cluster);
    let all = [
        (SetUp::Single, &single),
        (SetUp::Broker, &broker),
        (SetUp::Nginx, &nginx),
    ];
    for (setup, m) in all {
        add_times(results, per, setup, m);
        if setup == SetUp::Broker {
            add_sides(results, per, m);
        }
    }
    add_hops(results, per, [&single, &broker, &nginx]);
    for (setup, m) in all {
        add_checks(ctx, results, per, setup, m);
    }
    add_spread(ctx, results, per, spread);
    Ok(())
}

/// Set-up 1: one instance without a broker, all `3 × per` streams on it.
fn single(ctx: &Ctx, per: usize) -> Result<Measured, String> {
    let server = instance(ctx, 3 * per, None)?;
    let subs = subscribe(ctx, server.addr, 3 * per, 0, "cluster 1: one instance")?;
    let mut http = Http::connect(server.addr)?;
    measure(ctx, subs, |seq| http.trigger(&marker(seq)))
}

/// An instance, `bench __serve --tick-secs 0` (as `target::child` starts
/// every server: no `periodic_update`), with room for `streams` streams.
fn instance(ctx: &Ctx, streams: usize, broker: Option<String>) -> Result<Server, String> {
    let setup = Setup {
        max_connections: Some(ctx.default_cap.max(streams + 64)),
        child: true,
        broker,
        ..Setup::default()
    };
    target::child(ctx, &setup)
}

/// `n` streams on `addr`, each marked as opened on instance `on`.
fn subscribe(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    n: usize,
    on: usize,
    what: &str,
) -> Result<Vec<Sub>, String> {
    let crowd = readers::open_many(Kind::Sse, addr, n, &ctx.progress, what);
    if crowd.subs.is_empty() {
        return Err(format!(
            "{what}: no stream could connect ({} refused): {}",
            crowd.refused,
            crowd.first_error.unwrap_or_default()
        ));
    }
    if crowd.subs.len() < n {
        ctx.note(format!(
            "{what}: {} of {n} streams could not connect ({} refused): {}",
            n - crowd.subs.len(),
            crowd.refused,
            crowd.first_error.unwrap_or_default()
        ));
    }
    let mut subs = crowd.subs;
    for sub in &mut subs {
        sub.on = on;
    }
    Ok(subs)
}

/// The broadcast of `sse-fanout`, then what it saw.
fn measure(
    ctx: &Ctx,
    subs: Vec<Sub>,
    trigger: impl FnMut(usize) -> Result<(), String>,
) -> Result<Measured, String> {
    let run = fanout::broadcast(ctx, subs, trigger)?;
    Ok(measured(&run))
}

fn measured(run: &Broadcast) -> Measured {
    let events = run.sent.len();
    let want = if events >= MAX_EVENTS {
        u64::MAX
    } else {
        (1u64 << events) - 1
    };
    let mut m = Measured {
        held: run.subs.len(),
        retransmitted: run.cost.net.retransmitted,
        faults: faults(run.subs.iter().map(|s| (s.first_id, &s.ids[..]))),
        completion: vec![0.0; events],
        ..Measured::default()
    };
    for sub in &run.subs {
        for &(seq, at) in sub.arrivals.iter().filter(|(seq, _)| *seq < events) {
            let ms = at.saturating_duration_since(run.sent[seq]).as_secs_f64() * 1e3;
            m.latencies.push(ms);
            m.on[sub.on.min(2)].push(ms);
            m.completion[seq] = m.completion[seq].max(ms);
        }
        m.lost += events as u64 - u64::from((sub.got & want).count_ones());
        m.ticks += sub.ticks;
    }
    m.latencies.sort_by(f64::total_cmp);
    m.completion.sort_by(f64::total_cmp);
    for side in &mut m.on {
        side.sort_by(f64::total_cmp);
    }
    m
}

/// A stream's ids: its welcome's, then (event, id) as they came.
type Stream<'a> = (Option<u64>, &'a [(usize, u64)]);

/// Counts the ids that skip, repeat or disagree, stream by stream: each
/// stream's ids (its welcome's `id:`, then each event's marker and `id:`,
/// as they came) must go up by one, and an event must have one id
/// everywhere (the first stream that saw it decides).
fn faults<'a>(streams: impl Iterator<Item = Stream<'a>>) -> Faults {
    let mut faults = Faults::default();
    let mut id_of: Vec<Option<u64>> = vec![None; MAX_EVENTS];
    for (first_id, ids) in streams {
        let (mut last, mut seen) = (first_id, 0u64);
        for &(seq, id) in ids {
            let bit = 1u64.checked_shl(seq as u32).unwrap_or(0);
            if seen & bit != 0 || last.is_some_and(|last| id <= last) {
                faults.repeated += 1;
            } else if let Some(last) = last {
                faults.skipped += id - last - 1;
            }
            seen |= bit;
            last = Some(last.map_or(id, |last| last.max(id)));
            if let Some(first) = id_of.get_mut(seq) {
                match *first {
                    None => *first = Some(id),
                    Some(other) if other != id => faults.mismatched += 1,
                    Some(_) => {}
                }
            }
        }
    }
    faults
}

/// Redis and the three instances that share it, for set-ups 2 and 3.
struct Cluster {
    // Dropped in this order: the instances before the Redis they read.
    instances: Vec<Server>,
    _redis: outside::Redis,
}

impl Cluster {
    fn start(ctx: &Ctx, programs: &Programs, dir: &TempDir, per: usize) -> Result<Cluster, String> {
        let redis = outside::start_redis(&programs.redis, dir, ctx.helper_core())?;
        // This Redis is the bench's alone; the prefix says in every key
        // who wrote it all the same.
        let prefix = format!("bench-{}-{:08x}", std::process::id(), random_u64() as u32);
        let url = redis.url(&prefix);
        // Room for every stream on each: round robin may spread unevenly.
        let instances = (0..NAMES.len())
            .map(|_| instance(ctx, 3 * per, Some(url.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cluster {
            instances,
            _redis: redis,
        })
    }

    /// Set-up 2: `per` streams straight to each instance, the POSTs to A.
    fn direct(&self, ctx: &Ctx, per: usize) -> Result<Measured, String> {
        let mut subs = Vec::new();
        for (i, server) in self.instances.iter().enumerate() {
            let what = format!("cluster 2: on {}", NAMES[i]);
            subs.extend(subscribe(ctx, server.addr, per, i, &what)?);
        }
        let mut http = Http::connect(self.instances[0].addr)?;
        measure(ctx, subs, |seq| http.trigger(&marker(seq)))
    }

    /// Set-up 3: nginx in front; `3 × per` streams and the POSTs through
    /// it. Also returns how many streams each instance got.
    fn through_nginx(
        &self,
        ctx: &Ctx,
        programs: &Programs,
        dir: &TempDir,
        per: usize,
    ) -> Result<(Measured, [u64; 3]), String> {
        let ports = [0, 1, 2].map(|i| self.instances[i].addr.port());
        // Two connections per stream: the client's, and nginx's own.
        let files = 2 * 3 * per + 64;
        let nginx = outside::start_nginx(&programs.nginx, dir, ports, files, ctx.helper_core())?;
        let subs = subscribe(ctx, nginx.addr, 3 * per, 0, "cluster 3: through nginx")?;
        let spread = self.streams_on_each()?;
        let mut http = Http::connect(nginx.addr)?;
        // nginx stops when this returns, after the streams have closed.
        let measured = measure(ctx, subs, |seq| http.trigger(&marker(seq)))?;
        Ok((measured, spread))
    }

    /// The open `GET /events` streams of each instance (`/stats`).
    fn streams_on_each(&self) -> Result<[u64; 3], String> {
        let mut counts = [0; 3];
        for (count, server) in counts.iter_mut().zip(&self.instances) {
            let (_, body) = Http::connect(server.addr)?.request("GET", "/stats", "")?;
            let stats = json::parse(body.as_bytes()).map_err(|e| format!("/stats: {e}"))?;
            *count = stats
                .get("sse_connections")
                .and_then(|v| v.as_f64())
                .ok_or("/stats has no sse_connections")? as u64;
        }
        Ok(counts)
    }

    /// Waits until set-up 2's streams have closed on every instance (each
    /// notices within about a second), so that set-up 3 starts clean.
    fn wait_until_idle(&self, ctx: &Ctx) {
        for _ in 0..100 {
            match self.streams_on_each() {
                Ok(counts) if counts == [0; 3] => return,
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                Err(e) => return ctx.note(format!("cluster: between set-ups 2 and 3: {e}")),
            }
        }
        ctx.note("cluster: set-up 2's streams were still open on an instance 10 s later".into());
    }
}

/// Latency and completion of one set-up, against the set-up one hop shorter.
fn add_times(results: &mut Results, per: usize, setup: SetUp, m: &Measured) {
    let group = setup.group(per);
    let spec = |figure: &str, label: &str| {
        let spec = Spec::new(&group, key(per, setup.key(), figure), label, "ms");
        match setup.shorter() {
            Some(shorter) => spec.versus(key(per, shorter.key(), figure)),
            None => spec,
        }
    };
    // (The slowest event's fan-out completes with the max latency.)
    let rows: [(&str, &str, &[f64], f64); 4] = [
        ("p50", "p50 latency", &m.latencies, 50.0),
        ("p99", "p99 latency", &m.latencies, 99.0),
        ("max", "max latency", &m.latencies, 100.0),
        (
            "done-p50",
            "fan-out complete, median event",
            &m.completion,
            50.0,
        ),
    ];
    for (figure, label, values, p) in rows {
        results.add(spec(figure, label), percentile(values, p));
    }
}

/// Set-up 2 by side: the streams on A, which took the POST, and those on
/// B and C, which had it from Redis only.
fn add_sides(results: &mut Results, per: usize, m: &Measured) {
    let group = SetUp::Broker.group(per);
    let near = &m.on[0];
    let mut across: Vec<f64> = m.on[1].iter().chain(&m.on[2]).copied().collect();
    across.sort_by(f64::total_cmp);
    for p in [50.0, 99.0] {
        let near_key = key(per, "broker", &format!("on-a-p{p}"));
        let near_label = format!("streams on A (took the POST): p{p}");
        results.add(
            Spec::new(&group, near_key.clone(), near_label, "ms"),
            percentile(near, p),
        );
        let label = format!("streams on B, C (across instances): p{p}");
        let spec = Spec::new(
            &group,
            key(per, "broker", &format!("across-p{p}")),
            label,
            "ms",
        );
        results.add(spec.versus(near_key), percentile(&across, p));
    }
}

/// A figure of a set-up, as its hop rows take it.
type Figure = fn(&Measured) -> f64;

/// What each hop costs: per rep, one set-up's figure minus the shorter one's.
fn add_hops(results: &mut Results, per: usize, [single, broker, nginx]: [&Measured; 3]) {
    let group = format!(
        "cluster 3 x {per}: the cost of each hop (in each rep, the longer set-up's figure minus the \
         shorter's)"
    );
    let figures: [(&str, &str, Figure); 3] = [
        ("p50", "p50 latency", |m| percentile(&m.latencies, 50.0)),
        ("p99", "p99 latency", |m| percentile(&m.latencies, 99.0)),
        ("done-p50", "fan-out complete, median event", |m| {
            percentile(&m.completion, 50.0)
        }),
    ];
    let hops = [
        ("hop-redis", "Redis hop (2 - 1)", broker, single),
        ("hop-proxy", "proxy hop (3 - 2)", nginx, broker),
    ];
    for (part, hop, longer, shorter) in hops {
        for (figure, label, value) in figures {
            let spec = Spec::new(
                &group,
                key(per, part, figure),
                format!("{hop}: {label}"),
                "ms",
            );
            results.add(spec, value(longer) - value(shorter));
        }
    }
}

/// The promises, per set-up: every stream held, every event received,
/// ids in order, no ticks; and what the network stack resent meanwhile.
fn add_checks(ctx: &Ctx, results: &mut Results, per: usize, setup: SetUp, m: &Measured) {
    let group = format!("cluster 3 x {per}: checks (every stream, every event, ids in order)");
    let name = match setup {
        SetUp::Single => "1 single",
        SetUp::Broker => "2 broker",
        SetUp::Nginx => "3 nginx",
    };
    let spec = |figure: &str, label: &str, unit, target| {
        Spec::new(
            &group,
            key(per, setup.key(), figure),
            format!("{name}: {label}"),
            unit,
        )
        .target(target)
    };
    let n = (3 * per) as f64;
    let rows = [
        (
            "held",
            "streams held",
            "conns",
            Some(Target::AtLeast(n)),
            m.held as f64,
        ),
        (
            "lost",
            "events lost",
            "events",
            Some(Target::Zero),
            m.lost as f64,
        ),
        (
            "id-faults",
            "id faults (gaps, repeats, mismatches)",
            "ids",
            Some(Target::Zero),
            m.faults.total() as f64,
        ),
        (
            "ticks",
            "periodic_update received",
            "events",
            Some(Target::Zero),
            m.ticks as f64,
        ),
        (
            "retransmitted",
            "TCP segments resent (whole machine)",
            "segs",
            None,
            m.retransmitted as f64,
        ),
    ];
    for (figure, label, unit, target, value) in rows {
        results.add(spec(figure, label, unit, target), value);
    }
    let f = m.faults;
    if f.total() > 0 {
        ctx.note(format!(
            "cluster 3 x {per}, {name}: {} ids skipped, {} events repeated, {} under another id than elsewhere",
            f.skipped, f.repeated, f.mismatched
        ));
    }
}

/// How nginx's round robin spread set-up 3's streams.
fn add_spread(ctx: &Ctx, results: &mut Results, per: usize, spread: [u64; 3]) {
    let group = format!("cluster 3 x {per}: checks (every stream, every event, ids in order)");
    let most = spread.iter().max().copied().unwrap_or(0);
    let fewest = spread.iter().min().copied().unwrap_or(0);
    let label = "3 nginx: streams per instance, most minus fewest";
    let spec = Spec::new(&group, key(per, "nginx", "spread"), label, "conns");
    results.add(spec, (most - fewest) as f64);
    ctx.note(format!(
        "cluster 3 x {per}: nginx put {} / {} / {} streams on A / B / C",
        spread[0], spread[1], spread[2]
    ));
}

/// How the scenario ran, under the table; nothing when it did not run.
pub fn notes(ctx: &Ctx, results: &mut Results) {
    if !results
        .figures
        .iter()
        .any(|f| f.spec.key.starts_with("cluster/"))
    {
        return;
    }
    let placed = if ctx.pinned {
        "all on core 0 (--pin), the load on core 1"
    } else {
        "sharing the cores with the load"
    };
    results.note(format!(
        "cluster: every rep starts its own processes on free loopback ports, {placed}: one instance \
         for set-up 1; then a redis-server (--save '' --appendonly no, in a temporary directory), three \
         instances with --broker redis://127.0.0.1:PORT/PREFIX, and for set-up 3 nginx \
         (tests/cluster/nginx.conf); the set-ups run one after the other, 1, 2, 3. The instances are \
         bench __serve --tick-secs 0, their max_connections raised to fit"
    ));
    results.note(format!(
        "cluster latency: as in sse-fanout, from just before the bench writes POST /trigger-event to \
         the read() that brings the event; 'fan-out complete': for each event, until the last stream \
         had it (the median of {} events {} ms apart; the slowest one's is the max latency). With --broker, the POST is \
         answered once the event has come back from Redis to the instance that took it",
        ctx.sizes.events,
        ctx.sizes.gap.as_millis()
    ));
    results.note(
        "cluster ratios: set-up 2 against set-up 1, set-up 3 against set-up 2 (one hop each), the \
         streams across instances against those on A. The hop rows are differences taken within each \
         rep: their median is not quite the difference of the medians, and noise can make one negative",
    );
    results.note(
        "cluster checks: 'lost' counts (stream, event) pairs that never arrived; 'id faults' the ids \
         that skip (from the welcome's id: on), repeat, or differ for one event between streams; \
         'periodic_update received' must be 0, the instances running with --tick-secs 0",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(streams: &[Stream]) -> (u64, u64, u64) {
        let f = faults(streams.iter().copied());
        (f.skipped, f.repeated, f.mismatched)
    }

    #[test]
    fn ids_must_follow_one_another_once_and_agree() {
        // Welcome at 7, events 0, 1, 2 under 8, 9, 10, on two streams.
        let good: &[(usize, u64)] = &[(0, 8), (1, 9), (2, 10)];
        assert_eq!(count(&[(Some(7), good), (Some(7), good)]), (0, 0, 0));
        // Id 9 passed over (event 1 lost, which `lost` counts too).
        assert_eq!(count(&[(Some(7), &[(0, 8), (2, 10)])]), (1, 0, 0));
        // The first event is not the one after the welcome's id.
        assert_eq!(count(&[(Some(5), good)]), (2, 0, 0));
        // Event 1 twice.
        assert_eq!(
            count(&[(Some(7), &[(0, 8), (1, 9), (1, 9), (2, 10)])]),
            (0, 1, 0)
        );
        // Another stream saw the same events under other ids.
        assert_eq!(
            count(&[(Some(7), good), (Some(8), &[(0, 9), (1, 10), (2, 11)])]),
            (0, 0, 3)
        );
    }
}
