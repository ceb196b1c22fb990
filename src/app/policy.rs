//! Whom the server answers: the `Host` and `Origin` policy.
//!
//! Two questions, asked before a request is served:
//!
//! - **Is the request meant for this server?** `Host` names the server the
//!   client thinks it is talking to. A page on `evil.example` whose DNS
//!   name is re-pointed at 127.0.0.1 (DNS rebinding) reaches this server
//!   with `Host: evil.example`, and the browser treats every answer as that
//!   site's own, readable by its script. So only loopback names, the
//!   `--host` address and the `--allowed-host` names are answered; any
//!   other name gets `421 Misdirected Request`, on every route.
//! - **May the page that sent it act here?** On the requests that change
//!   something or open a channel (the WebSocket upgrade, `POST
//!   /trigger-event` and its preflight), `Origin` says which page sent it.
//!   No `Origin` (not a browser), `null` (a page opened from a file), a
//!   page on this machine, and the server's own pages may; each
//!   `--allowed-origin` adds one. Any other origin gets `403 Forbidden`.
//!
//! This is policy, so it lives in the application. The protocol modules
//! below (`http`, `websocket::handshake`) decide whether a request is well
//! formed; whom this server trusts is not theirs to know. The request loop
//! (`server::connection`) asks these functions before it serves a request.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::config::Config;
use crate::http::{RequestHead, Response};

/// A host as the policy compares it: an address, or a name in lowercase
/// without a trailing dot (`LocalHost.` and `localhost` are one name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName {
    Ip(IpAddr),
    Name(String),
}

impl HostName {
    /// `localhost`, 127.0.0.0/8 and `::1`: only a process on this machine
    /// can be reached at these.
    pub fn is_loopback(&self) -> bool {
        match self {
            HostName::Ip(ip) => ip.is_loopback(),
            HostName::Name(name) => name == "localhost",
        }
    }
}

/// Reads a host without a port, as it appears in `Host` or in an origin:
/// a name (`localhost`, `LocalHost.`), an IPv4 address, or an IPv6
/// address in brackets (`[::1]`). `None` for anything else.
pub fn parse_host(text: &str) -> Option<HostName> {
    if let Some(inner) = text.strip_prefix('[') {
        let address = inner.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?;
        return Some(HostName::Ip(IpAddr::V6(address)));
    }
    let text = text.strip_suffix('.').unwrap_or(text);
    if let Ok(address) = text.parse::<IpAddr>() {
        return (!text.contains(':')).then_some(HostName::Ip(address));
    }
    // RFC 3986 §3.2.2: a reg-name is unreserved characters, sub-delims and
    // percent escapes.
    let is_name_byte = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
    let valid = !text.is_empty() && text.bytes().all(is_name_byte);
    valid.then(|| HostName::Name(text.to_ascii_lowercase()))
}

/// Reads a `Host` value, or the part of an origin after `://`: a host and
/// an optional `:port` (`localhost:3000`, `[::1]:3000`, `127.0.0.1`).
pub fn parse_authority(text: &str) -> Option<(HostName, Option<u16>)> {
    let (host, port) = split_port(text);
    let port = match port {
        "" => None,
        digits if digits.bytes().all(|b| b.is_ascii_digit()) => Some(digits.parse().ok()?),
        _ => return None,
    };
    Some((parse_host(host)?, port))
}

/// Splits `host:port` at the port's colon; a colon inside the brackets of
/// an IPv6 address (`[::1]`) is not one.
fn split_port(text: &str) -> (&str, &str) {
    match text.rfind(':') {
        Some(colon) if !text[colon..].contains(']') => (&text[..colon], &text[colon + 1..]),
        _ => (text, ""),
    }
}

/// Reads a host as the command line names it (`--host`, `--allowed-host`):
/// like [`parse_host`], and a bare IPv6 address (`::1`) too.
pub fn parse_listed(text: &str) -> Option<HostName> {
    match text.parse::<Ipv6Addr>() {
        Ok(address) => Some(HostName::Ip(IpAddr::V6(address))),
        Err(_) => parse_host(text),
    }
}

/// Why the policy refuses a request; each is one status, and each message
/// names the flag that would let the request through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// 400: a `Host` value that is not a host with an optional port.
    UnreadableHost(String),
    /// 421: a `Host` this server does not answer for: the value, and the
    /// host in it without the port.
    MisdirectedHost { value: String, host: String },
    /// 403: an `Origin` this server does not accept.
    ForbiddenOrigin(String),
}

impl Refused {
    pub fn status(&self) -> u16 {
        match self {
            Refused::UnreadableHost(_) => 400,
            Refused::MisdirectedHost { .. } => 421,
            Refused::ForbiddenOrigin(_) => 403,
        }
    }

    /// The answer as plain text. It carries no `Access-Control-Allow-Origin`,
    /// so a refused preflight does not let the browser go on.
    pub fn to_response(&self) -> Response {
        Response::text(self.status(), &format!("{self}\n"))
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::UnreadableHost(value) => write!(
                f,
                "Bad request: the Host header {value:?} is not a host name or address with an \
                 optional :port (--allowed-host '*' turns the Host check off)"
            ),
            Refused::MisdirectedHost { value, host } => write!(
                f,
                "Misdirected request: this server does not answer for the host {host:?} \
                 (Host: {value}); start it with --allowed-host {host} to allow that name, \
                 or --allowed-host '*' to allow any"
            ),
            Refused::ForbiddenOrigin(origin) => write!(
                f,
                "Forbidden: pages from the origin {origin:?} may not use this server (only \
                 pages on this machine, opened from a file, or served by this server may); \
                 start it with --allowed-origin {origin} to allow them, or \
                 --allowed-origin '*' to allow any"
            ),
        }
    }
}

impl std::error::Error for Refused {}

/// The `Host` rule, for every request. A request without `Host` (HTTP/1.0
/// may leave it out; `http::check_head` refuses that in HTTP/1.1) names
/// no host and passes: browsers always send one.
pub fn check_host(head: &RequestHead, config: &Config) -> Result<(), Refused> {
    match head.header("host") {
        None => Ok(()),
        Some(value) => host_allowed(value, &config.host, &config.allowed_hosts),
    }
}

/// Whether a server listening on `listen` answers for the `Host` value
/// `value`. The port is not compared: a proxy or a port mapping changes it,
/// and a rebinding attack cannot change the name.
pub fn host_allowed(value: &str, listen: &str, allowed: &[String]) -> Result<(), Refused> {
    if allowed.iter().any(|a| a == "*") {
        return Ok(());
    }
    let Some((host, _port)) = parse_authority(value) else {
        return Err(Refused::UnreadableHost(value.to_string()));
    };
    let named = |text: &str| parse_listed(text).as_ref() == Some(&host);
    if host.is_loopback() || named(listen) || allowed.iter().any(|a| named(a)) {
        return Ok(());
    }
    Err(Refused::MisdirectedHost {
        value: value.to_string(),
        host: split_port(value).0.to_string(),
    })
}

/// The `Origin` rule, for the requests a page could use to act here. Every
/// `Origin` the request carries must be allowed; none at all is fine.
pub fn check_origin(head: &RequestHead, config: &Config) -> Result<(), Refused> {
    let host = head.header("host");
    match head
        .header_values("origin")
        .find(|origin| !origin_allowed(origin, host, &config.allowed_origins))
    {
        Some(origin) => Err(Refused::ForbiddenOrigin(origin.to_string())),
        None => Ok(()),
    }
}

/// Whether a page from `origin` may act here, for a request whose `Host`
/// is `host`: `null`, a loopback origin (`http` or `https`, any port), the
/// server's own origin (`http://` and the request's `Host`), or one of
/// `allowed` (`*` for any). Case and a trailing `/` do not matter.
pub fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let origin = origin.strip_suffix('/').unwrap_or(origin);
    // What a browser sends for a page opened from a file (and for a
    // sandboxed frame: see the README's residual risks).
    if origin == "null" {
        return true;
    }
    let listed = |a: &String| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin);
    if allowed.iter().any(listed) {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let Some((name, port)) = parse_authority(authority) else {
        return false;
    };
    let http = scheme.eq_ignore_ascii_case("http");
    let loopback = (http || scheme.eq_ignore_ascii_case("https")) && name.is_loopback();
    loopback || http && is_own_origin(&name, port, host)
}

/// `http://` + `Host`: a page this server served, under the name the
/// browser used for it (which the `Host` rule already let in). Here the
/// port counts: another port is another origin. No port means 80.
fn is_own_origin(name: &HostName, port: Option<u16>, host: Option<&str>) -> bool {
    match host.and_then(parse_authority) {
        Some((host_name, host_port)) => {
            host_name == *name && host_port.unwrap_or(80) == port.unwrap_or(80)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> HostName {
        HostName::Ip(text.parse().unwrap())
    }

    fn name(text: &str) -> HostName {
        HostName::Name(text.into())
    }

    /// What `parse_authority` gives.
    type Authority = Option<(HostName, Option<u16>)>;

    #[test]
    fn reads_hosts_and_ports() {
        let cases: &[(&str, Authority)] = &[
            ("localhost", Some((name("localhost"), None))),
            ("localhost:3000", Some((name("localhost"), Some(3000)))),
            ("LocalHost.:80", Some((name("localhost"), Some(80)))),
            ("localhost:", Some((name("localhost"), None))),
            ("127.0.0.1:3000", Some((ip("127.0.0.1"), Some(3000)))),
            ("127.0.0.1.", Some((ip("127.0.0.1"), None))),
            ("[::1]", Some((ip("::1"), None))),
            ("[::1]:3000", Some((ip("::1"), Some(3000)))),
            ("[0:0:0:0:0:0:0:1]:1", Some((ip("::1"), Some(1)))),
            ("Example.COM:8080", Some((name("example.com"), Some(8080)))),
            ("127.1", Some((name("127.1"), None))),
            ("", None),
            (":3000", None),
            ("::1", None),
            ("::1:3000", None),
            ("[::1", None),
            ("[::1]x", None),
            ("[localhost]", None),
            ("localhost:99999", None),
            ("localhost:3000x", None),
            ("a b", None),
            ("user@localhost", None),
            ("localhost/path", None),
            (".", None),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_authority(text), want, "{text:?}");
        }
        assert_eq!(parse_listed("::1"), Some(ip("::1")));
        assert_eq!(parse_listed("[::1]"), Some(ip("::1")));
        assert_eq!(parse_listed("0.0.0.0"), Some(ip("0.0.0.0")));
    }

    #[test]
    fn loopback_names() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.1.2.3",
            "127.255.255.254",
            "[::1]",
            "[0::1]",
        ] {
            assert!(parse_host(host).unwrap().is_loopback(), "{host}");
        }
        for host in [
            "localhost.evil.example",
            "evil-localhost",
            "128.0.0.1",
            "0.0.0.0",
            "[::]",
            "[::2]",
            "10.0.0.1",
            "127.0.0.1.evil.example",
            // Loopback too, but not a name a browser sends: --host allows it.
            "[::ffff:127.0.0.1]",
        ] {
            assert!(!parse_host(host).unwrap().is_loopback(), "{host}");
        }
    }

    fn status(value: &str, listen: &str, allowed: &[&str]) -> u16 {
        let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        match host_allowed(value, listen, &allowed) {
            Ok(()) => 200,
            Err(refused) => refused.status(),
        }
    }

    #[test]
    fn the_host_rule() {
        // Loopback names, whatever the port and the listening address.
        for value in ["localhost:3000", "127.1.2.3", "[::1]:8080", "LOCALHOST."] {
            assert_eq!(status(value, "10.0.0.7", &[]), 200, "{value}");
        }
        // The --host address, spelled as the command line and as Host do.
        assert_eq!(status("10.0.0.7:3000", "10.0.0.7", &[]), 200);
        assert_eq!(status("10.0.0.7:3000", "127.0.0.1", &[]), 421);
        assert_eq!(status("[fe80::1]:3000", "fe80::1", &[]), 200);
        assert_eq!(status("0.0.0.0:3000", "0.0.0.0", &[]), 200);
        assert_eq!(status("[::ffff:7f00:1]:5", "::ffff:127.0.0.1", &[]), 200);
        assert_eq!(status("[::ffff:7f00:1]:5", "127.0.0.1", &[]), 421);
        // --allowed-host, in any case, with or without a dot.
        assert_eq!(status("demo.test:1", "127.0.0.1", &["Demo.Test"]), 200);
        assert_eq!(status("DEMO.test.", "127.0.0.1", &["demo.test"]), 200);
        assert_eq!(status("other.test", "127.0.0.1", &["demo.test"]), 421);
        assert_eq!(status("[fe80::1]", "127.0.0.1", &["[fe80::1]"]), 200);
        // Everything else, and '*'.
        assert_eq!(status("evil.example:3000", "127.0.0.1", &[]), 421);
        assert_eq!(status("a b", "127.0.0.1", &[]), 400);
        assert_eq!(status("", "127.0.0.1", &[]), 400);
        assert_eq!(status("evil.example", "127.0.0.1", &["*"]), 200);
        assert_eq!(status("a b", "127.0.0.1", &["*"]), 200);
    }

    #[test]
    fn a_refusal_names_the_flag_that_allows_it() {
        let refused = host_allowed("Evil.Example:3000", "127.0.0.1", &[]).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Misdirected request: this server does not answer for the host \"Evil.Example\" \
             (Host: Evil.Example:3000); start it with --allowed-host Evil.Example to allow \
             that name, or --allowed-host '*' to allow any"
        );
        let refused = host_allowed("[fe80::1]:80", "127.0.0.1", &[]).unwrap_err();
        assert!(refused.to_string().contains("--allowed-host [fe80::1] "));
        let refused = host_allowed("[fe80::1]", "127.0.0.1", &[]).unwrap_err();
        assert!(refused.to_string().contains("--allowed-host [fe80::1] "));
        let origin = Refused::ForbiddenOrigin("https://evil.example".into()).to_string();
        assert!(origin.contains("--allowed-origin https://evil.example to allow them"));
        assert!(Refused::UnreadableHost("a b".into())
            .to_string()
            .contains("--allowed-host '*'"));
    }

    #[test]
    fn the_origin_rule() {
        let allowed = |origin: &str, host: Option<&str>, list: &[&str]| {
            let list: Vec<String> = list.iter().map(|a| a.to_string()).collect();
            origin_allowed(origin, host, &list)
        };
        let host = Some("demo.test:8080");
        for origin in [
            "null",
            "http://localhost",
            "http://localhost:1234",
            "https://localhost:3000",
            "HTTP://LocalHost:3000/",
            "http://127.0.0.1:3000",
            "http://127.9.9.9:1",
            "https://[::1]:8080",
            "http://demo.test:8080",
            "http://DEMO.test.:8080",
        ] {
            assert!(allowed(origin, host, &[]), "{origin}");
        }
        for origin in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:3000",
            "ws://localhost:3000",
            "file://",
            "http://demo.test",
            "http://demo.test:9999",
            "https://demo.test:8080",
            "http://user@localhost",
            "http://localhost/path",
            "localhost:3000",
            "Null",
            "",
        ] {
            assert!(!allowed(origin, host, &[]), "{origin}");
        }
        // The own origin follows the Host: port 80 is the default.
        assert!(allowed("http://demo.test", Some("demo.test"), &[]));
        assert!(allowed("http://demo.test", Some("demo.test:80"), &[]));
        assert!(!allowed("http://demo.test", None, &[]));
        // --allowed-origin adds, exactly; '*' allows any.
        let list = ["https://app.example/"];
        assert!(allowed("https://app.example", host, &list));
        assert!(allowed("HTTPS://APP.EXAMPLE", host, &list));
        assert!(!allowed("https://app.example:444", host, &list));
        assert!(allowed("http://localhost:1", host, &list));
        assert!(allowed("https://evil.example", host, &["*"]));
    }
}
