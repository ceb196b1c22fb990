//! The page's scripts outside a browser: the parts of `public/` that run
//! under Node, for the exercises of lesson 13. These need `node` on the
//! `PATH`; the browser test (`tests/browser/run.sh`) drives the rest.

use std::process::Command;

use realtime_by_hand::json::{self, Json};

/// Runs a module script under Node from the repository's root and parses
/// the JSON it prints.
fn node(script: &str) -> Json {
    let output = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run node (this test needs Node.js on the PATH)");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    json::parse(&output.stdout).expect("node printed JSON")
}

/// Lesson 13's exercise: clients dropped at the same moment should not
/// all come back at the same moment. Fails until `backoffDelay` in
/// `public/ws-panel.js` stretches each wait by a random part, at most half
/// of it, like the Rust client's `Backoff` (lesson 14).
#[test]
#[ignore = "exercise (lesson 13): fails until backoffDelay has jitter; needs node"]
fn exercise_13_the_websocket_panel_backs_off_with_jitter() {
    let waits = node(
        "import { backoffDelay } from './public/ws-panel.js';
         const waits = [];
         for (let attempt = 1; attempt <= 5; attempt++) {
           for (let i = 0; i < 40; i++) waits.push([attempt, backoffDelay(attempt)]);
         }
         console.log(JSON.stringify(waits));",
    );
    let Json::Array(waits) = waits else {
        panic!("not a list: {waits}");
    };
    let mut spread = false;
    for pair in &waits {
        let (attempt, wait) = match pair {
            Json::Array(pair) => (pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap()),
            other => panic!("not a pair: {other}"),
        };
        let plain = 1000.0 * 2f64.powf(attempt - 1.0);
        assert!(
            (plain..=1.5 * plain).contains(&wait),
            "attempt {attempt}: {wait} ms, outside {plain}..{}",
            1.5 * plain
        );
        spread |= wait != plain;
    }
    assert!(spread, "every wait is the plain doubling: no jitter yet");
}
