//! The bench as a script uses it: `bench all --quick --json --reps 1` runs
//! every scenario at a tiny size, and its JSON has every figure, each one
//! sane. No time is asserted: on a loaded machine everything is slower,
//! and that is all.
//!
//! `cluster` needs redis-server and nginx: without them it must say so and
//! succeed (tested always); with them (`cargo test --test bench --
//! --ignored`) its quick run must report every figure, and every stream
//! every event.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use realtime_by_hand::json::{self, Json};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

/// Runs the bench, killing it if it takes longer than `limit`.
fn run(args: &[&str], limit: Duration) -> (bool, String, String) {
    let (ok, out, err, _) = run_with(args, &[], limit);
    (ok, out, err)
}

/// The same with environment variables; also returns the bench's pid.
fn run_with(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (bool, String, String, u32) {
    let mut child = Command::new(BENCH)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the bench");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.is_some(),
        "the bench ran past {limit:?}; stderr:\n{err}"
    );
    (status.unwrap().success(), out, err, pid)
}

fn number(figure: &Json, field: &str) -> Option<f64> {
    figure.get(field).and_then(Json::as_f64)
}

/// Every key the quick run must report, by scenario.
fn expected_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let mut add = |prefix: String, figures: &[&str]| {
        keys.extend(figures.iter().map(|f| format!("{prefix}/{f}")));
    };
    for conns in [1, 10] {
        add(
            format!("baseline/ping-pong/{conns}"),
            &["rate", "p50", "p99"],
        );
        add(format!("ws-echo/{conns}"), &["rate", "p50", "p99"]);
    }
    for size in [65_536, 262_144] {
        add(format!("baseline/echo/{size}"), &["mbps"]);
        add(format!("ws-bulk/{size}"), &["mbps"]);
    }
    for n in [10, 20, 50, 100] {
        add(
            format!("baseline/fanout/{n}"),
            &["p50", "p99", "max", "lost", "loop", "wait"],
        );
        add(
            format!("sse-fanout/{n}"),
            &["p50", "p99", "max", "lost", "held"],
        );
        add(
            format!("ws-fanout/{n}"),
            &["p50", "p99", "max", "lost", "held", "refused"],
        );
    }
    add(
        "hold/sse".into(),
        &["held", "missed", "past-cap", "kib", "threads", "fds"],
    );
    add(
        "hold/ws".into(),
        &["held", "missed", "kib", "threads", "fds"],
    );
    for size in [16, 1024, 65_536] {
        add(
            format!("overhead/{size}"),
            &["sse-up", "sse-up-answer", "ws-up", "sse-down", "ws-down"],
        );
    }
    keys
}

/// Figures that must be above zero: rates, latencies, counts held, costs.
/// (The raw writer's wait for its last loop may be nothing at all.)
fn must_be_positive(key: &str) -> bool {
    let last = key.rsplit('/').next().unwrap_or("");
    !matches!(last, "lost" | "missed" | "refused" | "wait")
}

/// Figures that must be zero in every rep.
fn must_be_zero(key: &str) -> bool {
    let last = key.rsplit('/').next().unwrap_or("");
    matches!(last, "lost" | "missed")
}

#[test]
fn a_quick_run_reports_every_figure_sanely() {
    let (ok, out, err) = run(
        &["all", "--quick", "--json", "--reps", "1"],
        Duration::from_secs(300),
    );
    assert!(ok, "the bench failed; stderr:\n{err}");
    let report = json::parse(out.as_bytes()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let notes = report
        .get("notes")
        .map(|n| n.to_string())
        .unwrap_or_default();
    let Some(Json::Array(figures)) = report.get("figures") else {
        panic!("no figures:\n{out}");
    };
    let key_of = |f: &Json| {
        f.get("key")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    for key in expected_keys() {
        assert!(
            figures.iter().any(|f| key_of(f) == key),
            "no figure {key}; notes: {notes}"
        );
    }
    // `all` leaves the cluster out (see `Scenario::includes`).
    assert!(
        !figures.iter().any(|f| key_of(f).starts_with("cluster/")),
        "'all' ran the cluster"
    );
    for figure in figures {
        let key = key_of(figure);
        let (min, median, max) = (
            number(figure, "min"),
            number(figure, "median"),
            number(figure, "max"),
        );
        let (Some(min), Some(median), Some(max)) = (min, median, max) else {
            panic!("{key}: min/median/max missing: {figure}");
        };
        assert!(min.is_finite() && max.is_finite(), "{key}: {figure}");
        assert!(min <= median && median <= max, "{key}: {figure}");
        if must_be_positive(&key) {
            assert!(min > 0.0, "{key} must be above zero: {figure}");
        }
        if must_be_zero(&key) {
            assert_eq!(
                max, 0.0,
                "{key} must be 0 in every rep: {figure}; notes: {notes}"
            );
        }
        if figure.get("baseline").and_then(Json::as_f64).is_some() {
            let ratio = number(figure, "ratio").unwrap_or(f64::NAN);
            assert!(
                ratio.is_finite() && ratio > 0.0,
                "{key}: ratio {ratio}: {figure}"
            );
        }
    }
    // Everything held that was asked for, and the cap refused the rest.
    let median_of = |key: &str| {
        figures
            .iter()
            .find(|f| key_of(f) == key)
            .and_then(|f| number(f, "median"))
    };
    assert_eq!(median_of("hold/sse/held"), Some(100.0));
    assert_eq!(median_of("hold/sse/past-cap"), Some(5.0));
    assert_eq!(median_of("sse-fanout/100/held"), Some(100.0));
    // Bytes on the wire: always more than the message itself.
    for size in [16.0, 1024.0, 65_536.0] {
        for dir in ["sse-up", "ws-up", "sse-down", "ws-down"] {
            let bytes = median_of(&format!("overhead/{size}/{dir}")).unwrap();
            assert!(bytes > size, "overhead/{size}/{dir}: {bytes}");
        }
    }
}

#[test]
fn help_lists_the_scenarios_and_bad_input_is_refused() {
    let (ok, out, _) = run(&["--help"], Duration::from_secs(30));
    assert!(ok);
    for word in [
        "baseline",
        "ws-echo",
        "ws-bulk",
        "sse-fanout",
        "ws-fanout",
        "hold",
        "overhead",
        "cluster",
        "all",
        "--reps",
        "--json",
        "--quick",
        "--pin",
        "--url",
    ] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
    let (ok, _, err) = run(&["nonsense"], Duration::from_secs(30));
    assert!(!ok && err.contains("unknown scenario"), "{err}");
}

#[test]
fn the_cluster_without_redis_is_skipped_and_says_why() {
    let env = [("REDIS_SERVER", "/nonexistent/redis-server")];
    let args = ["cluster", "--quick", "--json", "--reps", "1"];
    let (ok, out, err, _) = run_with(&args, &env, Duration::from_secs(30));
    assert!(ok, "a skipped scenario is not a failure; stderr:\n{err}");
    let report = json::parse(out.as_bytes()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let notes = report
        .get("notes")
        .map(|n| n.to_string())
        .unwrap_or_default();
    assert!(
        notes
            .contains("skipped: needs redis-server and nginx (apt-get install redis-server nginx)"),
        "{notes}"
    );
    assert!(
        matches!(report.get("figures"), Some(Json::Array(f)) if f.is_empty()),
        "{out}"
    );
}

/// The processes whose command line or working directory names `text`:
/// the cluster's temporary directory is in nginx's command line, and
/// redis-server, which renames itself, works in it (`--dir`).
fn processes_naming(text: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
            (cmdline.contains(text) || cwd.to_string_lossy().contains(text)).then_some(cmdline)
        })
        .collect()
}

#[test]
#[ignore = "needs redis-server and nginx (apt-get install redis-server nginx)"]
fn a_quick_cluster_run_delivers_every_event_in_order() {
    let args = ["cluster", "--quick", "--json", "--reps", "1"];
    let (ok, out, err, pid) = run_with(&args, &[], Duration::from_secs(120));
    assert!(ok, "the bench failed; stderr:\n{err}");
    let report = json::parse(out.as_bytes()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let notes = report
        .get("notes")
        .map(|n| n.to_string())
        .unwrap_or_default();
    assert!(
        !notes.contains("skipped"),
        "redis-server or nginx is missing: {notes}"
    );
    let Some(Json::Array(figures)) = report.get("figures") else {
        panic!("no figures:\n{out}");
    };
    let value = |key: &str, field: &str| {
        figures
            .iter()
            .find(|f| f.get("key").and_then(Json::as_str) == Some(key))
            .and_then(|f| number(f, field))
            .unwrap_or_else(|| panic!("no figure {key}; notes: {notes}"))
    };
    for setup in ["single", "broker", "nginx"] {
        let key = |figure: &str| format!("cluster/100x3/{setup}/{figure}");
        for figure in ["p50", "p99", "max", "done-p50"] {
            assert!(value(&key(figure), "min") > 0.0, "{}", key(figure));
        }
        assert_eq!(value(&key("held"), "min"), 300.0, "{setup}; notes: {notes}");
        for figure in ["lost", "id-faults", "ticks"] {
            assert_eq!(
                value(&key(figure), "max"),
                0.0,
                "{}; notes: {notes}",
                key(figure)
            );
        }
        value(&key("retransmitted"), "max");
    }
    for figure in ["on-a-p50", "across-p50", "on-a-p99", "across-p99"] {
        assert!(value(&format!("cluster/100x3/broker/{figure}"), "min") > 0.0);
    }
    for hop in ["hop-redis", "hop-proxy"] {
        for figure in ["p50", "p99", "done-p50"] {
            // A difference: any sign, but a number.
            assert!(value(&format!("cluster/100x3/{hop}/{figure}"), "min").is_finite());
        }
    }
    value("cluster/100x3/nginx/spread", "max");
    // Everything it started has stopped, and its directory is gone.
    let dir = format!("rbh-bench-cluster-{pid}-");
    assert_eq!(processes_naming(&dir), Vec::<String>::new());
    let left = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&dir));
    assert!(!left, "the temporary directory {dir}* is still there");
}
