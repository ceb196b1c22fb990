//! `GET /stats`: the server's counts, as JSON.

use super::App;
use crate::json::{self, Json};

impl App {
    /// The body of `GET /stats`.
    pub fn stats(&self) -> Json {
        let count = |n: usize| Json::from(n as u64);
        json::object([
            ("sse_connections", count(self.sse_streams.get())),
            ("ws_connections", count(self.ws_connections.get())),
            ("events_sent", self.hub.last_id().into()),
            ("uptime_secs", self.started.elapsed().as_secs().into()),
            ("open_connections", count(self.open_connections.get())),
            ("max_connections", count(self.config.max_connections)),
            ("subscribers", count(self.hub.subscriber_count())),
            ("dropped_slow_subscribers", self.hub.dropped_count().into()),
            ("history", count(self.hub.history_len())),
            (
                "broker",
                self.broker
                    .as_ref()
                    .map_or(Json::Null, |broker| broker.stats(&self.hub)),
            ),
        ])
    }
}
