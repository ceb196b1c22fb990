//! `--broker redis://…`: several instances of this server share one event
//! log in Redis, so that an event posted to any of them reaches the
//! subscribers of all of them, under one id.
//!
//! Each instance keeps its own hub, as without a broker: its SSE streams
//! and chat connections read from it, and resume from its history. Only
//! the way events get into the hub changes:
//!
//! ```text
//!  POST /trigger-event ─┐                       ┌─ reader thread ─ hub A ─ A's clients
//!  chat message ────────┼─ EVALSHA publish ─▶ Redis log
//!  ticker ──────────────┘   (the id is made     └─ reader thread ─ hub B ─ B's clients
//!                            here, in Redis)
//! ```
//!
//! - A publish does not touch the local hub. It runs the log's publish
//!   script ([`crate::redis::log`]), which hands out the next id of the
//!   whole cluster and appends the event in one step; then it waits
//!   (briefly) until the event has come back through this instance's
//!   reader, so that a `200` means this instance's subscribers have it.
//! - One reader thread per instance, not one per subscriber, follows the
//!   log with `XREAD BLOCK` and appends each entry to the hub with the id
//!   Redis gave it ([`Hub::append`]). Every instance's hub therefore holds
//!   the same events under the same ids, and a client that resumes on
//!   another instance finds its `Last-Event-ID` there.
//!
//! # When Redis goes away
//!
//! Open streams and chat connections stay open: they wait on the hub, not
//! on Redis. Publishing fails at once, and says why (`503` on the trigger,
//! an `error` reply in the chat), rather than taking an event nobody will
//! receive. The reader tries again with exponential back-off and jitter,
//! logging each attempt; when Redis is back it reads on from the hub's
//! last id, so nothing published meanwhile (by an instance that could
//! still reach Redis) is missed.
//!
//! # When Redis lost its data
//!
//! A Redis restarted without persistence starts the ids over at 1. The
//! reader notices it by the log's epoch ([`Log::epoch`]), compared after
//! every read: a different epoch means different data. It then restarts
//! the hub ([`Hub::restart`]) with what Redis holds now, and every
//! subscriber gets a `reset` event instead of a silent jump backwards.
//! The same happens if this instance fell so far behind that Redis had
//! trimmed events it never read.

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use super::App;
use crate::config::Config;
use crate::hub::{Gap, Hub, Published};
use crate::json::{self, Json};
use crate::random::{random_f64, random_u64};
use crate::redis::{Limits, Log, LogConfig, LogEntry, RedisError, RedisUrl};
use crate::sse::format::{check_field, FieldError};

/// How long one `XREAD` waits for a new entry. Short, because the epoch
/// is compared after each read: a Redis that lost its data is noticed
/// within this time even if nothing is published.
const READ_BLOCK: Duration = Duration::from_millis(500);

/// How long a publish waits for its event to come back through this
/// instance's reader before answering anyway.
const ECHO_WAIT: Duration = Duration::from_secs(2);

/// Publishing connections kept open for the next publish.
const IDLE_PUBLISHERS: usize = 8;

/// Reconnection waits: doubling from the first to the last, with jitter.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// The broker as one instance sees it.
pub struct Broker {
    pub url: RedisUrl,
    /// This instance's number in the cluster (1 for the first to start),
    /// which makes its connection ids its own: see [`Broker::first_connection_id`].
    pub instance: u64,
    config: LogConfig,
    /// Connections for publishing, one per concurrent publish: a `Log` is
    /// one connection, and the reader's is busy in `XREAD BLOCK`.
    publishers: Mutex<Vec<Log>>,
    status: Mutex<Status>,
    reconnects: AtomicU64,
    /// The connection the first contact made, handed to the reader.
    first: Mutex<Option<Log>>,
}

/// What [`Broker::load`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loaded {
    /// The data the hub's events came from: read on after the hub's last id.
    SameData,
    /// Other data (or the first contact): the hub restarted with it.
    StartedOver,
    /// The same data, rolled back to an older snapshot: the log's counter
    /// was moved up past the hub's newest id.
    Rewound,
}

#[derive(Debug, Clone, Default)]
struct Status {
    connected: bool,
    /// The epoch of the data this instance's hub holds.
    epoch: Option<String>,
    /// The newest id Redis has told this instance of.
    broker_last_id: u64,
    /// Why the broker cannot be reached, while it cannot.
    problem: Option<String>,
}

/// Why an event was not published.
#[derive(Debug)]
pub enum PublishError {
    /// The event itself is wrong (a name that would break the framing).
    Refused(FieldError),
    /// The broker cannot take it now; the text says why.
    Unavailable(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Refused(e) => write!(f, "{e}"),
            PublishError::Unavailable(why) => write!(f, "{why}"),
        }
    }
}

impl Broker {
    /// The broker `config.broker` names, contacted once: the start of its
    /// history is loaded into `hub` before the server takes its first
    /// connection (the reader brings the rest: see `Broker::history`).
    /// Fails when Redis cannot be reached, unless `--broker-optional`
    /// (then the reader keeps trying).
    pub fn contact(url: RedisUrl, config: &Config, hub: &Hub) -> Result<Broker, RedisError> {
        let log_config = log_config(config);
        let mut broker = Broker {
            url,
            instance: 0,
            config: log_config,
            publishers: Mutex::default(),
            status: Mutex::default(),
            reconnects: AtomicU64::new(0),
            first: Mutex::default(),
        };
        let joined = broker.connect_and_load(hub).and_then(|(mut log, _)| {
            let number = log.join()?;
            Ok((log, number))
        });
        match joined {
            Ok((log, number)) => {
                broker.instance = number;
                *lock(&broker.first) = Some(log);
            }
            Err(e) if config.broker_optional => {
                // Not known without Redis: a random one, very likely
                // different from the others'.
                broker.instance = 1000 + random_u64() % 9000;
                broker.mark_down(&e);
            }
            Err(e) => return Err(e),
        }
        Ok(broker)
    }

    /// Connection ids start at the instance's number times a million, so
    /// that two instances never give the same id: the welcome's `clientId`
    /// and the frame inspector's records name one connection in the whole
    /// cluster (for the first million connections of each instance).
    pub fn first_connection_id(&self) -> u64 {
        self.instance * 1_000_000 + 1
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.status)
    }

    fn mark_down(&self, error: &RedisError) {
        let mut status = self.status();
        status.connected = false;
        status.problem = Some(error.to_string());
        drop(status);
        // The idle publishing connections were to the Redis that went
        // away: each would fail once, with a 503, after it is back.
        lock(&self.publishers).clear();
    }

    fn note_last_id(&self, id: u64) {
        let mut status = self.status();
        status.broker_last_id = status.broker_last_id.max(id);
    }

    /// A new connection, with the hub brought in line with the log.
    fn connect_and_load(&self, hub: &Hub) -> Result<(Log, Loaded), RedisError> {
        let mut log = Log::connect(&self.url, self.config)?;
        let loaded = self.load(&mut log, hub)?;
        Ok((log, loaded))
    }

    /// Compares the log's epoch with the one the hub's events came from.
    /// The same: the reader goes on from the hub's last id. Another (or
    /// the first contact): the hub restarts with what the log holds now.
    fn load(&self, log: &mut Log, hub: &Hub) -> Result<Loaded, RedisError> {
        let epoch = log.epoch()?;
        let known = self.status().epoch.clone();
        let mut newest = log.last_id()?;
        let loaded = match known {
            Some(known) if known == epoch && newest < hub.last_id() => {
                // The same data, but older: a Redis restarted from a
                // snapshot taken before the newest events. Its counter
                // would hand out their ids again, for other events; so it
                // is moved up to where this hub is, and the next event
                // gets an id no subscriber has seen. (The events after the
                // snapshot stay in the hubs that have them; an instance
                // that starts later finds a gap in the log, and its
                // clients who resume across it get a reset.)
                newest = log.raise_last_id(hub.last_id())?;
                Loaded::Rewound
            }
            Some(known) if known == epoch => Loaded::SameData,
            Some(_) => {
                self.start_over(log, hub, newest)?;
                Loaded::StartedOver
            }
            None => {
                let entries = self.history(log, newest)?;
                let why = format!(
                    "this server now follows the cluster's event log at {}; its newest event is {newest}",
                    self.url.address()
                );
                let events = entries.iter().map(|e| (e.id, e.name.as_deref(), &*e.data));
                hub.restart(newest, events, &why);
                Loaded::StartedOver
            }
        };
        // Redis may have lost the count of instances with the rest: this
        // instance's number goes back in, so no later one is given it.
        if self.instance > 0 {
            log.raise_instances(self.instance)?;
        }
        lock(&self.publishers).clear();
        let mut status = self.status();
        status.epoch = Some(epoch);
        status.broker_last_id = newest;
        status.connected = true;
        status.problem = None;
        Ok(loaded)
    }

    /// The log's data is not what the hub's events came from (Redis lost
    /// it). Every subscriber gets a reset placed just before the first
    /// event the new log holds, then those events, as new ones: they may
    /// have been published (by an instance that was back sooner) before
    /// this instance's reader returned, and nobody here has seen them.
    fn start_over(&self, log: &mut Log, hub: &Hub, newest: u64) -> Result<(), RedisError> {
        let entries = self.history(log, newest)?;
        let base = entries.first().map_or(newest, |e| e.id - 1);
        let why = format!(
            "the broker {} lost its data (restarted without it?): the ids start over after {base}",
            self.url.address()
        );
        hub.restart(base, [], &why);
        for entry in &entries {
            let _ = hub.append(entry.id, entry.name.as_deref(), &entry.data);
        }
        Ok(())
    }

    /// The oldest page of the newest `--history` entries of the log: at
    /// most `read_batch` of them, so that the reply fits the reply limits
    /// (a thousand events of a large `--max-body` would not, in one). The
    /// hub's newest id is then the page's last, and the reader's `XREAD`
    /// brings the rest, a page at a time, as it brings every new event.
    fn history(&self, log: &mut Log, newest: u64) -> Result<Vec<LogEntry>, RedisError> {
        let after = newest.saturating_sub(self.config.history);
        Ok(log.range_after(after, self.config.read_batch)?.0)
    }

    /// Publishes through the log; the event reaches this instance's hub
    /// (and every other's) by the readers. `delivered` counts this
    /// instance's subscribers only: the others are not asked.
    pub fn publish(
        &self,
        hub: &Hub,
        name: Option<&str>,
        data: &str,
    ) -> Result<Published, PublishError> {
        if let Some(name) = name {
            check_field(name).map_err(PublishError::Refused)?;
        }
        let address = self.url.address();
        if let Some(problem) = self.status().problem.clone() {
            return Err(PublishError::Unavailable(format!(
                "the event broker {address} is unreachable ({problem}); the event was not sent, try again later"
            )));
        }
        let pooled = lock(&self.publishers).pop();
        let mut log = match pooled {
            Some(log) => log,
            None => Log::connect(&self.url, self.config).map_err(|e| {
                PublishError::Unavailable(format!(
                    "cannot reach the event broker {address}: {e}; the event was not sent"
                ))
            })?,
        };
        // A connection that failed is dropped, not pooled: the reply it
        // lost may or may not mean the event was published.
        let id = log.publish(name, data).map_err(|e| {
            PublishError::Unavailable(format!(
                "publishing through the event broker {address} failed: {e}; the event may not have been sent"
            ))
        })?;
        let mut pool = lock(&self.publishers);
        if pool.len() < IDLE_PUBLISHERS {
            pool.push(log);
        }
        drop(pool);
        self.note_last_id(id);
        hub.wait_for(id, ECHO_WAIT);
        Ok(Published {
            id,
            delivered: hub.subscriber_count(),
        })
    }

    /// The broker's part of `/stats`.
    pub fn stats(&self, hub: &Hub) -> Json {
        let status = self.status().clone();
        let last_id = hub.last_id();
        json::object([
            ("url", self.url.address().into()),
            ("prefix", self.url.prefix.as_str().into()),
            ("instance", self.instance.into()),
            ("connected", status.connected.into()),
            ("last_id", last_id.into()),
            ("broker_last_id", status.broker_last_id.into()),
            ("lag", status.broker_last_id.saturating_sub(last_id).into()),
            (
                "epoch",
                status
                    .epoch
                    .map_or(Json::Null, |epoch| epoch.as_str().into()),
            ),
            ("reconnects", self.reconnects.load(Ordering::Relaxed).into()),
            (
                "problem",
                status.problem.map_or(Json::Null, |p| p.as_str().into()),
            ),
        ])
    }
}

/// How the log is read, sized for the largest event this server can
/// publish: a chat message or a posted body, with the JSON around it. A
/// reply may hold one such event however large `--max-body` is, and one
/// `XREAD` or `XRANGE` asks for only as many as fit in a reply. (With the
/// defaults, events of up to 64 KiB: 960 at a time.) A reply over the limits would
/// be refused every time it was read again, and the reader would never get
/// past it.
fn log_config(config: &Config) -> LogConfig {
    let defaults = LogConfig::default();
    let largest_event = config.max_body.max(config.max_chat_bytes) + 4096;
    let limits = Limits {
        max_bulk_len: defaults.limits.max_bulk_len.max(largest_event),
        max_reply_bytes: defaults.limits.max_reply_bytes.max(2 * largest_event),
        ..defaults.limits
    };
    // Each entry is its data and a little RESP around it.
    let per_entry = largest_event + 256;
    LogConfig {
        history: config.history.max(1) as u64,
        read_batch: (limits.max_reply_bytes / per_entry).clamp(1, defaults.read_batch),
        limits,
        ..defaults
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the reader thread of the broker, if there is one.
pub fn start_reader(app: &Arc<App>) {
    if app.broker.is_none() {
        return;
    }
    let app = Arc::clone(app);
    thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Some(broker) = &app.broker {
                read_forever(&app, broker);
            }
        })
        .expect("cannot start the broker's reader thread");
}

/// Why the reader stopped following the log.
enum Stop {
    /// The connection failed.
    Lost(RedisError),
    /// The log's epoch changed: its data is not the data the hub holds.
    DataLost,
}

impl From<RedisError> for Stop {
    fn from(error: RedisError) -> Stop {
        Stop::Lost(error)
    }
}

/// Follows the log for as long as the process lives, connecting again
/// whenever the connection is lost.
fn read_forever(app: &App, broker: &Broker) {
    let url = broker.url.address();
    let mut log = lock(&broker.first).take();
    let mut attempt: u32 = 0;
    loop {
        let connected = match log.take() {
            Some(log) => Ok((log, Loaded::SameData)),
            None => broker.connect_and_load(&app.hub),
        };
        let (mut current, loaded) = match connected {
            Ok(current) => current,
            Err(e) => {
                broker.mark_down(&e);
                attempt += 1;
                let wait = retry_delay(attempt);
                app.log(format_args!(
                    "broker: {url} unreachable ({e}); attempt {attempt}, next in {} ms",
                    wait.as_millis()
                ));
                thread::sleep(wait);
                continue;
            }
        };
        if attempt > 0 {
            broker.reconnects.fetch_add(1, Ordering::Relaxed);
            let how = match loaded {
                Loaded::SameData => "its data is the same: reading on after event",
                Loaded::StartedOver => {
                    "it lost its data: the ids start over, subscribers got a reset; newest event"
                }
                Loaded::Rewound => {
                    "it came back from an older snapshot: its counter was moved up, so no id is given twice; newest event"
                }
            };
            app.log(format_args!(
                "broker: connected to {url} again after {attempt} failed attempts; {how} {}",
                app.hub.last_id()
            ));
            attempt = 0;
        }
        match follow(app, broker, &mut current) {
            Err(Stop::DataLost) => {
                app.log(format_args!(
                    "broker: {url} holds other data than before (its epoch changed): the ids start over"
                ));
                // The same connection loads the new data.
                match broker.load(&mut current, &app.hub) {
                    Ok(_) => log = Some(current),
                    Err(e) => broker.mark_down(&e),
                }
            }
            Err(Stop::Lost(e)) => {
                broker.mark_down(&e);
                app.log(format_args!("broker: lost {url}: {e}; reconnecting"));
            }
            Ok(never) => match never {},
        }
    }
}

/// Reads the log and appends each entry to the hub, until something
/// stops it. Each batch is checked against the epoch before it is used,
/// so entries of a log that started over are never taken for the next
/// events of the old one.
fn follow(app: &App, broker: &Broker, log: &mut Log) -> Result<Infallible, Stop> {
    let epoch = broker.status().epoch.clone();
    loop {
        let entries = log.read_after(app.hub.last_id(), READ_BLOCK)?;
        if Some(log.epoch()?) != epoch {
            return Err(Stop::DataLost);
        }
        if entries.is_empty() {
            broker.note_last_id(log.last_id()?);
        }
        if let Some(last) = entries.last() {
            broker.note_last_id(last.id);
        }
        for entry in &entries {
            let (name, data) = (entry.name.as_deref(), entry.data.as_str());
            if let Err(Gap { expected, got }) = app.hub.append(entry.id, name, data) {
                // Redis trimmed events before this instance read them.
                let missed = if expected + 1 == got {
                    format!("event {expected} was")
                } else {
                    format!("events {expected} to {} were", got - 1)
                };
                app.hub.restart(
                    got - 1,
                    [],
                    &format!("{missed} trimmed from the broker's log before this server read them"),
                );
                let _ = app.hub.append(entry.id, name, data);
            }
        }
    }
}

/// The wait before reconnection attempt `attempt` (1 for the first
/// retry): doubling up to `LAST_RETRY`, then a random part of it taken
/// off, so that instances that lost Redis together do not come back in
/// step.
fn retry_delay(attempt: u32) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    doubled.min(LAST_RETRY).mul_f64(0.5 + 0.5 * random_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_of_the_log_always_fits_the_reply_limits() {
        for max_body in [1, 65_536, 1 << 20, 32 << 20] {
            let config = Config {
                max_body,
                ..Config::default()
            };
            let log = log_config(&config);
            let largest = max_body.max(config.max_chat_bytes) + 4096;
            assert!(log.limits.max_bulk_len >= largest, "{max_body}");
            assert!(log.read_batch >= 1 && log.read_batch <= 1000, "{max_body}");
            assert!(
                log.read_batch * (largest + 256) <= log.limits.max_reply_bytes,
                "{max_body}: {} entries could overflow a reply",
                log.read_batch
            );
        }
        assert_eq!(log_config(&Config::default()).read_batch, 960);
    }

    #[test]
    fn retries_double_up_to_the_last_with_jitter() {
        for attempt in 1..=20 {
            let full = FIRST_RETRY
                .saturating_mul(1 << (attempt - 1).min(10))
                .min(LAST_RETRY);
            let wait = retry_delay(attempt);
            assert!(wait <= full && wait >= full / 2, "{attempt}: {wait:?}");
        }
        assert!(retry_delay(30) <= LAST_RETRY);
    }
}
