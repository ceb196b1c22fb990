//! A Redis client by hand, and the cluster's event log on top of it.
//!
//! Several server instances behind one proxy each have their own hub; to
//! give every instance the same events under the same ids, they share one
//! log in Redis ([`log`]). This module is the client for that: TCP from
//! `std::net`, and RESP2, the protocol Redis has spoken since 2.0.
//!
//! # RESP by hand
//!
//! RESP (the REdis Serialization Protocol) is text framing with lengths.
//! Every value starts with one type byte and every line ends with CR LF
//! (`\r\n`). A client sends each command as an array of bulk strings
//! ([`request`]); `SET k v` is, byte for byte:
//!
//! ```text
//! *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n
//! ```
//!
//! `*3` says an array of three items follows; `$3` a bulk string of three
//! bytes, then the bytes, then CR LF. Redis answers with one value of any
//! of five types ([`Reply`]):
//!
//! ```text
//! +OK\r\n                         a simple string: SET succeeded
//! -ERR wrong number of args\r\n   an error, with its text
//! :11\r\n                         an integer: what INCR returns
//! $5\r\nhello\r\n                 a bulk string: what GET returns
//! $-1\r\n                         the null bulk string: GET of a missing key
//! *2\r\n:1\r\n$1\r\nx\r\n         an array of two replies, which may be arrays
//! *-1\r\n                         the null array: XREAD BLOCK that timed out
//! ```
//!
//! Simple strings, errors and integers end at the first CR LF. Bulk
//! strings and arrays say up front how long they are, so their contents
//! can be anything: a bulk string's bytes are taken by count, never
//! searched for an end. That is what makes values binary-safe.
//!
//! # Why the reply parser is incremental
//!
//! TCP delivers a stream of bytes, not messages: one `read` may hold half
//! a reply, or ten replies and the start of an eleventh. The
//! [`ReplyReader`] takes whatever arrived and remembers where it stopped,
//! so it never re-reads bytes and never cares where the cuts fell (its
//! tests feed the same bytes in pieces of every size and expect the same
//! replies). The same design as the HTTP head parser and the WebSocket
//! message reader: no socket inside, so tests and debuggers feed it bytes
//! directly. Because replies carry lengths announced by the other side,
//! it checks each against [`Limits`] before believing it, and allocates
//! only as bytes actually arrive.
//!
//! # The parts
//!
//! | file | what |
//! | --- | --- |
//! | `request.rs` | commands to bytes |
//! | `reply.rs` | the reply type |
//! | `reader.rs` | bytes to replies, with limits |
//! | `url.rs` | `redis://HOST:PORT[/PREFIX]` |
//! | `connection.rs` | one TCP connection: commands, pipelines, deadlines |
//! | `error.rs` | what went wrong, in words a person can act on |
//! | `log.rs`, `publish.lua` | the cluster's event log |

pub mod connection;
pub mod error;
pub mod log;
pub mod reader;
pub mod reply;
pub mod request;
pub mod url;

pub use connection::{Connection, Timeouts};
pub use error::RedisError;
pub use log::{Log, LogConfig, LogEntry, LogKeys, Trim};
pub use reader::{Limits, Problem, ProtocolError, ReplyReader};
pub use reply::Reply;
pub use url::RedisUrl;
