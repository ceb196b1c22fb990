//! `redis://HOST:PORT[/PREFIX]`: where the server is, and which prefix
//! this project's keys get.
//!
//! Other Redis tools read the path of such a URL as a database number
//! (`redis://host:6379/2`). Here it is a key prefix instead, so that
//! several clusters, or several test runs, can share one Redis without
//! sharing keys. A path of digits alone is refused, so that a URL copied
//! from another tool does not quietly mean something else.

use std::fmt;
use std::str::FromStr;

use super::error::RedisError;

/// The port Redis listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 6379;

/// The key prefix when the URL has no path.
pub const DEFAULT_PREFIX: &str = "rbh";

/// A parsed Redis URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// A host name or an IP address; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
    /// The start of every key name, without the `:` that follows it.
    pub prefix: String,
}

impl RedisUrl {
    pub fn parse(text: &str) -> Result<RedisUrl, RedisError> {
        let bad = |reason: &str| RedisError::BadUrl {
            url: text.to_string(),
            reason: reason.to_string(),
        };
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("redis") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("rediss") => {
                return Err(bad("TLS (rediss://) is not supported"))
            }
            _ => return Err(bad("it does not start with redis://")),
        };
        if rest.contains(['?', '#']) {
            return Err(bad("a query (?…) or fragment (#…) is not supported"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(bad("a user name or password (…@) is not supported"));
        }
        let (host, port) = split_host_port(authority).map_err(|reason| bad(&reason))?;
        let prefix = parse_prefix(path).map_err(|reason| bad(&reason))?;
        Ok(RedisUrl { host, port, prefix })
    }

    /// `redis://HOST:PORT`, the server alone: how errors name it.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("redis://[{}]:{}", self.host, self.port)
        } else {
            format!("redis://{}:{}", self.host, self.port)
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address is missing its closing ]")?;
        if !host
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("after ] comes :PORT or the end of the address".into()),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if !authority.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(digits) => match digits.parse::<u16>() {
            Ok(port) if port > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => {
                return Err(format!(
                    "the port {digits:?} is not a number from 1 to 65535"
                ))
            }
        },
    };
    Ok((host.to_string(), port))
}

fn parse_prefix(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Ok(DEFAULT_PREFIX.to_string());
    }
    if path.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the path {path:?} looks like a database number; here the path is a key prefix \
             (letters, digits, - _ . : {{ }}), and the database is always 0"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:{}".contains(c);
    if !path.chars().all(allowed) {
        return Err(format!(
            "the key prefix {path:?} may hold only letters, digits and - _ . : {{ }}"
        ));
    }
    Ok(path.to_string())
}

impl FromStr for RedisUrl {
    type Err = RedisError;

    fn from_str(text: &str) -> Result<RedisUrl, RedisError> {
        RedisUrl::parse(text)
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address(), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, prefix: &str) -> RedisUrl {
        RedisUrl {
            host: host.into(),
            port,
            prefix: prefix.into(),
        }
    }

    #[test]
    fn good_urls() {
        let cases = [
            ("redis://127.0.0.1:6390", url("127.0.0.1", 6390, "rbh")),
            ("redis://127.0.0.1:6390/", url("127.0.0.1", 6390, "rbh")),
            ("redis://localhost/demo", url("localhost", 6379, "demo")),
            (
                "REDIS://cache-1.internal:1/a:b_c-d.e",
                url("cache-1.internal", 1, "a:b_c-d.e"),
            ),
            ("redis://[::1]:7000/{rbh}", url("::1", 7000, "{rbh}")),
            ("redis://[::1]", url("::1", 6379, "rbh")),
            ("redis://host/0a", url("host", 6379, "0a")),
        ];
        for (text, expected) in cases {
            assert_eq!(RedisUrl::parse(text).unwrap(), expected, "{text}");
        }
        assert_eq!(
            "redis://[::1]:7000/x"
                .parse::<RedisUrl>()
                .unwrap()
                .to_string(),
            "redis://[::1]:7000/x"
        );
        assert_eq!(
            url("127.0.0.1", 6390, "rbh").address(),
            "redis://127.0.0.1:6390"
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let cases = [
            ("127.0.0.1:6379", "does not start with redis://"),
            ("http://127.0.0.1:6379", "does not start with redis://"),
            ("rediss://host:6380", "TLS (rediss://) is not supported"),
            ("redis://", "the host is missing"),
            ("redis://:6379", "the host is missing"),
            ("redis://host:", "the port \"\" is not a number"),
            (
                "redis://host:0",
                "the port \"0\" is not a number from 1 to 65535",
            ),
            ("redis://host:70000", "the port \"70000\""),
            ("redis://host:+80", "the port \"+80\""),
            ("redis://host:6379:1", "the port \"6379:1\""),
            ("redis://user:pw@host", "a user name or password"),
            ("redis://host/0", "looks like a database number"),
            ("redis://host/a/b", "the key prefix \"a/b\" may hold only"),
            ("redis://host/a b", "may hold only"),
            ("redis://host?db=1", "a query"),
            ("redis://[::1", "missing its closing ]"),
            ("redis://[::1]6379", "after ] comes :PORT"),
            ("redis://[zz]:1", "\"zz\" is not an IPv6 address"),
            ("redis://ho st:1", "\"ho st\" is not a host name"),
        ];
        for (text, reason) in cases {
            let message = RedisUrl::parse(text).unwrap_err().to_string();
            assert!(message.contains(reason), "{text}: {message}");
            assert!(message.contains("redis://HOST:PORT[/PREFIX]"), "{message}");
        }
    }
}
