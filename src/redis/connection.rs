//! One TCP connection to Redis: commands out, replies in, within deadlines.
//!
//! Redis answers the commands on a connection in the order they were
//! sent, one reply each. So a client need not wait for a reply before
//! sending the next command: [`Connection::pipeline`] writes a batch of
//! commands in one write and then reads as many replies, which costs one
//! round trip instead of one per command. [`Connection::command`] is a
//! pipeline of one.
//!
//! Every read has a deadline for the whole reply, not a timeout per
//! `read` call, so a server that trickles a byte a second cannot hold a
//! caller forever. After an I/O or protocol error the connection is
//! marked broken: nobody knows any more which reply the next bytes
//! belong to, so every later call fails at once and says why.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::error::RedisError;
use super::reader::{Limits, ReplyReader};
use super::reply::Reply;
use super::request;
use super::url::RedisUrl;

/// How long to wait for each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the TCP connection to be made (default 2 s).
    pub connect: Duration,
    /// For all the replies of one call to arrive (default 5 s).
    pub read: Duration,
    /// For the commands of one call to be written (default 5 s).
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(5),
            write: Duration::from_secs(5),
        }
    }
}

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A connection to one Redis server. Not shared between threads: each
/// thread that talks to Redis opens its own (a `Mutex` around one works
/// too, but a blocking `XREAD` would hold it).
pub struct Connection {
    stream: TcpStream,
    url: RedisUrl,
    timeouts: Timeouts,
    reader: ReplyReader,
    /// Bytes read but not yet fed to the reader: `buf[start..end]`.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Why the connection cannot be used any more, once it cannot.
    broken: Option<String>,
}

impl Connection {
    /// Connects to the server `url` names, trying each address its host
    /// resolves to.
    pub fn connect(
        url: &RedisUrl,
        timeouts: Timeouts,
        limits: Limits,
    ) -> Result<Connection, RedisError> {
        let stream = open_stream(url, timeouts)?;
        let io_error = |error| RedisError::Io {
            url: url.address(),
            doing: "setting up the connection to",
            error,
        };
        stream.set_nodelay(true).map_err(io_error)?;
        stream
            .set_write_timeout(Some(timeouts.write))
            .map_err(io_error)?;
        Ok(Connection {
            stream,
            url: url.clone(),
            timeouts,
            reader: ReplyReader::new(limits),
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            broken: None,
        })
    }

    /// Parses `url` and connects with the default timeouts and limits.
    pub fn open(url: &str) -> Result<Connection, RedisError> {
        Connection::connect(
            &RedisUrl::parse(url)?,
            Timeouts::default(),
            Limits::default(),
        )
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// True after an error that left the stream of replies out of step.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Sends one command and reads its reply. An error reply becomes
    /// [`RedisError::Server`], with Redis's text.
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        self.command_waiting(args, Duration::ZERO)
    }

    /// Like [`Connection::command`], for a command the server itself may
    /// hold for up to `wait` before it answers (`XREAD BLOCK`, `BLPOP`): the
    /// read deadline is that much later.
    pub fn command_waiting(&mut self, args: &[&[u8]], wait: Duration) -> Result<Reply, RedisError> {
        let mut replies = self.send(&[args], wait)?;
        match replies.pop() {
            Some(Reply::Error(message)) => Err(RedisError::Server {
                command: command_name(args),
                message,
            }),
            Some(reply) => Ok(reply),
            None => unreachable!("one command, one reply"),
        }
    }

    /// Writes all the commands, then reads one reply for each, in order.
    /// Error replies stay in their places as [`Reply::Error`]: one refused
    /// command does not hide the others' replies.
    pub fn pipeline<'a, C: AsRef<[&'a [u8]]>>(
        &mut self,
        commands: &[C],
    ) -> Result<Vec<Reply>, RedisError> {
        let commands: Vec<&[&[u8]]> = commands.iter().map(AsRef::as_ref).collect();
        self.send(&commands, Duration::ZERO)
    }

    fn send(&mut self, commands: &[&[&[u8]]], wait: Duration) -> Result<Vec<Reply>, RedisError> {
        if let Some(cause) = &self.broken {
            return Err(RedisError::Broken {
                url: self.url.address(),
                cause: cause.clone(),
            });
        }
        if let Some(empty) = commands.iter().position(|args| args.is_empty()) {
            return Err(RedisError::Usage(format!(
                "command {} of the pipeline is empty: a command needs at least its name",
                empty + 1
            )));
        }
        let result = self.exchange(commands, wait);
        if let Err(error) = &result {
            self.broken = Some(error.to_string());
        }
        result
    }

    /// The round trip itself: every error here breaks the connection.
    fn exchange(
        &mut self,
        commands: &[&[&[u8]]],
        wait: Duration,
    ) -> Result<Vec<Reply>, RedisError> {
        let mut out = Vec::with_capacity(commands.iter().map(|c| request::encoded_len(c)).sum());
        for args in commands {
            request::encode_into(&mut out, args);
        }
        self.stream
            .write_all(&out)
            .map_err(|error| self.io_error("writing to", error, self.timeouts.write))?;
        let deadline = Instant::now() + self.timeouts.read + wait;
        let mut replies = Vec::with_capacity(commands.len());
        while replies.len() < commands.len() {
            replies.push(self.read_reply(deadline, self.timeouts.read + wait)?);
        }
        Ok(replies)
    }

    /// The next reply, from bytes already read or from the socket.
    fn read_reply(&mut self, deadline: Instant, allowed: Duration) -> Result<Reply, RedisError> {
        loop {
            if self.start < self.end {
                let fed = self.reader.feed(&self.buf[self.start..self.end]);
                let (used, reply) = fed.map_err(|error| RedisError::Protocol {
                    url: self.url.address(),
                    error,
                })?;
                self.start += used;
                if let Some(reply) = reply {
                    return Ok(reply);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timeout("reading a reply", allowed));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|error| self.io_error("reading from", error, allowed))?;
            match self.stream.read(&mut self.buf) {
                Ok(0) => {
                    return Err(RedisError::Closed {
                        url: self.url.address(),
                        mid_reply: !self.reader.is_between_replies(),
                    })
                }
                Ok(n) => (self.start, self.end) = (0, n),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.io_error("reading from", error, allowed)),
            }
        }
    }

    /// A socket error; a timed-out read or write says so in its own words.
    fn io_error(&self, doing: &'static str, error: io::Error, allowed: Duration) -> RedisError {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                let doing = if doing == "writing to" {
                    "writing a command"
                } else {
                    "reading a reply"
                };
                self.timeout(doing, allowed)
            }
            _ => RedisError::Io {
                url: self.url.address(),
                doing,
                error,
            },
        }
    }

    fn timeout(&self, doing: &'static str, after: Duration) -> RedisError {
        RedisError::Timeout {
            url: self.url.address(),
            doing,
            after,
        }
    }
}

/// The server and the state, not the 16 KiB buffer.
impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url.address())
            .field("buffered", &(self.end - self.start))
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// A TCP connection to the first address of `url`'s host that answers.
fn open_stream(url: &RedisUrl, timeouts: Timeouts) -> Result<TcpStream, RedisError> {
    let failed = |error| RedisError::Connect {
        url: url.address(),
        error,
    };
    let addresses: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(failed)?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeouts.connect) {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error,
        }
    }
    Err(failed(last))
}

/// The command's name, for messages: `XADD`, or a short, safe version of
/// whatever the first word was.
pub(crate) fn command_name(args: &[&[u8]]) -> String {
    let name = args.first().copied().unwrap_or_default();
    let shown: String = name.escape_ascii().to_string().chars().take(32).collect();
    shown.to_ascii_uppercase()
}
