//! The cluster's event log: one sequence of events in Redis that every
//! server instance publishes to and reads from, so that an id means the
//! same event on every instance and `Last-Event-ID` resumes anywhere.
//!
//! # Keys
//!
//! With the URL's prefix `P` (`rbh` unless the URL says otherwise):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:log:last-id` | string | the last id handed out; `INCR` makes the next |
//! | `P:log:events` | stream | one entry per event, entry id `<id>-0`, fields `id`, `name` (only for a named event) and `data` |
//! | `P:log:epoch` | string | a random value, 32 hex digits, that lives as long as the log's data |
//! | `P:instances` | string | how many instances have joined: each takes the next number ([`Log::join`]) |
//!
//! # Publishing is one script
//!
//! Publishing takes three steps: `INCR` the counter for the id, `XADD`
//! the entry under that id (trimming the stream to the history length),
//! and make sure the epoch exists. Sent as separate commands from two
//! instances, they can interleave:
//!
//! ```text
//! instance A: INCR  -> 5
//! instance B: INCR  -> 6
//! instance B: XADD 6-0 ...      ok
//! instance A: XADD 5-0 ...      ERR The ID specified in XADD is equal or
//!                               smaller than the target stream top item
//! ```
//!
//! and `MULTI`/`EXEC` cannot help, because the `XADD` needs the value the
//! `INCR` returns, and commands in a transaction only run at `EXEC`. A Lua
//! script (`publish.lua`, beside this file) can: Redis runs a script from
//! start to end with no other command in between, so each id is handed
//! out, and its entry appended, in one step. Two instances can never get
//! the same id, and entries are always in id order.
//!
//! The script is sent with `EVALSHA` and its SHA-1, 40 bytes instead of
//! the whole script on every publish. A Redis that has not seen it (just
//! started, or after `SCRIPT FLUSH`) answers `NOSCRIPT`; then it is sent
//! once with `EVAL`, which also caches it for the next `EVALSHA`.
//!
//! # The epoch
//!
//! A Redis restarted without its data starts the ids over at 1, and a
//! client resuming from `Last-Event-ID: 500` would silently miss events
//! 1 to 500 of the new sequence. So beside the log sits a random epoch,
//! created with `SET … NX` (set only if absent) by the first publish or
//! [`Log::epoch`] call after the data is gone. Every instance remembers
//! the epoch it started with and compares it with [`Log::epoch`] from
//! time to time; a different value means the ids started over. Each call
//! offers a fresh random value, never a remembered one, so a lost epoch
//! is never recreated with its old value.
//!
//! # Reading
//!
//! Each instance runs one reader thread (with its own `Log`, since a
//! blocked `XREAD` holds its connection), in a loop:
//!
//! ```text
//! let epoch = log.epoch()?;
//! let mut last = log.last_id()?;
//! loop {
//!     for entry in log.read_after(last, Duration::from_secs(5))? {
//!         last = entry.id;          // hand the entry to the local hub
//!     }
//!     if log.epoch()? != epoch { /* ids started over: reset, reconnect clients */ }
//! }
//! ```
//!
//! [`Log::range_after`] serves a resume: the entries after a client's last
//! id, and the oldest id still kept, so the caller can tell "nothing was
//! missed" from "some events were trimmed away".
//!
//! A `Log` is one connection. After an I/O error the next call connects
//! again; nothing is retried by itself, since a publish whose reply was
//! lost may or may not have happened.

use std::time::Duration;

use super::connection::{command_name, Connection, Timeouts};
use super::error::RedisError;
use super::reader::Limits;
use super::reply::Reply;
use super::url::RedisUrl;
use crate::random::random_u64;

/// The publish script, run by Redis.
pub const PUBLISH_SCRIPT: &str = include_str!("publish.lua");

/// How the stream is trimmed to the history length on each publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// `MAXLEN =`: exactly `history` entries stay.
    Exact,
    /// `MAXLEN ~`: Redis drops old entries only in whole blocks of its
    /// internal tree (by default 100 entries a block), so a little more
    /// than `history` stays, for less work per publish.
    Approximate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// How many events the stream keeps for resume (default 1000, as the
    /// server's own `--history`).
    pub history: u64,
    /// Default [`Trim::Approximate`].
    pub trim: Trim,
    /// The most entries one [`Log::read_after`] returns (default 1000).
    pub read_batch: usize,
    pub timeouts: Timeouts,
    pub limits: Limits,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            history: 1000,
            trim: Trim::Approximate,
            read_batch: 1000,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
        }
    }
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub id: u64,
    /// The SSE event name; `None` for an unnamed event.
    pub name: Option<String>,
    pub data: String,
}

/// The names of the log's keys, for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKeys {
    pub last_id: String,
    pub events: String,
    pub epoch: String,
    /// A counter each instance increments once at start, for a number of
    /// its own ([`Log::join`]).
    pub instances: String,
}

impl LogKeys {
    pub fn new(prefix: &str) -> LogKeys {
        LogKeys {
            last_id: format!("{prefix}:log:last-id"),
            events: format!("{prefix}:log:events"),
            epoch: format!("{prefix}:log:epoch"),
            instances: format!("{prefix}:instances"),
        }
    }
}

/// The connection a `Log` talks over, made again when it broke.
#[derive(Debug)]
struct Link {
    url: RedisUrl,
    timeouts: Timeouts,
    limits: Limits,
    connection: Option<Connection>,
}

impl Link {
    fn get(&mut self) -> Result<&mut Connection, RedisError> {
        let connection = match self.connection.take() {
            Some(connection) if !connection.is_broken() => connection,
            _ => Connection::connect(&self.url, self.timeouts, self.limits)?,
        };
        Ok(self.connection.insert(connection))
    }
}

/// The cluster's event log, over one connection to Redis.
#[derive(Debug)]
pub struct Log {
    link: Link,
    config: LogConfig,
    keys: LogKeys,
    /// The SHA-1 of [`PUBLISH_SCRIPT`] in hex: its name in Redis's cache.
    script_sha: String,
}

impl Log {
    /// Connects at once, so that a wrong address is an error at start-up
    /// rather than at the first event.
    pub fn connect(url: &RedisUrl, config: LogConfig) -> Result<Log, RedisError> {
        if config.history == 0 || config.read_batch == 0 {
            return Err(RedisError::Usage(
                "the log's history and read_batch must be at least 1".into(),
            ));
        }
        let mut link = Link {
            url: url.clone(),
            timeouts: config.timeouts,
            limits: config.limits,
            connection: None,
        };
        link.get()?;
        Ok(Log {
            link,
            config,
            keys: LogKeys::new(&url.prefix),
            script_sha: sha1_smol::Sha1::from(PUBLISH_SCRIPT).digest().to_string(),
        })
    }

    /// Parses `url` and connects with the default configuration.
    pub fn open(url: &str) -> Result<Log, RedisError> {
        Log::connect(&RedisUrl::parse(url)?, LogConfig::default())
    }

    pub fn keys(&self) -> &LogKeys {
        &self.keys
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The SHA-1 that `EVALSHA` names the publish script by.
    pub fn script_sha(&self) -> &str {
        &self.script_sha
    }

    /// Appends an event and returns its id: one more than the last id
    /// handed out by any instance.
    pub fn publish(&mut self, name: Option<&str>, data: &str) -> Result<u64, RedisError> {
        let history = self.config.history.to_string();
        let trim: &[u8] = match self.config.trim {
            Trim::Exact => b"=",
            Trim::Approximate => b"~",
        };
        let epoch = fresh_epoch();
        let keys = &self.keys;
        let mut args: Vec<&[u8]> = vec![
            b"EVALSHA",
            self.script_sha.as_bytes(),
            b"3",
            keys.last_id.as_bytes(),
            keys.events.as_bytes(),
            keys.epoch.as_bytes(),
            history.as_bytes(),
            trim,
            epoch.as_bytes(),
            data.as_bytes(),
        ];
        args.extend(name.map(str::as_bytes));
        let connection = self.link.get()?;
        let reply = match connection.command(&args) {
            Err(error) if error.server_error_kind() == Some("NOSCRIPT") => {
                args[0] = b"EVAL";
                args[1] = PUBLISH_SCRIPT.as_bytes();
                connection.command(&args)?
            }
            other => other?,
        };
        match reply {
            Reply::Integer(id) if id > 0 => Ok(id as u64),
            other => Err(unexpected("EVALSHA", "the new id, an integer", &other)),
        }
    }

    /// The epoch of the log's data, created if there is none.
    pub fn epoch(&mut self) -> Result<String, RedisError> {
        let key = self.keys.epoch.as_bytes();
        // SET NX and GET go in one round trip. Between the two, a FLUSHALL
        // could remove the value just set: then GET finds nothing and the
        // pair is simply sent again.
        for _ in 0..3 {
            let candidate = fresh_epoch();
            let set: [&[u8]; 4] = [b"SET", key, candidate.as_bytes(), b"NX"];
            let get: [&[u8]; 2] = [b"GET", key];
            let replies = self.link.get()?.pipeline(&[&set[..], &get[..]])?;
            let [set_reply, get_reply] = <[Reply; 2]>::try_from(replies)
                .map_err(|all| unexpected("SET, GET", "two replies", &Reply::Array(all)))?;
            refused("SET", set_reply)?;
            match refused("GET", get_reply)? {
                Reply::Bulk(bytes) => {
                    return String::from_utf8(bytes).map_err(|e| {
                        unexpected("GET", "the epoch as text", &Reply::Bulk(e.into_bytes()))
                    })
                }
                Reply::NullBulk => continue,
                other => return Err(unexpected("GET", "the epoch, a bulk string", &other)),
            }
        }
        Err(RedisError::Usage(format!(
            "the epoch key {} vanished three times in a row just after it was set",
            self.keys.epoch
        )))
    }

    /// A number for an instance that starts now: 1 for the first to ask,
    /// 2 for the next, and so on (`INCR`, so two never get the same).
    pub fn join(&mut self) -> Result<u64, RedisError> {
        let key = self.keys.instances.as_bytes();
        match self.link.get()?.command(&[b"INCR", key])? {
            Reply::Integer(n) if n > 0 => Ok(n as u64),
            other => Err(unexpected("INCR", "a positive integer", &other)),
        }
    }

    /// Moves the counter of ids up to `at_least` if it is below, and
    /// returns where it is now. After a Redis restarted from an older
    /// snapshot, so that ids already handed out are not handed out again.
    pub fn raise_last_id(&mut self, at_least: u64) -> Result<u64, RedisError> {
        let key = self.keys.last_id.clone();
        self.raise(&key, at_least)
    }

    /// The same for the count of instances ([`Log::join`]): after Redis
    /// lost its data, a running instance puts its own number back, so
    /// that one starting later does not get it too.
    pub fn raise_instances(&mut self, at_least: u64) -> Result<u64, RedisError> {
        let key = self.keys.instances.clone();
        self.raise(&key, at_least)
    }

    /// Sets the number at `key` to `at_least` if it is below; returns it.
    fn raise(&mut self, key: &str, at_least: u64) -> Result<u64, RedisError> {
        // A script, so that a publish (or a join) cannot come between the
        // GET and the SET.
        const RAISE: &str = "local now = tonumber(redis.call('GET', KEYS[1]) or '0') \
            if now < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) now = tonumber(ARGV[1]) end \
            return now";
        let floor = at_least.to_string();
        let args: [&[u8]; 5] = [
            b"EVAL",
            RAISE.as_bytes(),
            b"1",
            key.as_bytes(),
            floor.as_bytes(),
        ];
        match self.link.get()?.command(&args)? {
            Reply::Integer(n) if n >= 0 => Ok(n as u64),
            other => Err(unexpected("EVAL", "the counter, an integer", &other)),
        }
    }

    /// The last id handed out, 0 before the first publish.
    pub fn last_id(&mut self) -> Result<u64, RedisError> {
        let reply = self
            .link
            .get()?
            .command(&[b"GET", self.keys.last_id.as_bytes()])?;
        match &reply {
            Reply::NullBulk => Ok(0),
            _ => reply
                .as_str()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| unexpected("GET", "the last id, a number", &reply)),
        }
    }

    /// The entries after `last_id`, at most `read_batch` of them, waiting
    /// up to `block` for the first one to be published (`Duration::ZERO`:
    /// not at all). Empty when the wait ran out.
    pub fn read_after(
        &mut self,
        last_id: u64,
        block: Duration,
    ) -> Result<Vec<LogEntry>, RedisError> {
        let count = self.config.read_batch.to_string();
        let after = format!("{last_id}-0");
        // BLOCK 0 would mean "forever": a short wait is at least 1 ms.
        let millis = block.as_nanos().div_ceil(1_000_000).to_string();
        let mut args: Vec<&[u8]> = vec![b"XREAD", b"COUNT", count.as_bytes()];
        if !block.is_zero() {
            args.extend([&b"BLOCK"[..], millis.as_bytes()]);
        }
        args.extend([
            &b"STREAMS"[..],
            self.keys.events.as_bytes(),
            after.as_bytes(),
        ]);
        let reply = self.link.get()?.command_waiting(&args, block)?;
        match reply {
            // Nothing new (without BLOCK), or the wait ran out.
            Reply::NullArray => Ok(Vec::new()),
            // One stream asked for, one [name, entries] pair back.
            Reply::Array(mut streams) if streams.len() == 1 => {
                match streams.pop().and_then(Reply::into_array) {
                    Some(mut pair) if pair.len() == 2 => entries("XREAD", pair.remove(1)),
                    _ => Err(unexpected(
                        "XREAD",
                        "[stream, entries]",
                        &Reply::Array(streams),
                    )),
                }
            }
            other => Err(unexpected("XREAD", "one stream's entries, or nil", &other)),
        }
    }

    /// Up to `max` entries after `last_id`, with the oldest id the stream
    /// still holds (`None` when it is empty). If `last_id + 1` is older
    /// than that oldest id, events were trimmed away in between, and a
    /// resume from `last_id` cannot be complete.
    pub fn range_after(
        &mut self,
        last_id: u64,
        max: usize,
    ) -> Result<(Vec<LogEntry>, Option<u64>), RedisError> {
        let key = self.keys.events.as_bytes();
        let start = format!("{}-0", last_id.saturating_add(1));
        let count = max.max(1).to_string();
        // Both ranges inside MULTI/EXEC, so they see the stream at the same
        // moment: no publish can trim it between the two.
        let commands: [&[&[u8]]; 4] = [
            &[b"MULTI"],
            &[b"XRANGE", key, b"-", b"+", b"COUNT", b"1"],
            &[
                b"XRANGE",
                key,
                start.as_bytes(),
                b"+",
                b"COUNT",
                count.as_bytes(),
            ],
            &[b"EXEC"],
        ];
        let replies = self.link.get()?.pipeline(&commands)?;
        for (reply, args) in replies.iter().zip(commands) {
            if let Reply::Error(message) = reply {
                return Err(RedisError::Server {
                    command: command_name(args),
                    message: message.clone(),
                });
            }
        }
        let results = match replies.into_iter().nth(3) {
            Some(Reply::Array(results)) => <[Reply; 2]>::try_from(results).map_err(Reply::Array),
            other => Err(other.unwrap_or(Reply::NullArray)),
        };
        let [first, after] = results
            .map_err(|other| unexpected("EXEC", "the results of the two XRANGEs", &other))?;
        let oldest = entries("XRANGE", refused("XRANGE", first)?)?
            .first()
            .map(|entry| entry.id);
        let mut found = entries("XRANGE", refused("XRANGE", after)?)?;
        found.truncate(max);
        Ok((found, oldest))
    }
}

/// A new random epoch: 128 bits as 32 hex digits.
fn fresh_epoch() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// An error reply inside a pipeline or transaction, as an error.
fn refused(command: &str, reply: Reply) -> Result<Reply, RedisError> {
    match reply {
        Reply::Error(message) => Err(RedisError::Server {
            command: command.to_string(),
            message,
        }),
        other => Ok(other),
    }
}

/// A reply of the wrong shape, shown in part.
fn unexpected(command: &str, expected: &'static str, got: &Reply) -> RedisError {
    let mut shown = got.to_string();
    if shown.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|&i| shown.is_char_boundary(i))
            .unwrap_or(0);
        shown.truncate(cut);
        shown.push('…');
    }
    RedisError::Unexpected {
        command: command.to_string(),
        expected,
        got: format!("{} {shown}", got.kind()),
    }
}

/// The entries of an `XRANGE` or `XREAD` reply: `[[id, [field, value, …]], …]`.
fn entries(command: &str, reply: Reply) -> Result<Vec<LogEntry>, RedisError> {
    match reply {
        Reply::Array(items) => items.into_iter().map(|item| entry(command, item)).collect(),
        other => Err(unexpected(command, "an array of entries", &other)),
    }
}

fn entry(command: &str, reply: Reply) -> Result<LogEntry, RedisError> {
    let bad = |reply: &Reply| unexpected(command, "an entry [id, [field, value, …]]", reply);
    let Some([id, fields]) = reply
        .as_array()
        .and_then(|items| <&[Reply; 2]>::try_from(items).ok())
    else {
        return Err(bad(&reply));
    };
    let id = id
        .as_str()
        .and_then(|text| text.strip_suffix("-0"))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| bad(&reply))?;
    let fields = fields.as_array().ok_or_else(|| bad(&reply))?;
    let mut entry = LogEntry {
        id,
        name: None,
        data: String::new(),
    };
    for pair in fields.chunks(2) {
        let [field, value] = pair else {
            return Err(bad(&reply));
        };
        let value = value.as_str().ok_or_else(|| bad(&reply))?;
        match field.as_bytes() {
            Some(b"name") => entry.name = Some(value.to_string()),
            Some(b"data") => entry.data = value.to_string(),
            _ => {}
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(text.as_bytes().to_vec())
    }

    #[test]
    fn key_names_carry_the_prefix() {
        assert_eq!(
            LogKeys::new("rbh"),
            LogKeys {
                last_id: "rbh:log:last-id".into(),
                events: "rbh:log:events".into(),
                epoch: "rbh:log:epoch".into(),
                instances: "rbh:instances".into(),
            }
        );
    }

    #[test]
    fn entries_are_read_from_the_stream_reply() {
        let reply = Reply::Array(vec![
            Reply::Array(vec![
                bulk("7-0"),
                Reply::Array(vec![
                    bulk("id"),
                    bulk("7"),
                    bulk("data"),
                    bulk("héllo\nworld"),
                ]),
            ]),
            Reply::Array(vec![
                bulk("8-0"),
                Reply::Array(vec![
                    bulk("id"),
                    bulk("8"),
                    bulk("name"),
                    bulk("chat"),
                    bulk("data"),
                    bulk(""),
                ]),
            ]),
        ]);
        assert_eq!(
            entries("XRANGE", reply).unwrap(),
            vec![
                LogEntry {
                    id: 7,
                    name: None,
                    data: "héllo\nworld".into()
                },
                LogEntry {
                    id: 8,
                    name: Some("chat".into()),
                    data: String::new()
                },
            ]
        );
    }

    #[test]
    fn entries_of_another_shape_are_errors_that_show_the_reply() {
        let shapes = [
            Reply::Integer(3),
            Reply::Array(vec![Reply::Integer(3)]),
            Reply::Array(vec![Reply::Array(vec![bulk("7-1"), Reply::Array(vec![])])]),
            Reply::Array(vec![Reply::Array(vec![bulk("x-0"), Reply::Array(vec![])])]),
            Reply::Array(vec![Reply::Array(vec![
                bulk("7-0"),
                Reply::Array(vec![bulk("data")]),
            ])]),
            Reply::Array(vec![Reply::Array(vec![
                bulk("7-0"),
                Reply::Array(vec![bulk("data"), Reply::Bulk(vec![0xff])]),
            ])]),
        ];
        for reply in shapes {
            let message = entries("XRANGE", reply.clone()).unwrap_err().to_string();
            assert!(message.starts_with("XRANGE answered "), "{message}");
            assert!(message.contains("was expected"), "{message}");
        }
        let long = Reply::Bulk(vec![b'x'; 1000]);
        assert!(unexpected("GET", "a number", &long).to_string().len() < 300);
    }

    #[test]
    fn epochs_are_fresh_each_time() {
        let (a, b) = (fresh_epoch(), fresh_epoch());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_script_is_named_by_its_sha1() {
        let sha = sha1_smol::Sha1::from(PUBLISH_SCRIPT).digest().to_string();
        assert_eq!(sha.len(), 40);
        assert!(PUBLISH_SCRIPT.contains("redis.call('INCR', KEYS[1])"));
    }
}
