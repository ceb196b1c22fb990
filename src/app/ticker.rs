//! The `periodic_update` event, every `--tick-secs`, on a thread of its own.

use std::sync::Arc;
use std::thread;

use super::App;
use crate::json;
use crate::time;

/// Starts the ticker thread (none with `--tick-secs 0`).
pub fn start_ticker(app: &Arc<App>) {
    let tick = app.config.tick;
    if tick.is_zero() {
        return;
    }
    let app = Arc::clone(app);
    let _ = thread::Builder::new()
        .name("ticker".into())
        .spawn(move || tick_forever(&app));
}

fn tick_forever(app: &App) {
    loop {
        thread::sleep(app.config.tick);
        let listeners = app.hub.subscriber_count() as u64;
        let data = json::object([
            ("type", "periodic_update".into()),
            (
                "message",
                format!("Periodic update: {listeners} clients connected").into(),
            ),
            ("timestamp", time::now_iso8601().into()),
            ("connections", listeners.into()),
        ]);
        // With a broker, every instance ticks into the one log (each
        // counting its own clients); while the broker is down a tick is
        // simply skipped.
        let _ = app.publish(None, &data.to_string());
    }
}
