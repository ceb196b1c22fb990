//! The server under test: started in this process through the public API
//! (`Server::bind(config)?.spawn()?`), started as a child process
//! (`bench __serve` with the server's own flags), or one already running
//! (`--url`). And what the load sends it: a small HTTP client for
//! `POST /trigger-event`, and the marker by which each event is known.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use realtime_by_hand::client::{read_response_head, Url};
use realtime_by_hand::config::Config;
use realtime_by_hand::json;
use realtime_by_hand::server::Server;

use crate::procs::{self, Helper};
use crate::Ctx;

/// What a scenario needs of the server.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// `Config::max_connections` (None: the server's own default).
    pub max_connections: Option<usize>,
    /// `Config::max_body` and `max_chat_bytes` (None: the defaults).
    pub max_body: Option<usize>,
    /// Run it as a child process even if it would fit here.
    pub child: bool,
    /// `--broker URL`: share the event log in this Redis (the cluster;
    /// always a child process then).
    pub broker: Option<String>,
}

/// A server to measure.
pub struct Target {
    pub addr: SocketAddr,
    /// The server's process, when it is not this one.
    pub pid: Option<u32>,
    _helper: Option<Helper>,
}

/// Where the server runs, for the notes.
pub fn placement(ctx: &Ctx, setup: &Setup) -> &'static str {
    if ctx.opts.url.is_some() {
        "at --url (not started by the bench)"
    } else if setup.child || !ctx.server_side_in_process() {
        "in a child process"
    } else {
        "in this process"
    }
}

pub fn start(ctx: &Ctx, setup: &Setup) -> Result<Target, String> {
    if let Some(url) = &ctx.opts.url {
        return at_url(url);
    }
    if setup.child || !ctx.server_side_in_process() {
        return child(ctx, setup);
    }
    let mut config = Config {
        port: 0,
        quiet: true,
        tick: Duration::ZERO,
        ..Config::default()
    };
    if let Some(n) = setup.max_connections {
        config.max_connections = n;
    }
    if let Some(n) = setup.max_body {
        config.max_body = n;
        config.max_chat_bytes = n;
    }
    let running = Server::bind(config)
        .and_then(|s| s.spawn())
        .map_err(|e| format!("cannot start the server: {e}"))?;
    Ok(Target {
        addr: running.addr,
        pid: None,
        _helper: None,
    })
}

/// The server as a child process (`bench __serve`), whatever the options.
pub fn child(ctx: &Ctx, setup: &Setup) -> Result<Target, String> {
    let mut args: Vec<String> = ["__serve", "--port", "0", "--quiet", "--tick-secs", "0"]
        .map(String::from)
        .to_vec();
    if let Some(n) = setup.max_connections {
        args.extend(["--max-connections".into(), n.to_string()]);
    }
    if let Some(n) = setup.max_body {
        args.extend(["--max-body".into(), n.to_string()]);
        args.extend(["--max-chat-bytes".into(), n.to_string()]);
    }
    if let Some(url) = &setup.broker {
        args.extend(["--broker".into(), url.clone()]);
    }
    let helper = Helper::spawn(&args, ctx.helper_core())?;
    let addr = helper.expect("listening ", Duration::from_secs(10))?;
    Ok(Target {
        addr: addr
            .parse()
            .map_err(|e| format!("server address {addr:?}: {e}"))?,
        pid: Some(helper.pid),
        _helper: Some(helper),
    })
}

fn at_url(url: &str) -> Result<Target, String> {
    let url = Url::parse(url, &["http"]).map_err(|e| e.to_string())?;
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", url.host))?
        .next()
        .ok_or("the --url host has no address")?;
    if !addr.ip().is_loopback() {
        return Err("--url must be a loopback address (127.0.0.0/8 or ::1)".into());
    }
    Ok(Target {
        addr,
        pid: procs::listener_pid(addr.port()),
        _helper: None,
    })
}

/// A persistent HTTP/1.1 connection for requests one after another.
pub struct Http {
    stream: TcpStream,
    host: String,
}

impl Http {
    pub fn connect(addr: SocketAddr) -> Result<Http, String> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
        Ok(Http {
            stream,
            host: addr.to_string(),
        })
    }

    /// The request's bytes: what a minimal client such as curl sends.
    pub fn request_bytes(&self, method: &str, path: &str, body: &str) -> Vec<u8> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !body.is_empty() {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }

    /// Sends a request and reads the answer: status and body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        let bytes = self.request_bytes(method, path, body);
        self.stream
            .write_all(&bytes)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let (head, mut rest) =
            read_response_head(&mut self.stream).map_err(|e| format!("{method} {path}: {e}"))?;
        let length: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut chunk = [0u8; 8192];
        while rest.len() < length {
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return Err(format!("{method} {path}: the answer was cut short")),
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
        Ok((head.status, String::from_utf8_lossy(&rest).into_owned()))
    }

    /// `POST /trigger-event` of `{"message": message}`; fails unless 200.
    pub fn trigger(&mut self, message: &str) -> Result<(), String> {
        let body = trigger_body(message);
        match self.request("POST", "/trigger-event", &body)? {
            (200, _) => Ok(()),
            (status, text) => Err(format!(
                "POST /trigger-event answered {status}: {}",
                text.trim()
            )),
        }
    }
}

/// The JSON body of a trigger (and of a chat message): `{"message": …}`.
pub fn trigger_body(message: &str) -> String {
    json::object([("message", message.into())]).to_string()
}

/// The text every bench event carries, by which its receivers know it.
pub fn marker(seq: usize) -> String {
    format!("bench-{seq:05}")
}

/// The event number in a text that carries a marker.
pub fn find_marker(text: &str) -> Option<usize> {
    let at = text.find("bench-")? + "bench-".len();
    text.get(at..at + 5)?.parse().ok()
}
