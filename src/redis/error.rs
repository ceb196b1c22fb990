//! Everything that can go wrong talking to Redis, each with a message that
//! says what to check or change.

use std::fmt;
use std::io;
use std::time::Duration;

use super::reader::ProtocolError;

#[derive(Debug)]
pub enum RedisError {
    /// The URL is not of the form `redis://HOST:PORT[/PREFIX]`.
    BadUrl { url: String, reason: String },
    /// No TCP connection could be made (refused, unreachable, no such
    /// host, or no answer within the connect timeout).
    Connect { url: String, error: io::Error },
    /// The server did not answer in time.
    Timeout {
        url: String,
        doing: &'static str,
        after: Duration,
    },
    /// The socket failed once connected.
    Io {
        url: String,
        doing: &'static str,
        error: io::Error,
    },
    /// The server closed the connection.
    Closed { url: String, mid_reply: bool },
    /// The bytes that came back are not RESP2, or break a limit.
    Protocol { url: String, error: ProtocolError },
    /// Redis answered with an error reply; `message` is its text as sent,
    /// such as `ERR unknown command 'FOO'` or `NOSCRIPT No matching script`.
    Server { command: String, message: String },
    /// A reply of another shape than the command has.
    Unexpected {
        command: String,
        expected: &'static str,
        got: String,
    },
    /// An earlier I/O or protocol error left the connection in an unknown
    /// place in the stream of replies.
    Broken { url: String, cause: String },
    /// A command with no words at all, or a setting that cannot work.
    Usage(String),
}

impl RedisError {
    /// The first word of a Redis error reply (`ERR`, `NOSCRIPT`,
    /// `WRONGTYPE`, …), for code that handles one kind of refusal.
    pub fn server_error_kind(&self) -> Option<&str> {
        match self {
            RedisError::Server { message, .. } => message.split(' ').next(),
            _ => None,
        }
    }

    /// True when the error came from the connection rather than from
    /// Redis refusing one command: the connection cannot be used again.
    pub fn breaks_connection(&self) -> bool {
        !matches!(
            self,
            RedisError::Server { .. } | RedisError::Unexpected { .. } | RedisError::Usage(_)
        )
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::BadUrl { url, reason } => write!(
                f,
                "{url:?} is not a Redis URL: {reason} (the form is redis://HOST:PORT[/PREFIX], \
                 such as redis://127.0.0.1:6379/rbh)"
            ),
            RedisError::Connect { url, error } => write!(
                f,
                "could not connect to {url}: {error}; is redis-server running and listening there?"
            ),
            RedisError::Timeout { url, doing, after } => {
                write!(f, "{url} did not answer within {after:?} while {doing}")
            }
            RedisError::Io { url, doing, error } => {
                write!(f, "{doing} {url} failed: {error}")
            }
            RedisError::Closed { url, mid_reply } => {
                let when = if *mid_reply {
                    "in the middle of a reply"
                } else {
                    "instead of replying"
                };
                write!(f, "{url} closed the connection {when}")
            }
            RedisError::Protocol { url, error } => write!(
                f,
                "{url} sent something that is not a RESP2 reply: {error}; is that port a Redis server?"
            ),
            RedisError::Server { command, message } => {
                write!(f, "Redis refused {command}: {message}")
            }
            RedisError::Unexpected {
                command,
                expected,
                got,
            } => write!(f, "{command} answered {got} where {expected} was expected"),
            RedisError::Broken { url, cause } => write!(
                f,
                "the connection to {url} is unusable after an earlier error ({cause}); connect again"
            ),
            RedisError::Usage(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for RedisError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisError::Connect { error, .. } | RedisError::Io { error, .. } => Some(error),
            RedisError::Protocol { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_their_text_and_kind() {
        let error = RedisError::Server {
            command: "EVALSHA".into(),
            message: "NOSCRIPT No matching script. Please use EVAL.".into(),
        };
        assert_eq!(error.server_error_kind(), Some("NOSCRIPT"));
        assert_eq!(
            error.to_string(),
            "Redis refused EVALSHA: NOSCRIPT No matching script. Please use EVAL."
        );
        assert!(!error.breaks_connection());
        let closed = RedisError::Closed {
            url: "redis://127.0.0.1:6379".into(),
            mid_reply: true,
        };
        assert!(closed.breaks_connection());
        assert_eq!(closed.server_error_kind(), None);
    }
}
