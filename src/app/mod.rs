//! The application: what this server does with the protocols below it.
//!
//! [`App`] is the state every connection thread shares (the configuration,
//! the hub, the inspector, the counts); each endpoint is one file:
//!
//! | file | endpoint |
//! | --- | --- |
//! | [`events`] | `GET /events`, one SSE stream fed by the hub |
//! | [`fanout`] | one thread writing each event to every SSE stream |
//! | [`trigger`] | `POST /trigger-event`, a posted event broadcast to all |
//! | [`upgrade`] | the WebSocket handshake, then [`chat`] or [`echo`] |
//! | [`chat`] | the chat on `/` and `/ws`: one hub for both protocols |
//! | [`echo`] | `/echo`: every message comes back |
//! | [`inspector_feed`] | `GET /inspect`, the frame inspector's stream |
//! | [`ticker`] | the `periodic_update` event |
//! | [`stats`] | `GET /stats` |
//! | [`policy`] | whom the server answers: the `Host` and `Origin` rules |
//! | [`broker`] | `--broker`: one event log for several instances, in Redis |
//!
//! The server (`server/`) reads requests and calls these; they call down
//! into `hub`, `inspect`, `sse/`, `websocket/` and `http/`, never up.

pub mod broker;
pub mod chat;
pub mod echo;
pub mod events;
pub mod fanout;
pub mod inspector_feed;
pub mod policy;
pub mod stats;
pub mod ticker;
pub mod trigger;
pub mod upgrade;

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::budget::Budget;
use crate::config::Config;
use crate::http::{BodyLimits, HeadLimits};
use crate::hub::{Hub, Published};
use crate::inspect::Inspector;
use crate::redis::RedisUrl;
use broker::{Broker, PublishError};
use fanout::Fanout;

/// State every connection thread shares.
pub struct App {
    pub config: Config,
    pub hub: Arc<Hub>,
    /// With `--broker`: where events are published, and where the hub's
    /// events come from.
    pub broker: Option<Broker>,
    pub inspector: Arc<Inspector>,
    /// The SSE streams the fan-out thread writes to.
    pub fanout: Fanout,
    /// Bytes of partly received messages and bodies, all connections
    /// together (`--max-buffered-bytes`).
    pub budget: Budget,
    /// `config.public_dir`, canonicalized once at start.
    pub public_root: PathBuf,
    pub started: Instant,
    /// TCP connections being served (not counting refused ones).
    pub open_connections: Counter,
    pub sse_streams: Counter,
    pub ws_connections: Counter,
    /// Chat connections' writer threads: each takes a slot of the cap too.
    pub writer_threads: Counter,
    next_connection_id: AtomicU64,
}

impl App {
    /// Fails when the public directory does not exist, or the broker
    /// cannot be reached (unless `--broker-optional`).
    pub fn new(config: Config) -> io::Result<App> {
        let public_root = std::fs::canonicalize(&config.public_dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("public directory {}: {e}", config.public_dir.display()),
            )
        })?;
        let hub = Hub::new(config.history, config.queue);
        let broker = match &config.broker {
            None => None,
            Some(url) => Some(connect_broker(url, &config, &hub)?),
        };
        let first_id = broker.as_ref().map_or(1, Broker::first_connection_id);
        Ok(App {
            hub,
            broker,
            inspector: Arc::new(Inspector::new(config.inspect)),
            fanout: Fanout::default(),
            budget: Budget::new(config.max_buffered_bytes),
            public_root,
            started: Instant::now(),
            open_connections: Counter::default(),
            sse_streams: Counter::default(),
            ws_connections: Counter::default(),
            writer_threads: Counter::default(),
            next_connection_id: AtomicU64::new(first_id),
            config,
        })
    }

    /// What counts against `--max-connections`: a thread each, which is
    /// what the machine runs out of (see `config::default_max_connections`).
    /// Most connections have one; a chat connection has two.
    pub fn slots_in_use(&self) -> usize {
        self.open_connections.get() + self.writer_threads.get()
    }

    /// Broadcasts an event to every subscriber: through the hub, or with
    /// a broker through Redis to the hubs of every instance.
    pub fn publish(&self, name: Option<&str>, data: &str) -> Result<Published, PublishError> {
        match &self.broker {
            None => self.hub.publish(name, data).map_err(PublishError::Refused),
            Some(broker) => broker.publish(&self.hub, name, data),
        }
    }

    /// A new connection's id: 1, 2, 3, … (the log and the welcome use it).
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Prints a log line, unless `--quiet`. A log nobody reads any more
    /// (stdout closed) is no reason to stop serving: errors are ignored.
    pub fn log(&self, line: fmt::Arguments<'_>) {
        if !self.config.quiet {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }

    pub fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            max_head_bytes: self.config.max_head_bytes,
            max_headers: self.config.max_headers,
            max_uri_bytes: self.config.max_uri_bytes,
        }
    }

    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            max_body: self.config.max_body,
            timeout: self.config.head_timeout,
            write_timeout: self.config.write_timeout,
            budget: self.budget.clone(),
        }
    }
}

/// The broker `url` names, reached once before the server starts.
fn connect_broker(url: &str, config: &Config, hub: &Hub) -> io::Result<Broker> {
    let invalid = |e| io::Error::new(io::ErrorKind::InvalidInput, format!("--broker: {e}"));
    let url = RedisUrl::parse(url).map_err(invalid)?;
    let address = url.address();
    Broker::contact(url, config, hub).map_err(|e| {
        io::Error::other(format!(
            "cannot reach the broker {address}: {e} (--broker-optional starts without it)"
        ))
    })
}

/// A count of things open right now (connections, streams).
#[derive(Debug, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds one now; the returned guard takes it away when dropped, so the
    /// count stays right however the thread that holds it ends. The guard
    /// may move to another thread (the accept loop counts a connection
    /// before its thread exists).
    pub fn enter(&self) -> Counted {
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(&self.0))
    }
}

/// One thing counted by a [`Counter`], until dropped.
#[derive(Debug)]
pub struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
