//! The raw TCP baselines: the least each exchange costs over loopback on
//! this machine, measured the same way as the server.
//!
//! The echo is shaped like a WebSocket echo of one message: the server side
//! reads the whole message, then writes it back (the client says the size
//! once, in 8 bytes, when it connects). A streaming echo, writing while it
//! reads, would move bytes both ways at once: faster, but no message-based
//! echo can do that, so it would not be the least *this* costs.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use realtime_by_hand::json;
use realtime_by_hand::sse::format::format_event;
use realtime_by_hand::time;

use crate::options::PING_BYTES;
use crate::procs::Helper;
use crate::report::{percentile, Results, Spec};
use crate::target::marker;
use crate::Ctx;

/// Largest message the echo accepts (a bad size header is refused).
const MAX_ECHO: u64 = 64 << 20;

/// Serves the echo until the process ends: a thread per connection.
pub fn serve_echo(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        thread::spawn(move || echo_one(stream));
    }
}

fn echo_one(mut stream: TcpStream) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut header = [0u8; 8];
    stream.read_exact(&mut header)?;
    let size = u64::from_le_bytes(header);
    if size == 0 || size > MAX_ECHO {
        return Ok(());
    }
    let mut message = vec![0u8; size as usize];
    loop {
        match stream.read_exact(&mut message) {
            Ok(()) => stream.write_all(&message)?,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The echo's server side: a thread here, or a child process.
pub struct EchoServer {
    pub addr: SocketAddr,
    _helper: Option<Helper>,
}

pub fn start_echo(ctx: &Ctx) -> Result<EchoServer, String> {
    if ctx.server_side_in_process() {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        thread::Builder::new()
            .name("tcp-echo".into())
            .spawn(move || serve_echo(listener))
            .map_err(|e| e.to_string())?;
        return Ok(EchoServer {
            addr,
            _helper: None,
        });
    }
    let helper = Helper::spawn(&["__tcp-echo".to_string()], ctx.helper_core())?;
    let addr = helper.expect("listening ", Duration::from_secs(10))?;
    Ok(EchoServer {
        addr: addr
            .parse()
            .map_err(|e| format!("helper address {addr:?}: {e}"))?,
        _helper: Some(helper),
    })
}

/// One message out and its echo back: what both the TCP and the
/// WebSocket clients do, so one driver times both.
pub trait Exchange {
    fn exchange(&mut self) -> Result<(), String>;
}

pub struct TcpEcho {
    stream: TcpStream,
    out: Vec<u8>,
    back: Vec<u8>,
}

impl TcpEcho {
    pub fn connect(addr: SocketAddr, size: usize) -> Result<TcpEcho, String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect to the TCP echo: {e}"))?;
        let _ = stream.set_nodelay(true);
        let timeout = Some(Duration::from_secs(30));
        let _ = stream.set_read_timeout(timeout);
        let _ = stream.set_write_timeout(timeout);
        stream
            .write_all(&(size as u64).to_le_bytes())
            .map_err(|e| e.to_string())?;
        Ok(TcpEcho {
            stream,
            out: vec![b'x'; size],
            back: vec![0; size],
        })
    }
}

impl Exchange for TcpEcho {
    fn exchange(&mut self) -> Result<(), String> {
        self.stream
            .write_all(&self.out)
            .and_then(|()| self.stream.read_exact(&mut self.back))
            .map_err(|e| format!("TCP echo: {e}"))
    }
}

/// Round trips: the rate over all connections, and each one's time.
pub struct RoundTrips {
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// `conns` clients, each doing `rounds` exchanges after a short warm-up,
/// all started together; the rate is every round trip over the wall time.
pub fn round_trips<C: Exchange>(
    connect: &(dyn Fn() -> Result<C, String> + Sync),
    conns: usize,
    rounds: usize,
) -> Result<RoundTrips, String> {
    let barrier = Barrier::new(conns + 1);
    let (wall, mut times) = thread::scope(|scope| {
        let clients: Vec<_> = (0..conns)
            .map(|_| {
                scope.spawn(|| {
                    let client = connect().and_then(|mut c| warm_up(&mut c, rounds).map(|()| c));
                    // Everyone reaches the barrier, even a client that failed.
                    barrier.wait();
                    let mut client = client?;
                    let mut times = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let started = Instant::now();
                        client.exchange()?;
                        times.push(started.elapsed().as_secs_f64() * 1e6);
                    }
                    Ok::<_, String>(times)
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let mut all = Vec::with_capacity(conns * rounds);
        for client in clients {
            all.extend(client.join().map_err(|_| "a client thread panicked")??);
        }
        Ok::<_, String>((started.elapsed(), all))
    })?;
    times.sort_by(f64::total_cmp);
    Ok(RoundTrips {
        rate: times.len() as f64 / wall.as_secs_f64(),
        p50_us: percentile(&times, 50.0),
        p99_us: percentile(&times, 99.0),
    })
}

/// Exchanges before timing starts: a twentieth of the rounds, and at
/// least 100 ms of them (CPU clocks and the scheduler settle), at most as
/// many as the rounds themselves.
fn warm_up<C: Exchange>(client: &mut C, rounds: usize) -> Result<(), String> {
    let started = Instant::now();
    for done in 0..rounds {
        if done >= rounds / 20 && started.elapsed() >= Duration::from_millis(100) {
            break;
        }
        client.exchange()?;
    }
    Ok(())
}

/// Echoes `count` messages one after another; MB/s (10^6 bytes) of
/// message echoed, counted once (not there and back).
pub fn bulk<C: Exchange>(client: &mut C, size: usize, count: usize) -> Result<f64, String> {
    client.exchange()?; // warm-up: buffers grown, pages touched
    let started = Instant::now();
    for _ in 0..count {
        client.exchange()?;
    }
    Ok((size * count) as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// "1 MiB", "64 KiB", "16 B".
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

pub const GROUP: &str = "baseline: raw TCP over loopback";

/// Adds a rate, p50 and p99 for `conns` connections under `group`/`name`.
pub fn add_round_trips(
    results: &mut Results,
    (group, name): (&str, &str),
    conns: usize,
    rounds: usize,
    measured: &RoundTrips,
    unit: &'static str,
) {
    let what = format!(
        "{conns} conn{} x {rounds} x {PING_BYTES} B",
        if conns == 1 { "" } else { "s" }
    );
    let base = |figure: &str| format!("baseline/ping-pong/{conns}/{figure}");
    let key = |figure: &str| format!("{name}/{conns}/{figure}");
    let spec = |figure: &str, label: String, unit| {
        let spec = Spec::new(group, key(figure), label, unit);
        if name == "baseline/ping-pong" {
            spec
        } else {
            spec.versus(base(figure))
        }
    };
    let target = crate::echo::rate_target(name, conns);
    results.add(
        spec("rate", format!("{what}: rate"), unit).target(target),
        measured.rate,
    );
    results.add(spec("p50", format!("{what}: p50"), "µs"), measured.p50_us);
    results.add(spec("p99", format!("{what}: p99"), "µs"), measured.p99_us);
}

/// Ping-pong of 32 B on one connection and on many.
pub fn pingpong(ctx: &Ctx, server: &EchoServer, results: &mut Results) -> Result<(), String> {
    let addr = server.addr;
    let sizes = &ctx.sizes;
    let connect = || TcpEcho::connect(addr, PING_BYTES);
    for (conns, rounds) in [(1, sizes.rounds_one), (sizes.many_conns, sizes.rounds_many)] {
        ctx.progress
            .detail(&format!("baseline ping-pong: {conns} conns x {rounds}"));
        let measured = round_trips(&connect, conns, rounds)?;
        add_round_trips(
            results,
            (GROUP, "baseline/ping-pong"),
            conns,
            rounds,
            &measured,
            "rt/s",
        );
    }
    Ok(())
}

/// The echo of the two bulk sizes.
pub fn echo(ctx: &Ctx, server: &EchoServer, results: &mut Results) -> Result<(), String> {
    for (size, count) in ctx.sizes.bulk {
        let mut client = TcpEcho::connect(server.addr, size)?;
        let mbps = bulk(&mut client, size, count)?;
        let label = format!("echo {} x {count}", size_label(size));
        results.add(
            Spec::new(GROUP, format!("baseline/echo/{size}/mbps"), label, "MB/s"),
            mbps,
        );
    }
    Ok(())
}

/// The bytes of fan-out event `seq`: the SSE block the server sends for a
/// `POST /trigger-event` of the same message (same fields, same size;
/// the id may differ by a digit).
pub fn fanout_event(seq: usize) -> Vec<u8> {
    let data = json::object([
        ("type", "notification".into()),
        ("message", marker(seq).into()),
        ("timestamp", time::now_iso8601().into()),
    ]);
    format_event(Some(seq as u64 + 1), None, &data.to_string())
}
