//! What Redis answers: one [`Reply`] per command, of five RESP2 types
//! (plus the two nulls).

use std::fmt;

/// One complete RESP2 reply.
///
/// The first byte on the wire says which variant follows:
///
/// | first byte | variant | example on the wire |
/// | --- | --- | --- |
/// | `+` | [`Reply::Simple`] | `+OK\r\n` |
/// | `-` | [`Reply::Error`] | `-ERR unknown command 'FOO'\r\n` |
/// | `:` | [`Reply::Integer`] | `:42\r\n` |
/// | `$` | [`Reply::Bulk`], [`Reply::NullBulk`] | `$5\r\nhello\r\n`, `$-1\r\n` |
/// | `*` | [`Reply::Array`], [`Reply::NullArray`] | `*2\r\n:1\r\n:2\r\n`, `*-1\r\n` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A short status line such as `OK` or `QUEUED`. It cannot hold CR or
    /// LF; bytes that are not UTF-8 are shown as U+FFFD.
    Simple(String),
    /// An error, as text: its first word is the kind (`ERR`, `WRONGTYPE`,
    /// `NOSCRIPT`, …), the rest says what went wrong.
    Error(String),
    /// A signed 64-bit integer: counters, lengths, `1`/`0` for yes/no.
    Integer(i64),
    /// Any bytes, with their length sent first, so they may hold CR, LF
    /// and zeros: keys, values, stream fields.
    Bulk(Vec<u8>),
    /// `$-1`: "no value", such as `GET` of a missing key.
    NullBulk,
    /// Replies in order, each of any type, arrays included.
    Array(Vec<Reply>),
    /// `*-1`: "no array", such as `XREAD BLOCK` that timed out.
    NullArray,
}

impl Reply {
    /// The type's name, for messages: "an integer", "a bulk string".
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Simple(_) => "a simple string",
            Reply::Error(_) => "an error",
            Reply::Integer(_) => "an integer",
            Reply::Bulk(_) => "a bulk string",
            Reply::NullBulk => "a null bulk string",
            Reply::Array(_) => "an array",
            Reply::NullArray => "a null array",
        }
    }

    /// True for both nulls.
    pub fn is_null(&self) -> bool {
        matches!(self, Reply::NullBulk | Reply::NullArray)
    }

    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(bytes) => Some(bytes),
            Reply::Simple(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    /// The text of a simple string, or of a bulk string that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Simple(text) => Some(text),
            Reply::Bulk(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Reply::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn into_array(self) -> Option<Vec<Reply>> {
        match self {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// One line, the way `redis-cli` would show it: `"OK"`, `(integer) 3`,
/// `(nil)`, `["a", (integer) 1]`. Bytes outside printable ASCII are
/// escaped, so the line is always safe to log.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(text) => write!(f, "{text}"),
            Reply::Error(text) => write!(f, "(error) {text}"),
            Reply::Integer(n) => write!(f, "(integer) {n}"),
            Reply::Bulk(bytes) => write!(f, "\"{}\"", bytes.escape_ascii()),
            Reply::NullBulk | Reply::NullArray => write!(f, "(nil)"),
            Reply::Array(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_answer_only_for_their_types() {
        assert_eq!(Reply::Bulk(b"hi".to_vec()).as_str(), Some("hi"));
        assert_eq!(Reply::Simple("OK".into()).as_bytes(), Some(&b"OK"[..]));
        assert_eq!(Reply::Bulk(vec![0xff]).as_str(), None);
        assert_eq!(Reply::Integer(7).as_integer(), Some(7));
        assert_eq!(Reply::Error("ERR x".into()).as_str(), None);
        assert!(Reply::NullBulk.is_null() && Reply::NullArray.is_null());
        assert!(!Reply::Array(vec![]).is_null());
        assert_eq!(
            Reply::Array(vec![Reply::NullBulk])
                .into_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn display_is_one_safe_line() {
        let reply = Reply::Array(vec![
            Reply::Simple("OK".into()),
            Reply::Integer(-3),
            Reply::Bulk(b"a\r\nb\x00".to_vec()),
            Reply::NullBulk,
            Reply::Array(vec![]),
            Reply::Error("ERR no".into()),
        ]);
        assert_eq!(
            reply.to_string(),
            r#"[OK, (integer) -3, "a\r\nb\x00", (nil), [], (error) ERR no]"#
        );
    }
}
